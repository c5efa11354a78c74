"""Boot wiring: what ``/main.py`` runs. ``main()`` loads the board config, zeroes the drive, starts the
watchdog and serves USB serial (``sys.stdin.buffer``/``sys.stdout.buffer``, the keyboard interrupt off so every
byte is data) with ``pgt.firmware.serve.serve`` until exit or escape.

Safety: the drive is zero on boot (the HAL creates its outputs at their zero codes), on leaving, and within
``timeout_ms + poll_ms`` of the last valid request. A stdin read blocks until the whole chunk it asked for has
come, so there a soft timer keeps the host-silence decision on its clock (``guard_reads``). A hardware
watchdog (``wdt_ms``, fed by the loop and the HAL, never by the timer while serving) resets a board whose loop
hangs — or stays blocked in a read — that long; once the loop has returned, the timer feeds it so the REPL
stays usable (neither rp2 nor esp32 can stop a started watchdog; a soft reset stops the timer, and the next
boot starts the loop again).
"""

import sys

from pgt.firmware.serve import serve

TREE = "pgt"  # the firmware tree this module runs from (/main.py sets it: "pgt_prev/pgt" after a fallback)
STOP_CONFIG = "config"  # what main() returns when the board config is refused


def _ready(ms):
    return True


def stream_io(stdin, stdout):
    """``(read, wait, write)`` for ``serve`` over two streams; ``wait`` uses select.poll where the stream
    allows it (else it says "ready" at once and the read blocks)."""
    import select

    poller = select.poll()
    try:
        poller.register(stdin, select.POLLIN)
        poller.poll(0)
    except (OSError, TypeError, AttributeError):  # a stream that cannot be polled (a test's BytesIO)
        return stdin.readinto, _ready, stdout.write

    def wait(ms):
        for _ev in poller.ipoll(ms):
            return True
        return False

    return stdin.readinto, wait, stdout.write


def file_hashes(root="pgt", extra=("main.py", "board.json")):
    """sha256 (hex) of every file below ``root`` and of ``extra``: reported by hello. A file that cannot be
    read is left out; the walk goes on."""
    import binascii
    import hashlib
    import os

    out = {}

    def add(path):
        h = hashlib.sha256()
        f = open(path, "rb")
        buf = bytearray(512)
        try:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(memoryview(buf)[0:n])
        finally:
            f.close()
        out[path] = binascii.hexlify(h.digest()).decode()

    def walk(d):
        try:
            names = os.listdir(d)
        except OSError:
            return
        for name in names:
            p = d + "/" + name
            try:  # one unreadable entry must not end the walk (hello would report a partial file set)
                if os.stat(p)[0] & 0x4000:
                    walk(p)
                else:
                    add(p)
            except OSError:
                pass

    walk(root)
    for p in extra:
        try:
            add(p)
        except OSError:
            pass
    return out


def make_hal(cfg, timer=None):
    """The HAL for ``cfg["board"]``."""
    if cfg["board"] == "rp2":
        from pgt.firmware import hal_rp2

        return hal_rp2.make(cfg, timer)
    from pgt.firmware import hal_esp32

    return hal_esp32.make(cfg, timer)


def _ms_clock():
    """A millisecond clock that does not wrap (ticks_ms wraps; the Core needs differences only)."""
    import time

    state = [time.ticks_ms(), 0]  # type: list

    def clock():
        now = time.ticks_ms()
        state[1] += time.ticks_diff(now, state[0])
        state[0] = now
        return state[1]

    return clock


def guard_reads(core, read, timer, periodic):
    """``read`` for ``serve``, with the host-silence decision kept on its clock while a read blocks.

    MicroPython's ``sys.stdin.buffer.readinto`` returns only once the whole chunk has come, so a host that dies
    inside a chunk stops the loop inside that read. The soft ``timer`` (``machine.Timer``; its callback is
    scheduled, and the scheduler runs it from the event-poll hook in which the blocked read waits) runs
    ``core.poll`` every ``poll_ms`` — only while a read is under way: the loop is then stopped inside that
    read, so the callback and the loop never touch the Core at once (nor the clock, nor the HAL)."""
    blocked = [False]

    def guarded(mv):
        blocked[0] = True
        try:
            return read(mv)
        finally:
            blocked[0] = False

    def check(_t):
        if blocked[0]:
            try:
                core.poll()
            except Exception:  # noqa: BLE001 - never raise in a callback (the port would print on the data line)
                pass

    timer.init(period=core.poll_ms, mode=periodic, callback=check)
    return guarded


def _keep_feeding(timer, periodic, wdt, cfg):
    """From now on the timer feeds the watchdog (the loop has returned: the REPL must stay usable)."""
    timer.init(period=max(100, cfg["wdt_ms"] // 4), mode=periodic, callback=lambda _t: wdt.feed())


def _timer(machine, cfg):
    try:
        return machine.Timer(cfg["timer_id"])
    except Exception:  # noqa: BLE001 - no timer: the hardware watchdog is the only backstop
        return None


def main(config_path="board.json", stdin=None, stdout=None, clock=None):
    """Boot: load the config, zero the drive, start the watchdog, serve until exit/escape; return why. A config
    that cannot be right (or pins the HAL refuses) prints one line and returns ``STOP_CONFIG``: the board stays at
    its REPL, nothing driven, and no boot loop.
    (``stdin``, ``stdout`` and ``clock`` — milliseconds — are for tests; the board uses its own.)"""
    import machine
    import micropython

    from pgt.firmware import board
    from pgt.firmware.core import Core

    try:
        cfg = board.load(config_path)
        hal = make_hal(cfg)  # outputs at zero from here on
    except (ValueError, KeyError, TypeError, OSError) as e:  # a config the firmware refuses: the REPL, one line
        print("pgt: %s: %s (fix it and reflash; docs/hardware.md)" % (config_path, e))
        return STOP_CONFIG
    if clock is None:
        clock = _ms_clock()
    core = Core(hal, clock, cfg["max_frame"], file_hashes(TREE, ("main.py", config_path)), cfg["poll_ms"],
                cfg["frame_timeout_ms"])
    wdt = None
    feed = None
    if cfg["wdt_ms"] > 0:
        wdt = machine.WDT(timeout=cfg["wdt_ms"])
        hal.feed = feed = wdt.feed
    if stdin is None:
        stdin = sys.stdin.buffer
    if stdout is None:
        stdout = sys.stdout.buffer
    read, wait, write = stream_io(stdin, stdout)
    timer = _timer(machine, cfg)
    if timer is not None:
        read = guard_reads(core, read, timer, machine.Timer.PERIODIC)
    micropython.kbd_intr(-1)
    try:
        why = serve(core, read, wait, write, feed)
    finally:
        micropython.kbd_intr(3)
        core.stop_drive()
        if timer is not None:
            timer.deinit()
            if wdt is not None:
                _keep_feeding(timer, machine.Timer.PERIODIC, wdt, cfg)
    return why
