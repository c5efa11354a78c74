"""The device core: every request of the protocol handled without I/O, clocks or hardware of its own.

``Core(hal, clock).handle(payload) -> reply payload`` decodes a request (one msgpack map), validates it,
acts through the HAL and returns the encoded reply. Nothing raises out of ``handle``: every failure is an
``error`` reply with a stable code (pgt.protocol.messages), and an unexpected one also sets the drive to
zero. ``poll()`` is the watchdog decision: after ``timeout_ms`` without a valid request the drive goes to
zero. The same code runs on the board (firmware/main.py wires it to USB serial) and in the simulator.

The HAL is block-level (``hal_base.py`` documents it): ``info()``, ``zero()`` and
``apply_and_sample(drive, n, settle_us, n_avg) -> samples`` where ``drive`` is an ``array('H')`` of n*k DAC
codes (already clamped here) and ``samples`` a bytes-like of n*m little-endian uint16 ADC codes; after each
block ``hal.elapsed_us`` holds the device time it took.

Runs unchanged on MicroPython (a little-endian machine is assumed: rp2, esp32 and x86 all are).
"""

from array import array

from pgt.protocol import messages as m
from pgt.protocol import mpack

FIRMWARE_VERSION = "0.1.0"

# Configurable ranges (inclusive).
SETTLE_US_MAX = 1000000
N_AVG_MAX = 1024
TIMEOUT_MS_MIN = 50
TIMEOUT_MS_MAX = 600000

DEFAULT_SETTLE_US = 1000
DEFAULT_N_AVG = 4
DEFAULT_TIMEOUT_MS = 2000

# Bytes of a run reply besides its sample block (generous): bounds the batch a frame can hold.
REPLY_OVERHEAD = 256


def clamp_block(drive, k, lo, hi):
    """Clamp each channel of the flat (n*k) code block in place to [lo[j], hi[j]]; return how many moved."""
    moved = 0
    total = len(drive)
    for j in range(k):
        a = lo[j]
        b = hi[j]
        for i in range(j, total, k):
            v = drive[i]
            if v < a:
                drive[i] = a
                moved += 1
            elif v > b:
                drive[i] = b
                moved += 1
    return moved


