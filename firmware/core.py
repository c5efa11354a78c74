"""The device core: every request of the protocol handled without I/O, clocks or hardware of its own.

``Core(hal, clock).handle(payload) -> reply payload`` never raises: every failure is an ``error`` reply with
a stable code, and an unexpected one also zeroes the drive. ``poll()`` is the watchdog decision. The same
code runs on the board (firmware/serve.py) and in the simulator. The HAL interface is in ``hal_base.py``;
the run op is in ``run_op.py``.
Runs unchanged on MicroPython (a little-endian machine is assumed: rp2, esp32 and x86 all are).
"""

from pgt.protocol import messages as m
from pgt.protocol import mpack
from pgt.protocol.framing import crc32

from . import reports, run_op
from .settings import DEFAULT_N_AVG, DEFAULT_SETTLE_US, DEFAULT_TIMEOUT_MS, check_config

# Bytes of a run reply besides its sample block (generous): bounds the batch a frame can hold.
REPLY_OVERHEAD = 256
# Ops that change the device: a resend of the last one gets its cached reply and is not acted on again.
_CACHED = (m.CONFIG, m.RUN, m.STOP, m.EXIT)


class Core:
    """Protocol state machine of the device. ``clock()`` returns milliseconds, never wrapping."""

    def __init__(self, hal, clock, max_frame=16384, files=None, poll_ms=50, frame_timeout_ms=1000, boot_id=None):
        self.hal = hal
        self.boot_id = reports.new_boot_id() if boot_id is None else boot_id  # every reply carries it as "boot"
        self.clock = clock
        self.info = hal.info()
        self.k = self.info["k"]
        self.m = self.info["m"]
        self.limit_lo = list(self.info["limit_lo"])
        self.limit_hi = list(self.info["limit_hi"])
        self.drive_lo = list(self.limit_lo)
        self.drive_hi = list(self.limit_hi)
        self.max_frame = max_frame
        self.poll_ms = poll_ms  # the serve loop runs poll() at least this often
        self.frame_timeout_ms = frame_timeout_ms  # the serve loop drops a frame stalled this long
        per_vector = 2 * max(self.k, self.m)
        self.max_batch = min(self.info["max_batch"], (max_frame - REPLY_OVERHEAD) // per_vector)
        self.files = files or {}
        self.settle_us = self.info.get("settle_us") or DEFAULT_SETTLE_US  # the board config's, if it sets one
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

    def handle(self, payload):
        """Reply (bytes) to one request payload. Never raises."""
        self.counts["requests"] += 1
        seq = None
        try:
            try:
                req = mpack.decode(payload)
            except mpack.DecodeError as e:
                return self.error(None, m.E_MALFORMED, "not msgpack: " + str(e), None)
            seq = m.request_seq(req)
            op = req.get("op") if isinstance(req, dict) else None
            err = m.validate(req)
            if err is not None:
                return self.error(seq, err[0], err[1], op if isinstance(op, str) else None)  # (not cached)
            self.last_valid_ms = self.clock()  # a valid request feeds the host-silence watchdog ...
            if op not in _CACHED:
                reply = self._dispatch(op, seq, req)  # hello, status, ping: answered afresh, resent or not
                if len(reply) > self.max_frame:  # no reply is longer than max_frame (they change nothing)
                    reply = self.error(seq, m.E_TOO_LARGE, "reply above max_frame", op)
            else:
                key = (seq, crc32(payload))  # a resend is the same request byte for byte
                if key == self._last_key:
                    self.counts["duplicates"] += 1
                    return self._last_reply
                reply = self._dispatch(op, seq, req)
                self._last_key = key
                self._last_reply = reply
            self.last_valid_ms = self.clock()  # ... and silence counts from its reply (a long run is no silence)
            return reply
        except Exception as e:  # nothing may escape: zero the drive, tell the host
            self.stop_drive()
            return self.error(seq, m.E_INTERNAL, "internal: " + type(e).__name__ + " " + str(e)[:80], None)

    def poll(self):
        """Watchdog decision: zero the drive after timeout_ms without a valid request. True if it tripped."""
        if self.driving and self.clock() - self.last_valid_ms > self.timeout_ms:
            self.stop_drive()
            self.counts["watchdog_trips"] += 1
            return True
        return False

    def _dispatch(self, op, seq, req):
        if op == m.RUN:
            return run_op.run(self, seq, req)
        if op == m.HELLO:
            return self.reply(op, seq, reports.hello(self))
        if op == m.PING:
            return self.reply(op, seq, {"data": req.get("data", b"")})
        if op == m.CONFIG:
            return self._config(seq, req)
        if op == m.STATUS:
            return self.reply(op, seq, reports.status(self))
        if op == m.STOP:
            self.stop_drive()
            return self.reply(op, seq, None)
        if op == m.EXIT:
            self.stop_drive()
            self.exit_requested = True
            return self.reply(op, seq, None)
        return self.error(seq, m.E_UNKNOWN_OP, "unknown op", op)  # (validate() already refused it)

    def _config(self, seq, req):
        current = (self.settle_us, self.n_avg, self.timeout_ms, self.drive_lo, self.drive_hi)
        err, new = check_config(req, current, self.limit_lo, self.limit_hi)
        if err is not None:
            return self.error(seq, err[0], err[1], m.CONFIG)
        self.settle_us, self.n_avg, self.timeout_ms, self.drive_lo, self.drive_hi = new
        return self.reply(m.CONFIG, seq, reports.settings(self))

    def stop_drive(self):
        """Set the drive to zero now (also used by the serve loop when it leaves). Never raises."""
        self.driving = False
        try:
            self.hal.zero()
        except Exception:  # nothing more to do here; the board WDT is the backstop
            pass

    def reply(self, op, seq, fields):
        """A reply payload (bytes) to request ``seq`` of ``op``."""
        return mpack.encode(m.reply(op, seq, self.boot_id, fields))

    def error(self, seq, code, msg, req_op):
        """An error reply payload (bytes), counted."""
        self.counts["errors"] += 1
        return mpack.encode(m.error_reply(seq, self.boot_id, code, msg, req_op))
