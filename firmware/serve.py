"""The serve loop: frames from USB serial to the Core and back. ``main()`` is what ``/main.py`` runs on boot.

The loop reads with ``sys.stdin.buffer`` and writes with ``sys.stdout.buffer`` and, while it runs, turns the
keyboard interrupt off (``micropython.kbd_intr(-1)``), so every byte is data; it never prints (diagnostics
travel as frames: ``status`` reports the link counters). It returns to the REPL — restoring Ctrl-C — on the
``exit`` op, when a Ctrl-C byte (0x03) arrives between frames (``mpremote`` sends ``\\r\\x03\\x03`` when it
connects, so a board running the firmware can always be reflashed), or at end of input. The drive is zero on
boot (the HAL creates its outputs at their zero codes), on leaving, and after ``timeout_ms`` of host silence
(``Core.poll``, checked whenever the idle loop wakes). A hardware watchdog (``wdt_ms``) resets a board whose
loop hangs; once the loop has returned, a timer keeps feeding it so the REPL stays usable (neither rp2 nor
esp32 can stop a started watchdog; a soft reset stops the timer, and the next boot starts the loop again).
"""

import struct
import sys

from pgt.protocol import framing

STOP_ESCAPE = "escape"
STOP_EXIT = "exit"
STOP_EOF = "eof"

_U32 = "<I"


def write_frame(stream, payload):
    """Write one frame around ``payload`` as three writes (no concatenated copy of the payload)."""
    stream.write(framing.header(len(payload)))
    stream.write(payload)
    stream.write(struct.pack(_U32, framing.crc32(payload)))


def serve(core, stdin, stdout, wdt=None, poll_ms=None, flush=None, frame_timeout_ms=1000):
    """Answer frames until exit, escape or end of input; returns which (STOP_*). Never prints.

    With ``poll_ms`` the loop waits for input at most that long (select.poll) between feeding the watchdog
    and checking host silence (``Core.poll``); a frame whose bytes stop arriving for ``frame_timeout_ms`` is
    dropped (the reader's ``wait``), and a line quiet for that long puts the reader back in sync, so that
    Ctrl-C works again after a dropped frame (docs/protocol.md, section 1). Without ``poll_ms`` (a stream that
    cannot be polled) it blocks in the read.
    """
    poller = None
    if poll_ms is not None:
        import select

        poller = select.poll()
        try:
            poller.register(stdin, select.POLLIN)
            poller.poll(0)
        except OSError:  # a stream that cannot be polled: block in the read instead
            poller = None

    wait = None
    if poller is not None:
        frame_poller = poller

        def wait():
            if wdt is not None:
                wdt.feed()
            for _ev in frame_poller.ipoll(frame_timeout_ms):
                return True
            return False

    reader = framing.StreamReader(stdin, core.max_frame, wait=wait)
    link = core.link
    link["frames_in"] = 0
    link["frames_out"] = 0
    link["dropped"] = reader.dropped
    escape = framing.StreamReader.ESCAPE
    quiet_ms = 0
    while True:
        if wdt is not None:
            wdt.feed()
        if poller is not None:
            ready = False
            for _ev in poller.ipoll(poll_ms):
                ready = True
            if not ready:
                core.poll()
                quiet_ms += poll_ms
                if quiet_ms >= frame_timeout_ms:
                    reader.idle()
                continue
            quiet_ms = 0
        try:
            payload = reader.read()
        except EOFError:
            core.stop_drive()
            return STOP_EOF
        if payload is escape:
            core.stop_drive()
            return STOP_ESCAPE
        if payload is None:
            continue  # dropped: counted in reader.dropped, reported by status
        link["frames_in"] += 1
        reply = core.handle(payload)
        write_frame(stdout, reply)
        if flush is not None:
            flush()
        link["frames_out"] += 1
        if core.exit_requested:
            return STOP_EXIT
        core.poll()


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


def _keep_feeding(machine, wdt, cfg):
    try:
        t = machine.Timer(cfg["timer_id"])
        t.init(period=max(100, cfg["wdt_ms"] // 4), mode=machine.Timer.PERIODIC, callback=lambda _t: wdt.feed())
        return t
    except Exception:  # noqa: BLE001 - no timer: the watchdog resets the board, which restarts the loop
        return None


def main(config_path="board.json", stdin=None, stdout=None):
    """Boot: load the config, zero the drive, start the watchdog, serve until exit/escape; return why."""
    import machine
    import micropython

    from pgt.firmware import board
    from pgt.firmware.core import Core

    cfg = board.load(config_path)
    hal = make_hal(cfg)  # outputs at zero from here on
    core = Core(hal, _ms_clock(), cfg["max_frame"], file_hashes())
    wdt = None
    if cfg["wdt_ms"] > 0:
        wdt = machine.WDT(timeout=cfg["wdt_ms"])
        hal.feed = wdt.feed
    if stdin is None:
        stdin = sys.stdin.buffer
    if stdout is None:
        stdout = sys.stdout.buffer
    micropython.kbd_intr(-1)
    try:
        why = serve(core, stdin, stdout, wdt, cfg["poll_ms"], None, cfg["frame_timeout_ms"])
    finally:
        micropython.kbd_intr(3)
        core.stop_drive()
        if wdt is not None:
            _keep_feeding(machine, wdt, cfg)
    return why
