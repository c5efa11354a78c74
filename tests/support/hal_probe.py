"""Scenarios for the board HALs and the serve loop over fake_machine; each returns a dict of findings.

Runs unchanged in the MicroPython VM (the tests run it there) and under CPython.
"""

import io
import struct
import sys

import fake_machine as fm

sys.modules["machine"] = fm

from pgt.firmware import board, serve, startup  # noqa: E402
from pgt.firmware.core import Core  # noqa: E402
from pgt.protocol import decoder, framing, mpack  # noqa: E402


def make(cfg_given, step=7):
    fm.reset()
    cfg = board.check(board.resolve(cfg_given))
    t = fm.FakeTime(step)
    hal = startup.make_hal(cfg, t)
    return cfg, hal, t


def boot_writes(cfg_given):
    """Every output write made while the HAL is created (before anything else can happen)."""
    cfg, hal, t = make(cfg_given)
    return {"log": [list(e) for e in fm.LOG], "zero": cfg["zero_code"]}


def block(cfg_given, drive, n, settle_us, n_avg, step=7):
    cfg, hal, t = make(cfg_given, step)
    from array import array

    k = len(cfg["drive_pins"])
    m = len(cfg["adc_pins"])
    hal.feed = fm.WDT().feed
    before = len(fm.LOG)
    d = array("H", drive)
    out = hal.apply_and_sample(d, n, settle_us, n_avg)
    samples = list(struct.unpack("<%dH" % (n * m), bytes(out)))
    writes = [list(e) for e in fm.LOG[before:]]
    return {"samples": samples, "writes": writes, "sleeps": t.sleeps, "elapsed_us": hal.elapsed_us,
            "k": k, "m": m, "nbytes": len(bytes(out)), "feeds": fm.WDT_FEEDS[0],
            "reads": dict((str(p), fm.READS[p]) for p in fm.READS)}


def _req(op, seq, **fields):
    d = {"op": op, "seq": seq}
    for key in fields:
        d[key] = fields[key]
    return framing.encode(mpack.encode(d))


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


class Line:
    """Input on a schedule of ``(at_ms, bytes)`` chunks, for ``serve``'s read and wait. Time is a fake clock
    that only ``wait`` moves: to the next chunk's arrival, or by the ``ms`` waited. After the last chunk and
    ``end_ms`` the input ends."""

    def __init__(self, chunks, clock, end_ms=0):
        self.chunks = list(chunks)
        self.clock = clock
        self.end_ms = end_ms
        self.buf = b""
        self.waits = 0

    def _arrive(self):
        while self.chunks and self.chunks[0][0] <= self.clock.t:
            self.buf += self.chunks.pop(0)[1]

    def wait(self, ms):
        self.waits += 1
        self._arrive()
        if self.buf:
            return True
        if not self.chunks:
            if self.clock.t >= self.end_ms:
                return True  # the end of input: read gives 0
            self.clock.t = min(self.end_ms, self.clock.t + ms)
            return False
        at = self.chunks[0][0]
        if at <= self.clock.t + ms:
            self.clock.t = at
            self._arrive()
            return True
        self.clock.t += ms
        return False

    def read(self, mv):
        n = min(len(mv), len(self.buf))
        mv[0:n] = self.buf[0:n]
        self.buf = self.buf[n:]
        return n