class Core:
    """Protocol state machine of the device. ``clock()`` returns milliseconds, never wrapping."""

    def __init__(self, hal, clock, max_frame=16384, files=None):
        self.hal = hal
        self.clock = clock
        self.info = hal.info()
        self.k = self.info["k"]
        self.m = self.info["m"]
        self.limit_lo = list(self.info["limit_lo"])
        self.limit_hi = list(self.info["limit_hi"])
        self.drive_lo = list(self.limit_lo)
        self.drive_hi = list(self.limit_hi)
        self.max_frame = max_frame
        per_vector = 2 * max(self.k, self.m)
        self.max_batch = min(self.info["max_batch"], (max_frame - REPLY_OVERHEAD) // per_vector)
        self.files = files or {}
        self.settle_us = DEFAULT_SETTLE_US
        self.n_avg = DEFAULT_N_AVG
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self.started_ms = clock()
        self.last_valid_ms = self.started_ms
        self.driving = False
        self.exit_requested = False
        self.link = {}  # the serve loop may put its frame counters here; status reports them
        self.counts = {"requests": 0, "errors": 0, "runs": 0, "vectors": 0, "clamped": 0,
                       "duplicates": 0, "watchdog_trips": 0}
        self._last_key = None
        self._last_reply = None
        hal.zero()

    # -- the two entry points -------------------------------------------------------------------------------

    def handle(self, payload):
        """Reply (bytes) to one request payload. Never raises."""
        self.counts["requests"] += 1
        seq = None
        try:
            try:
                req = mpack.decode(payload)
            except mpack.DecodeError as e:
                return self._error(None, m.E_MALFORMED, "not msgpack: " + str(e), None)
            seq = m.request_seq(req)
            op = req.get("op") if isinstance(req, dict) else None
            err = m.validate(req)
            if err is not None:
                return self._error(seq, err[0], err[1], op if isinstance(op, str) else None)
            self.last_valid_ms = self.clock()
            key = (seq, op)
            if key == self._last_key and self._last_reply is not None:
                self.counts["duplicates"] += 1
                return self._last_reply
            reply = self._dispatch(op, seq, req)
            self._last_key = key
            self._last_reply = reply
            return reply
        except Exception as e:  # noqa: BLE001 - nothing may escape: the drive goes to zero, the host hears why
            self.stop_drive()
            return self._error(seq, m.E_INTERNAL, "internal: " + type(e).__name__ + " " + str(e)[:80], None)

    def poll(self):
        """Watchdog decision: zero the drive after timeout_ms without a valid request. True if it tripped."""
        if self.driving and self.clock() - self.last_valid_ms > self.timeout_ms:
            self.stop_drive()
            self.counts["watchdog_trips"] += 1
            return True
        return False

    # -- ops ------------------------------------------------------------------------------------------------

    def _dispatch(self, op, seq, req):
        if op == m.RUN:
            return self._run(seq, req)
        if op == m.HELLO:
            return self._reply(op, seq, self._hello())
        if op == m.PING:
            return self._reply(op, seq, {"data": req.get("data", b"")})
        if op == m.CONFIG:
            return self._config(seq, req)
        if op == m.STATUS:
            return self._reply(op, seq, self._status())
        if op == m.STOP:
            self.stop_drive()
            return self._reply(op, seq, None)
        if op == m.EXIT:
            self.stop_drive()
            self.exit_requested = True
            return self._reply(op, seq, None)
        return self._error(seq, m.E_UNKNOWN_OP, "unknown op", op)  # (validate() already refused it)

    def _hello(self):
        info = self.info
        out = {
            "proto": m.PROTOCOL_VERSION, "fw": FIRMWARE_VERSION, "files": self.files,
            "board": info["board"], "uid": info["uid"], "k": self.k, "m": self.m,
            "dac_bits": info["dac_bits"], "adc_bits": info["adc_bits"],
            "dac_mA_per_code": info["dac_mA_per_code"], "dac_mA_offset": info["dac_mA_offset"],
            "adc_V_per_code": info["adc_V_per_code"], "adc_V_offset": info["adc_V_offset"],
            "limit_lo": self.limit_lo, "limit_hi": self.limit_hi,
            "max_batch": self.max_batch, "max_frame": self.max_frame,
        }
        self._add_config(out)
        return out

    def _add_config(self, out):
        out["settle_us"] = self.settle_us
        out["n_avg"] = self.n_avg
        out["timeout_ms"] = self.timeout_ms
        out["drive_lo"] = self.drive_lo
        out["drive_hi"] = self.drive_hi

    def _status(self):
        out = {"uptime_ms": self.clock() - self.started_ms, "driving": self.driving, "link": self.link}
        for name in self.counts:
            out[name] = self.counts[name]
        return out

    def _config(self, seq, req):
        settle = req.get("settle_us", self.settle_us)
        n_avg = req.get("n_avg", self.n_avg)
        timeout = req.get("timeout_ms", self.timeout_ms)
        lo = req.get("drive_lo", self.drive_lo)
        hi = req.get("drive_hi", self.drive_hi)
        if settle > SETTLE_US_MAX:
            return self._error(seq, m.E_BAD_VALUE, "settle_us above %d" % SETTLE_US_MAX, m.CONFIG)
        if not 1 <= n_avg <= N_AVG_MAX:
            return self._error(seq, m.E_BAD_VALUE, "n_avg must be 1..%d" % N_AVG_MAX, m.CONFIG)
        if not TIMEOUT_MS_MIN <= timeout <= TIMEOUT_MS_MAX:
            return self._error(seq, m.E_BAD_VALUE, "timeout_ms must be %d..%d" % (TIMEOUT_MS_MIN, TIMEOUT_MS_MAX),
                               m.CONFIG)
        if len(lo) != self.k or len(hi) != self.k:
            return self._error(seq, m.E_BAD_SHAPE, "drive_lo and drive_hi need %d values" % self.k, m.CONFIG)
        for j in range(self.k):
            if lo[j] < self.limit_lo[j] or hi[j] > self.limit_hi[j] or lo[j] > hi[j]:
                return self._error(seq, m.E_BAD_VALUE, "drive range of channel %d outside the board's safe "
                                   "limits %d..%d" % (j, self.limit_lo[j], self.limit_hi[j]), m.CONFIG)
        self.settle_us = settle
        self.n_avg = n_avg
        self.timeout_ms = timeout
        self.drive_lo = list(lo)
        self.drive_hi = list(hi)
        out = {}  # type: dict
        self._add_config(out)
        return self._reply(m.CONFIG, seq, out)

    def _run(self, seq, req):
        n = req["n"]
        k = req["k"]
        drive_bytes = req["drive"]
        if k != self.k:
            return self._error(seq, m.E_BAD_SHAPE, "k must be %d" % self.k, m.RUN)
        if n < 1:
            return self._error(seq, m.E_BAD_VALUE, "n must be at least 1", m.RUN)
        if n > self.max_batch:
            return self._error(seq, m.E_TOO_LARGE, "n above max_batch %d" % self.max_batch, m.RUN)
        if len(drive_bytes) != 2 * n * k:
            return self._error(seq, m.E_BAD_SHAPE, "drive must hold n*k uint16 = %d bytes" % (2 * n * k), m.RUN)
        drive = array("H", bytes(drive_bytes))
        clamped = clamp_block(drive, k, self.drive_lo, self.drive_hi)
        self.driving = True
        try:
            samples = self.hal.apply_and_sample(drive, n, self.settle_us, self.n_avg)
        except Exception as e:  # noqa: BLE001 - a hardware fault must leave the ring undriven
            self.stop_drive()
            return self._error(seq, m.E_HAL_FAULT, "hal: " + type(e).__name__ + " " + str(e)[:80], m.RUN)
        self.counts["runs"] += 1
        self.counts["vectors"] += n
        self.counts["clamped"] += clamped
        return self._reply(m.RUN, seq, {"n": n, "m": self.m, "samples": samples,
                                        "t_us": self.hal.elapsed_us, "clamped": clamped})

    # -- helpers --------------------------------------------------------------------------------------------

    def stop_drive(self):
        """Set the drive to zero now (also used by the serve loop when it leaves). Never raises."""
        self.driving = False
        try:
            self.hal.zero()
        except Exception:  # noqa: BLE001 - nothing more can be done from here; the board WDT is the backstop
            pass

    def _reply(self, op, seq, fields):
        return mpack.encode(m.reply(op, seq, fields))

    def _error(self, seq, code, msg, req_op):
        self.counts["errors"] += 1
        return mpack.encode(m.error_reply(seq, code, msg, req_op))
