"""``RingClient``: the ring (or its simulator) as a :class:`pgt.reservoir.Reservoir`, over any link.

``pgt.device.open_device(url)`` opens a link (a pyserial URL, or ``sim://...`` in process) and a
``RingClient`` over it performs the handshake: a device that is silent, not pgt firmware (a bare MicroPython REPL), or
speaks another protocol version gives a :class:`~pgt.errors.DeviceError` saying what was found and what to do.
``run(drive_mA)`` converts mA to DAC codes with the device's calibration (rounding to the nearest code), sends
blocks no larger than the device's ``max_batch``, and converts the ADC codes back to volts. Drive outside the
configured safe range is refused (``out_of_range="refuse"``, the default) or clipped (``"clip"``).

Reboots: every reply carries the device's boot id (a random number chosen at boot, docs/protocol.md). A reply
with another boot id than the handshake's means the device rebooted and lost its configuration: before the
next ``run`` the client handshakes again (the same board must be back: same uid), replays its configuration and
says so through ``log`` (stderr by default); a ``run`` whose own reply shows the reboot is run again under the
replayed configuration. After a board reset that drops the port the link reconnects and hands over to the same
check. On close, and on any exception inside ``run``, the client sends ``stop`` so the ring is never left
driven.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pgt import connection
from pgt.errors import DeviceError, UserError
from pgt.link import Link, NoReplyError, RequestFn
from pgt.protocol import messages
from pgt.units import UnitScale

FLASH_HINT = "flash it with `pgt flash PORT`"
HELLO_FIELDS = ("proto", "boot", "fw", "board", "uid", "k", "m", "dac_bits", "adc_bits", "dac_mA_per_code",
                "dac_mA_offset", "adc_V_per_code", "adc_V_offset", "limit_lo", "limit_hi", "max_batch",
                "max_frame", "frame_timeout_ms", "poll_ms", "settle_us", "n_avg", "timeout_ms", "drive_lo",
                "drive_hi")
CONFIG_FIELDS = ("settle_us", "n_avg", "timeout_ms", "drive_lo", "drive_hi")
OUT_OF_RANGE = ("refuse", "clip")
ADVICE = {  # what to do, by what the port sent instead of a hello reply (pgt.connection.diagnose)
    connection.SILENT: f"is this the right port (`pgt devices`)? Is pgt firmware running? If not, {FLASH_HINT}",
    connection.REPL: f"{FLASH_HINT} (if it is flashed, `pgt reset PORT` restarts it)",
    connection.OTHER_FORMAT: "reflash the board with `pgt flash PORT` or install the matching pgt",
}


def check_hello(url: str, hello: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a hello reply; DeviceError naming what is wrong and what to do."""
    if hello.get("op") == messages.ERROR:
        raise DeviceError(f"{url} refused the handshake: {hello.get('msg')} — is this pgt firmware? {FLASH_HINT}")
    if hello.get("op") != messages.HELLO:
        raise DeviceError(f"{url} answered the handshake with {hello.get('op')!r}, not hello: {FLASH_HINT}")
    proto = hello.get("proto")
    if proto != messages.PROTOCOL_VERSION:
        raise DeviceError(
            f"{url} runs pgt firmware {hello.get('fw', '?')} speaking protocol version {proto}; this host "
            f"speaks {messages.PROTOCOL_VERSION}: {FLASH_HINT.replace('flash it', 'reflash the board')} "
            "(or install the pgt version that matches the board)")
    missing = [f for f in HELLO_FIELDS if f not in hello]
    if missing:
        raise DeviceError(f"{url} answered hello without {', '.join(missing)}: firmware too old? {FLASH_HINT}")
    try:
        UnitScale.from_hello(hello)
    except ValueError as exc:
        raise DeviceError(f"{url} reported a calibration that cannot be: {exc}; fix its board.json") from None
    return {k: v for k, v in hello.items() if k not in ("op", "seq")}


def _to_stderr(message: str) -> None:
    print(f"pgt: {message}", file=sys.stderr, flush=True)