def run_line(cfg_given, chunks, end_ms=0, poll_ms=1000, frame_timeout_ms=1000):
    """Run the serve loop over scheduled input; decode the replies; report the stop reason, the drive, and
    the fake-clock times at which the drive was set to zero."""
    cfg, hal, t = make(cfg_given)
    clock = Clock()
    core = Core(hal, clock, cfg["max_frame"], {"x": "0"}, poll_ms, frame_timeout_ms)
    zeroed = []
    stop_drive = core.stop_drive

    def stop_and_note():
        zeroed.append(clock.t)
        stop_drive()

    core.stop_drive = stop_and_note
    line = Line(chunks, clock, end_ms)
    out = io.BytesIO()
    wdt = fm.WDT(timeout=cfg["wdt_ms"])
    why = serve.serve(core, line.read, line.wait, out.write, wdt.feed)
    dec = decoder.Decoder()
    dec.feed(out.getvalue())
    replies = []
    while True:
        p = dec.next_payload()
        if p is None:
            break
        r = mpack.decode(p)
        for key in r:
            if isinstance(r[key], memoryview):
                r[key] = list(struct.unpack("<%dH" % (len(r[key]) // 2), bytes(r[key])))
        replies.append(r)
    pwm_last = {}
    for e in fm.LOG:
        if e[0] in ("pwm", "dac"):
            pwm_last[str(e[1])] = e[2]
    return {"why": why, "replies": replies, "last_out": pwm_last, "feeds": fm.WDT_FEEDS[0],
            "dropped": dict(core.link["dropped"]), "zeroed": zeroed, "end": clock.t,
            "trips": core.counts["watchdog_trips"], "link": {"in": core.link["frames_in"],
                                                             "out": core.link["frames_out"]}}


def session(cfg_given, script, tail=b"", poll=False, idle=0, after=b""):
    """The requests of ``script`` (and ``tail``) at once; with ``poll``, then ``idle`` quiet polls of 1000 ms,
    then ``after``, then the end of input."""
    chunks = [(0, b"".join(script) + tail)]
    end_ms = 0
    if poll:
        end_ms = idle * 1000
        if after:
            chunks.append((end_ms, after))
    return run_line(cfg_given, chunks, end_ms)


def flood(cfg_given, junk, every_ms, for_ms, timeout_ms=100, poll_ms=50):
    """config(timeout_ms), a run of non-zero codes, then the items of ``junk`` in turn every ``every_ms`` for
    ``for_ms``, then a status request: what the watchdog did meanwhile (times on the fake clock, ms after the
    run)."""
    run = _req("run", 2, n=1, k=2, drive=b"\x00\x08\x00\x08")
    chunks = [(0, _req("config", 1, timeout_ms=timeout_ms) + run)]
    t = every_ms
    i = 0
    while t < for_ms:
        chunks.append((t, junk[i % len(junk)]))
        t += every_ms
        i += 1
    chunks.append((for_ms, _req("status", 3)))
    out = run_line(cfg_given, chunks, for_ms + 10, poll_ms, 1000)
    out["status"] = out["replies"][-1]
    out["replies"] = [r["op"] for r in out["replies"]]
    return out


def main_boot(config_path, frames):
    """startup.main() as the board runs it, with stdin/stdout replaced; returns why it stopped and the log."""
    fm.reset()
    out = io.BytesIO()
    why = startup.main(config_path, io.BytesIO(b"".join(frames)), out)
    return {"why": why, "nbytes": len(out.getvalue()), "log0": list(fm.LOG[0]),
            "timers": [tm.period for tm in fm.TIMERS], "wdt": [list(e) for e in fm.LOG if e[0] == "wdt"]}


def blocked_read(config_path, cut, timeout_ms=100, rest_at=1000):
    """startup.main() over a board's blocking stdin (``fm.BlockingStdin``): config(timeout_ms), a run of non-zero
    codes and the first ``cut`` bytes of a ping at once; the rest of the ping and a status at ``rest_at`` ms.
    The loop stops inside the read of the ping's body: what the read guard's timer did meanwhile."""
    fm.reset()
    run = _req("run", 2, n=1, k=2, drive=b"\x00\x08\x00\x08")
    ping = _req("ping", 3)
    stdin = fm.BlockingStdin([(0, _req("config", 1, timeout_ms=timeout_ms) + run + ping[:cut]),
                              (rest_at, ping[cut:] + _req("status", 4))])
    out = io.BytesIO()
    why = startup.main(config_path, stdin, out, stdin.clock)
    dec = decoder.Decoder()
    dec.feed(out.getvalue())
    replies = []
    while True:
        p = dec.next_payload()
        if p is None:
            break
        replies.append(mpack.decode(p))
    status = replies[-1]
    return {"why": why, "replies": [r["op"] for r in replies], "zeroed": stdin.zeroed, "end": stdin.now,
            "callbacks": stdin.callbacks, "trips": status.get("watchdog_trips"), "driving": status.get("driving"),
            "timers": [tm.period for tm in fm.TIMERS]}


def block_allocation(cfg_given, n_small, n_large, n_avg):
    """Heap bytes allocated by one HAL block of n_small and of n_large vectors (MicroPython's gc.mem_alloc).

    The collector stays off while measuring (and gc.collect is not called: in the WASI VM a collection can
    free objects that C code still holds, see sim/virtual_board.py)."""
    import gc
    from array import array

    cfg, hal, t = make(cfg_given)
    fm.CHEAP[0] = True
    k = len(cfg["drive_pins"])
    blocks = [array("H", [100] * (n * k)) for n in (n_small, n_large, n_small, n_large)]
    out = []
    gc.disable()
    try:
        for d in blocks:
            n = len(d) // k
            before = gc.mem_alloc()
            hal.apply_and_sample(d, n, 0, n_avg)
            out.append(gc.mem_alloc() - before)
    finally:
        gc.enable()
    return out
