"""The serve loop: frames from a byte line to the Core and back. ``main()`` is what ``/main.py`` runs on boot.

``serve(core, read, wait, write, feed)`` is the only serve loop there is: the board runs it over USB serial
(``main``: ``sys.stdin.buffer``/``sys.stdout.buffer`` with the keyboard interrupt off, so every byte is data),
and the simulator runs it unchanged under CPython behind a pty or a TCP socket (``pgt.sim.serve``). It never
prints; diagnostics travel as frames (``status`` reports the link counters). It returns — drive zero — on the
``exit`` op, when a Ctrl-C byte (0x03) arrives between frames (``mpremote`` sends ``\\r\\x03\\x03`` when it
connects, so a board running the firmware can always be reflashed), or at end of input.

Safety: the drive is zero on boot (the HAL creates its outputs at their zero codes), on leaving, and within
``timeout_ms + poll_ms`` of the last valid request (docs/protocol.md section 4): the host-silence decision
(``Core.poll``) runs on every pass of the loop — every idle wake-up (at least every ``poll_ms``), every wait for
the next bytes of a frame or of garbage, and every request — so no traffic that is not a valid request can
hold it off. On a board the loop can also stop inside a read (a stdin read blocks until the whole chunk it asked
for has come): there a soft timer takes over the decision (``guard_reads``). A hardware watchdog (``wdt_ms``,
fed by the loop and the HAL, never by the timer while serving) resets a board whose loop hangs — or stays
blocked in a read — that long; once the loop has returned, the timer feeds it so the REPL stays usable (neither
rp2 nor esp32 can stop a started watchdog; a soft reset stops the timer, and the next boot starts the loop
again).
"""

import struct
import sys

from pgt.protocol import framing

STOP_ESCAPE = "escape"
STOP_EXIT = "exit"
STOP_EOF = "eof"

_U32 = "<I"


def write_frame(write, payload):
    """Write one frame around ``payload`` as three writes (no concatenated copy of the payload)."""
    write(framing.header(len(payload)))
    write(payload)
    write(struct.pack(_U32, framing.crc32(payload)))


def serve(core, read, wait, write, feed=None, chunk=framing.WAIT_CHUNK):
    """Answer frames until exit, escape or end of input; return which (STOP_*). Never prints.

    The I/O comes in as functions: ``read(mv)`` reads into the memoryview ``mv`` and returns how many bytes
    (at least 1; 0 at end of input; it is called only after ``wait`` said input is ready); ``wait(ms)`` returns
    True once input is ready (or the input has ended), False if none came within ``ms``; ``write(data)``
    writes all of ``data``; ``feed()``, if given, feeds a hardware watchdog. The clock, ``poll_ms`` and
    ``frame_timeout_ms`` are the Core's. A frame whose bytes stop arriving for ``frame_timeout_ms`` is dropped
    (``timeout``), and a line quiet that long puts the reader back in sync, so that Ctrl-C works again after a
    dropped frame (docs/protocol.md, section 1). Link counters go into ``core.link`` (kept across calls with
    the same Core). Any exception of the I/O functions other than EOFError passes through, drive unchanged.
    ``chunk`` bounds each read inside a frame (a board's stdin read blocks until all it asked for has come).
    """
    clock = core.clock
    poll_ms = core.poll_ms
    frame_timeout_ms = core.frame_timeout_ms

    def tick():
        if feed is not None:
            feed()
        core.poll()

    def wait_bytes():
        # the reader waits here for the next bytes of a frame, or of garbage: the watchdog runs meanwhile
        start = clock()
        while True:
            tick()
            if wait(poll_ms):
                return True
            if clock() - start >= frame_timeout_ms:
                return False

    line = _Line(read)
    reader = framing.StreamReader(line, core.max_frame, wait=wait_bytes, chunk=chunk)
    link = core.link
    if "dropped" not in link:
        link["frames_in"] = 0
        link["frames_out"] = 0
        link["dropped"] = {}
    reader.dropped = link["dropped"]
    escape = framing.StreamReader.ESCAPE
    quiet_since = clock()
    try:
        while True:
            tick()
            if not wait(poll_ms):
                if clock() - quiet_since >= frame_timeout_ms:
                    reader.idle()
                continue
            payload = reader.read()
            quiet_since = clock()
            if payload is escape:
                core.stop_drive()
                return STOP_ESCAPE
            if payload is None:
                continue  # dropped: counted in link["dropped"], reported by status
            link["frames_in"] += 1
            write_frame(write, core.handle(payload))
            link["frames_out"] += 1
            if core.exit_requested:
                return STOP_EXIT
    except EOFError:
        core.stop_drive()
        return STOP_EOF


def _ready(ms):
    return True


class _Line:
    """The ``read`` function as the stream the frame reader wants (an object with ``readinto``)."""

    def __init__(self, read):
        self.readinto = read


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
    """sha256 (hex) of every file below ``root`` and of ``extra``: reported by hello."""
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
        for name in os.listdir(d):
            p = d + "/" + name
            if os.stat(p)[0] & 0x4000:
                walk(p)
            else:
                add(p)

    try:
        walk(root)
    except OSError:
        pass
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
    """Boot: load the config, zero the drive, start the watchdog, serve until exit/escape; return why.
    (``stdin``, ``stdout`` and ``clock`` — milliseconds — are for tests; the board uses its own.)"""
    import machine
    import micropython

    from pgt.firmware import board
    from pgt.firmware.core import Core

    cfg = board.load(config_path)
    hal = make_hal(cfg)  # outputs at zero from here on
    if clock is None:
        clock = _ms_clock()
    core = Core(hal, clock, cfg["max_frame"], file_hashes(), cfg["poll_ms"], cfg["frame_timeout_ms"])
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