class RingClient:
    """A device (real or simulated) behind a link, as a Reservoir: ``forward(x mA (n, k)) -> V (n, m)``."""

    def __init__(self, link: Link, *, out_of_range: str = "refuse", timeout: float = 1.0,
                 link_rate: float = 10_000.0, log: Callable[[str], None] | None = None) -> None:
        """Handshake over ``link``. ``timeout`` (s) is the base wait for a reply; a run's wait adds the
        expected device time and the transfer time at ``link_rate`` bytes/s (the slowest link expected).
        ``log`` receives one line per event worth telling the user (a device reboot noticed); default stderr."""
        if out_of_range not in OUT_OF_RANGE:
            raise UserError(f"out_of_range must be one of {OUT_OF_RANGE}, got {out_of_range!r}")
        self.link = link
        self.url = link.url
        self.out_of_range = out_of_range
        self.timeout = timeout
        self.link_rate = link_rate
        self.queries = 0
        self.device_seconds = 0.0
        self.blocks = 0
        self.clamped = 0
        self.device_resets = 0
        self.log = log if log is not None else _to_stderr
        self._configured: dict[str, Any] = {}  # fields set by configure(), replayed after a reboot
        self._closed = False
        self._rebooted = False  # a reply carried another boot id than the handshake's
        request: RequestFn = lambda msg: link.request(msg, timeout=timeout)  # noqa: E731
        if hasattr(link, "revive_repl"):
            link.revive_repl = 1  # a board left at its REPL (by mpremote, say) gets one soft reset into main.py
            if getattr(link, "log", None) is None:
                link.log = self.log  # (the link says when it soft-resets the board)
        self._hello = self._handshake(request)
        link.on_reconnect = self._after_reconnect
        if hasattr(link, "revive_repl"):
            link.revive_repl = connection.MAX_REVIVALS  # pgt firmware answered: a REPL later means it fell out

    # -- handshake ----------------------------------------------------------------------------------------

    def _handshake(self, request: RequestFn) -> dict[str, Any]:
        try:
            hello = request({"op": messages.HELLO})
        except NoReplyError as exc:
            diagnose = getattr(self.link, "diagnose", None)
            kind, what = diagnose() if diagnose is not None else (connection.SILENT, "nothing was received")
            advice = ADVICE.get(kind, FLASH_HINT)
            raise DeviceError(f"{self.url} did not answer the pgt handshake: {what}; {advice}") from exc
        return check_hello(self.url, hello)

    @property
    def boot_id(self) -> int:
        """The boot id of the device as of the last handshake."""
        return int(self._hello["boot"])

    def _note_boot(self, reply: Mapping[str, Any]) -> None:
        boot = reply.get("boot")
        if boot is not None and boot != self._hello["boot"]:
            self._rebooted = True

    def check_reset(self) -> bool:
        """Has the device rebooted since the handshake (a reply with another boot id, or the ``status`` asked
        now)? If so handshake again, replay the configuration, say so, and return True."""
        if not self._rebooted:
            self._note_boot(self.link.request({"op": messages.STATUS}, timeout=self.timeout))
        if not self._rebooted:
            return False
        request: RequestFn = lambda msg: self.link.request(msg, timeout=self.timeout)  # noqa: E731
        self._resync(request, "rebooted")
        return True

    def _after_reconnect(self, request: RequestFn) -> None:
        """The link reopened the port: the same board must be back; if it rebooted, replay the configuration."""
        self._resync(request, "came back after a reconnect")

    def _resync(self, request: RequestFn, what: str) -> None:
        old = self._hello["boot"]
        hello = self._handshake(request)
        if hello["uid"] != self._hello["uid"]:
            raise DeviceError(f"after a reconnect {self.url} is a different board (uid {hello['uid']}, was "
                              f"{self._hello['uid']}): stopping")
        self._hello = hello
        self._rebooted = False
        if hello["boot"] == old:
            return  # the same boot: its configuration is intact
        self.device_resets += 1
        replayed = "no configuration to replay"
        if self._configured:
            reply = request({"op": messages.CONFIG, **self._configured})
            self._hello.update(self._check(reply, messages.CONFIG))
            replayed = "configuration replayed: " + ", ".join(sorted(self._configured))
        self.log(f"{self.url} {what} with a new boot id ({old:08x} -> {hello['boot']:08x}): the device "
                 f"rebooted and lost its settings; {replayed}")

    # -- what the device is -------------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        """Board, firmware, channels, calibration, limits and the current configuration (hello fields),
        plus the drive range in mA."""
        out = dict(self._hello)
        out["kind"] = "ring-client"
        out["url"] = self.url
        out["n_inputs"] = self.n_inputs
        out["n_outputs"] = self.n_outputs
        out["drive_low_mA"] = self.drive_low.tolist()
        out["drive_high_mA"] = self.drive_high.tolist()
        out["limit_low_mA"] = self.units.limit_low_mA.tolist()
        out["limit_high_mA"] = self.units.limit_high_mA.tolist()
        out["volts_low"], out["volts_high"] = self.units.volts_low, self.units.volts_high
        return out

    @property
    def units(self) -> UnitScale:
        """The device's unit scale (codes <-> mA and V, safe limits), from its hello reply."""
        return UnitScale.from_hello(self._hello)

    @property
    def n_inputs(self) -> int:
        return int(self._hello["k"])

    @property
    def n_outputs(self) -> int:
        return int(self._hello["m"])

    @property
    def max_batch(self) -> int:
        return int(self._hello["max_batch"])

    @property
    def drive_low(self) -> np.ndarray:
        """Lowest allowed drive per channel now, in mA (from the device's drive_lo codes)."""
        a = self.units.codes_to_mA(self._hello["drive_lo"])
        b = self.units.codes_to_mA(self._hello["drive_hi"])
        return np.minimum(a, b)

    @property
    def drive_high(self) -> np.ndarray:
        """Highest allowed drive per channel now, in mA (from the device's drive_hi codes)."""
        a = self.units.codes_to_mA(self._hello["drive_lo"])
        b = self.units.codes_to_mA(self._hello["drive_hi"])
        return np.maximum(a, b)

    def state(self) -> dict[str, Any] | None:
        """The simulated board's state when it runs in process (``sim://``), else None: a checkpoint of a run
        on the in-process simulator restores it, so a resumed run continues bit-identically."""
        hal: Any = getattr(getattr(self.link, "core", None), "hal", None)
        return hal.state() if hasattr(hal, "state") else None

    def load_state(self, state: dict[str, Any]) -> None:
        hal: Any = getattr(getattr(self.link, "core", None), "hal", None)
        if not hasattr(hal, "load_state"):
            raise UserError(f"{self.url} is not an in-process simulator: its state cannot be restored")
        hal.load_state(state)

    # -- requests -----------------------------------------------------------------------------------------

    def _check(self, reply: Mapping[str, Any], op: str) -> dict[str, Any]:
        self._note_boot(reply)
        if reply.get("op") == messages.ERROR:
            code = reply.get("code")
            name = messages.ERROR_NAMES.get(code, "?") if isinstance(code, int) else "?"
            text = f"device refused {op}: {reply.get('msg')} (error {code} {name})"
            if op == messages.CONFIG and code in (messages.E_BAD_VALUE, messages.E_BAD_SHAPE):
                raise UserError(text)  # a value the user asked for
            raise DeviceError(text)
        if reply.get("op") != op:
            raise DeviceError(f"device answered {op} with {reply.get('op')!r}")
        return {k: v for k, v in reply.items() if k not in ("op", "seq")}

    def _call(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        if self._closed:
            raise DeviceError(f"the client for {self.url} is closed")
        reply = self.link.request({"op": op, **fields}, timeout=self.timeout if timeout is None else timeout)
        return self._check(reply, op)

    def status(self) -> dict[str, Any]:
        """The device's counters (requests, runs, vectors, duplicates, errors, ...) and state."""
        return self._call(messages.STATUS)

    def ping(self, data: bytes = b"") -> bytes:
        """Round trip ``data`` through the device (a link test)."""
        return bytes(self._call(messages.PING, data=data)["data"])

    def stop(self) -> None:
        """Drive every channel to zero now."""
        self._call(messages.STOP)

    def configure(self, *, settle_us: int | None = None, n_avg: int | None = None, timeout_ms: int | None = None,
                  drive_lo_mA: float | Sequence[float] | np.ndarray | None = None,
                  drive_hi_mA: float | Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
        """Change the device's settling time, averaging, watchdog timeout or drive range (mA, scalar or per
        channel; rounded inwards to whole codes, within the board's limits). Returns the new configuration;
        it is replayed after a reconnect."""
        fields: dict[str, Any] = {}
        for name, value in (("settle_us", settle_us), ("n_avg", n_avg), ("timeout_ms", timeout_ms)):
            if value is not None:
                if isinstance(value, bool) or int(value) != value or value < 0:
                    raise UserError(f"{name} must be a non-negative integer, got {value!r}")
                fields[name] = int(value)
        if drive_lo_mA is not None or drive_hi_mA is not None:
            lo_mA = self.drive_low if drive_lo_mA is None else self._per_channel(drive_lo_mA, "drive_lo_mA")
            hi_mA = self.drive_high if drive_hi_mA is None else self._per_channel(drive_hi_mA, "drive_hi_mA")
            lo, hi = self._range_codes(lo_mA, hi_mA)
            fields["drive_lo"] = lo
            fields["drive_hi"] = hi
        if not fields:
            return {k: self._hello[k] for k in CONFIG_FIELDS}
        out = self._call(messages.CONFIG, **fields)
        self._configured.update(fields)
        self._hello.update({k: out[k] for k in CONFIG_FIELDS if k in out})
        return {k: self._hello[k] for k in CONFIG_FIELDS}

    def _per_channel(self, value: float | Sequence[float] | np.ndarray, name: str) -> np.ndarray:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (self.n_inputs,)).copy() \
            if np.ndim(value) == 0 else np.asarray(value, dtype=np.float64)
        if arr.shape != (self.n_inputs,) or not np.all(np.isfinite(arr)):
            raise UserError(f"{name} must be a finite number or {self.n_inputs} finite numbers")
        return arr

    def _range_codes(self, lo_mA: np.ndarray, hi_mA: np.ndarray) -> tuple[list[int], list[int]]:
        h, units = self._hello, self.units
        a, b = units.mA_to_code_position(lo_mA), units.mA_to_code_position(hi_mA)
        lo_f, hi_f = np.minimum(a, b), np.maximum(a, b)
        lo = np.ceil(lo_f - 1e-9).astype(np.int64)  # inwards: the range never grows by rounding
        hi = np.floor(hi_f + 1e-9).astype(np.int64)
        lim_lo, lim_hi = np.asarray(h["limit_lo"]), np.asarray(h["limit_hi"])
        limit_low, limit_high = units.limit_low_mA, units.limit_high_mA
        for j in range(self.n_inputs):
            if lo[j] < lim_lo[j] or hi[j] > lim_hi[j] or lo[j] > hi[j]:
                raise UserError(
                    f"drive range of channel {j} ({lo_mA[j]:g}..{hi_mA[j]:g} mA) is empty or outside the board's "
                    f"safe limits {min(limit_low[j], limit_high[j]):g}..{max(limit_low[j], limit_high[j]):g} mA")
        return [int(v) for v in lo], [int(v) for v in hi]

    # -- the forward pass ---------------------------------------------------------------------------------

    def drive_codes(self, drive_mA: np.ndarray) -> np.ndarray:
        """The (n, k) uint16 DAC codes for a drive block in mA, after the out-of-range policy."""
        arr = np.asarray(drive_mA, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_inputs:
            raise UserError(f"drive block must have shape (n, {self.n_inputs}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise UserError("drive block contains NaN or infinite values")
        codes = self.units.mA_to_codes(arr)
        lo = np.minimum(self._hello["drive_lo"], self._hello["drive_hi"])
        hi = np.maximum(self._hello["drive_lo"], self._hello["drive_hi"])
        outside = (codes < lo) | (codes > hi)
        if np.any(outside):
            if self.out_of_range == "refuse":
                rows, cols = np.nonzero(outside)
                i, j = int(rows[0]), int(cols[0])
                raise UserError(
                    f"drive outside the safe range: row {i} channel {j} is {arr[i, j]:g} mA, allowed "
                    f"{self.drive_low[j]:g}..{self.drive_high[j]:g} mA ({int(outside.sum())} values outside); "
                    "scale the drive, or open the client with out_of_range='clip'")
            codes = np.clip(codes, lo, hi)
        return codes.astype("<u2")

    def run(self, drive_mA: np.ndarray) -> np.ndarray:
        """Drive with (n, k) mA, return the (n, m) volts measured; counts n queries and the device time."""
        codes = self.drive_codes(drive_mA)
        n = codes.shape[0]
        out = np.empty((n, self.n_outputs), dtype=np.float64)
        try:
            step = max(1, self.max_batch)
            for start in range(0, n, step):
                block = codes[start:start + step]
                out[start:start + len(block)] = self.units.codes_to_volts(self.run_codes(block))
        except BaseException:
            self._safe_stop()
            raise
        return out

    forward = run

    def run_codes(self, codes: np.ndarray) -> np.ndarray:
        """One ``run`` request of at most max_batch rows of DAC codes; returns the (n, m) ADC codes."""
        n, k = codes.shape
        if n > self.max_batch:
            raise UserError(f"run_codes takes at most max_batch={self.max_batch} rows, got {n}")
        drive = np.ascontiguousarray(codes, dtype="<u2").tobytes()
        h = self._hello
        m = self.n_outputs
        expected_s = n * (int(h["settle_us"]) + 100 * int(h["n_avg"])) * 1e-6
        wire_s = (len(drive) + 2 * n * m + 200) / self.link_rate
        timeout = self.timeout + 2 * expected_s + wire_s
        for _ in range(3):
            if self._rebooted:  # noticed at an earlier reply, or this run's: replay the config, (re)run
                self.check_reset()
            reply = self._call(messages.RUN, timeout=timeout, n=n, k=k, drive=drive)
            if not self._rebooted:
                break
        else:
            raise DeviceError(f"{self.url} rebooted during each of 3 tries of a run: is its power or USB stable?")
        samples = reply.get("samples", b"")
        if reply.get("n") != n or reply.get("m") != m or len(samples) != 2 * n * m:
            raise DeviceError(f"device sent a malformed run reply: n={reply.get('n')} m={reply.get('m')} "
                              f"{len(samples)} sample bytes for {n}x{m}")
        self.queries += n
        self.blocks += 1
        self.device_seconds += float(reply.get("t_us", 0)) * 1e-6
        self.clamped += int(reply.get("clamped", 0))
        return np.frombuffer(samples, dtype="<u2").reshape(n, m)

    # -- lifetime -----------------------------------------------------------------------------------------

    def _safe_stop(self) -> None:
        """Best-effort stop after a failure: short wait, no reconnect hunting."""
        if self._closed:
            return
        try:
            self.link.request({"op": messages.STOP}, timeout=min(self.timeout, 0.5), retries=2, reconnect=False)
        except Exception:  # noqa: BLE001 - the device is unreachable; its watchdog zeroes the drive
            pass

    def close(self) -> None:
        """Stop the drive and close the link (idempotent)."""
        if self._closed:
            return
        try:
            self._safe_stop()
        finally:
            self._closed = True
            self.link.close()

    def __enter__(self) -> RingClient:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def __repr__(self) -> str:
        h = self._hello
        return f"RingClient({self.url!r}, board={h['board']!r}, k={h['k']}, m={h['m']})"

