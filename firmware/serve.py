"""The serve loop: frames from a byte line to the Core and back.

``serve(core, read, wait, write, feed)`` is the only serve loop there is: the board runs it over USB serial
(``pgt.firmware.startup.main``, what ``/main.py`` runs on boot), and the simulator runs it unchanged under
CPython behind a pty or a TCP socket (``pgt.sim.serve``). It never prints; diagnostics travel as frames
(``status`` reports the link counters). It returns — drive zero — on the ``exit`` op, when a Ctrl-C byte (0x03)
arrives between frames (``mpremote`` sends ``\\r\\x03\\x03`` when it connects, so a board running the firmware
can always be reflashed), or at end of input.

Safety: the host-silence decision (``Core.poll``) runs on every pass of the loop — every idle wake-up (at least
every ``poll_ms``), every wait for the next bytes of a frame or of garbage, and every request — so no traffic
that is not a valid request can hold it off (docs/protocol.md section 4). Inside a blocked read on a board, a
soft timer takes over (``startup.guard_reads``).
"""

import struct

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


class _Line:
    """The ``read`` function as the stream the frame reader wants (an object with ``readinto``)."""

    def __init__(self, read):
        self.readinto = read
