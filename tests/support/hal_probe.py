"""Scenarios for the board HALs and the serve loop over fake_machine; each returns a dict of findings.

Runs unchanged in the MicroPython VM (the tests run it there) and under CPython.
"""

import io
import struct
import sys

import fake_machine as fm

sys.modules["machine"] = fm

from pgt.firmware import board, serve  # noqa: E402
from pgt.firmware.core import Core  # noqa: E402
from pgt.protocol import decoder, framing, mpack  # noqa: E402


def make(cfg_given, step=7):
    fm.reset()
    cfg = board.check(board.resolve(cfg_given))
    t = fm.FakeTime(step)
    hal = serve.make_hal(cfg, t)
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


class IdleStream(io.IOBase):
    """A pollable stream: gives ``data``, then reports no input for ``idle`` polls (the clock advances
    ``ms_per_poll`` each), then end of input."""

    def __init__(self, data, idle, clock, ms_per_poll, after=b""):
        self.data = data
        self.pos = 0
        self.idle = idle
        self.clock = clock
        self.ms = ms_per_poll
        self.after = after  # bytes that arrive after the quiet spell

    def readinto(self, buf):
        n = min(len(buf), len(self.data) - self.pos)
        buf[0:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL
            if self.pos < len(self.data):
                return arg & 1
            if self.idle <= 0:
                if self.after:
                    self.data = self.data + self.after
                    self.after = b""
                return arg & 1
            self.idle -= 1
            self.clock.t += self.ms
            return 0
        return 0


def session(cfg_given, script, tail=b"", poll=False, idle=0, after=b""):
    """Run the serve loop over the given requests; decode the replies; report the stop reason and drive."""
    cfg, hal, t = make(cfg_given)
    clock = Clock()
    core = Core(hal, clock, cfg["max_frame"], {"x": "0"})
    data = b"".join(script) + tail
    out = io.BytesIO()
    wdt = fm.WDT(timeout=cfg["wdt_ms"])
    if poll:
        stdin = IdleStream(data, idle, clock, 1000, after)
        why = serve.serve(core, stdin, out, wdt, 0, None, 0)  # 0: one ioctl per wake-up
    else:
        why = serve.serve(core, io.BytesIO(data), out, wdt)
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
            "dropped": dict(core.link["dropped"]),
            "trips": core.counts["watchdog_trips"], "link": {"in": core.link["frames_in"],
                                                             "out": core.link["frames_out"]}}


def main_boot(config_path, frames):
    """serve.main() as the board runs it, with stdin/stdout replaced; returns why it stopped and the log."""
    fm.reset()
    out = io.BytesIO()
    why = serve.main(config_path, io.BytesIO(b"".join(frames)), out)
    return {"why": why, "nbytes": len(out.getvalue()), "log0": list(fm.LOG[0]),
            "timers": [tm.period for tm in fm.TIMERS], "wdt": [list(e) for e in fm.LOG if e[0] == "wdt"]}


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
