"""Length-prefixed frames with a checked header and a CRC-32 over the payload.

Layout (all integers little-endian; see docs/protocol.md):

    offset  size  field
    0       2     magic b"PG"
    2       1     protocol version
    3       1     flags (0; a frame with other flags is dropped as bad_version)
    4       4     payload length n (uint32)
    8       4     header check: crc32 of bytes 0..7
    12      n     payload (one msgpack map)
    12+n    4     crc32 of the payload

The device reads frames with ``StreamReader``: the header with one call and the payload with one
``readinto`` into a preallocated buffer; no Python loop per byte except while scanning garbage for the magic.
The host's incremental reader is ``pgt.protocol.decoder.Decoder``.

Runs unchanged on MicroPython: no typing at run time, only binascii and struct.
"""

import binascii
import struct

MAGIC = b"PG"
VERSION = 1
HEADER_SIZE = 12
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
DEFAULT_MAX_PAYLOAD = 1 << 20
WAIT_CHUNK = 64  # bytes per read between two wait() calls of a StreamReader

# Reasons a frame is dropped (also the names of the counters).
BAD_HEADER = "bad_header"
TOO_LARGE = "too_large"
BAD_CRC = "bad_crc"
BAD_VERSION = "bad_version"
GARBAGE = "garbage"
TIMEOUT = "timeout"

_HEAD = "<2sBBI"
_U32 = "<I"


def crc32(data):
    """CRC-32 (IEEE, as zlib and binascii compute it) as an unsigned int."""
    return binascii.crc32(data) & 0xFFFFFFFF


def header(length, version=VERSION):
    """The 12-byte header of a frame whose payload is ``length`` bytes."""
    head = struct.pack(_HEAD, MAGIC, version, 0, length)
    return head + struct.pack(_U32, crc32(head))


def encode(payload):
    """One whole frame around ``payload`` (bytes-like)."""
    return header(len(payload)) + bytes(payload) + struct.pack(_U32, crc32(payload))


def parse_header(head, max_payload):
    """Check a 12-byte header; return (payload length, None) or (None, reason)."""
    if head[0:2] != MAGIC:
        return None, GARBAGE
    if struct.unpack_from(_U32, head, 8)[0] != crc32(head[0:8]):
        return None, BAD_HEADER
    if head[2] != VERSION or head[3] != 0:  # flags: none defined yet, so a flagged frame is of an unknown format
        return None, BAD_VERSION
    length = struct.unpack_from(_U32, head, 4)[0]
    if length > max_payload:
        return None, TOO_LARGE
    return length, None


class StreamReader:
    """Device-side frame reader over a stream with ``readinto`` (e.g. ``sys.stdin.buffer``).

    ``read()`` returns a memoryview of the payload inside the preallocated buffer (valid until the next call),
    or None when a frame was dropped (reason in ``last_drop``; counts in ``dropped``), or the constant
    ``ESCAPE`` when an ``escape`` byte (Ctrl-C, 0x03) arrives where a frame should start. It raises EOFError
    at end of stream.

    Ctrl-C is honoured only while the reader is in sync: after a dropped frame, the bytes that follow may be
    the rest of it (drive codes hold 0x03 bytes all the time), so 0x03 is data until a good frame arrives or
    the line goes quiet. ``wait``, if given, is called before each read once a frame has begun (or while
    garbage is skipped) and returns False when nothing arrived within the frame timeout: the partial frame is
    then dropped (reason ``timeout``) and the reader is in sync again — so a host that died mid-frame cannot
    leave the device waiting for bytes that never come, and ``mpremote`` can still break in. With a ``wait``
    it reads at most ``chunk`` bytes per call (a board's stdin read blocks until all it asked for has come).
    """

    ESCAPE = -1

    def __init__(self, stream, max_payload, escape=b"\x03", wait=None, chunk=WAIT_CHUNK):
        self.stream = stream
        self.chunk = chunk
        self.max_payload = max_payload
        self.escape = escape
        self.wait = wait
        self.head = bytearray(HEADER_SIZE)
        self.head_mv = memoryview(self.head)
        self.buf = bytearray(max_payload + TRAILER_SIZE)
        self.mv = memoryview(self.buf)
        self.frames = 0
        self.dropped = {}
        self.last_drop = None
        self.in_sync = True

    def _fill(self, mv, guarded=True):
        """Read exactly len(mv) bytes into mv: True; False if ``wait`` timed out; EOFError at end of stream."""
        got = 0
        n = len(mv)
        wait = self.wait if guarded else None
        # with a wait(), read in small chunks: a board's stdin read blocks until the whole length has come
        step = self.chunk if wait is not None else n
        while got < n:
            if wait is not None and not wait():
                return False
            r = self.stream.readinto(mv[got : min(n, got + step)])
            if not r:
                raise EOFError
            got += r
        return True

    def _drop(self, reason):
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_drop = reason

    def idle(self):
        """Tell the reader that the line has been quiet for a frame timeout: it is in sync again."""
        self.in_sync = True

    def _timeout(self, counted):
        if counted:
            self._drop(TIMEOUT)
        self.in_sync = True
        return None

    def read(self):
        """Block until a frame, an escape or a drop; see the class docstring."""
        head = self.head
        hv = self.head_mv
        self._fill(hv[0:1], False)
        scanned = False
        while True:
            # only garbage pays for this per-byte loop: a frame's first two bytes end it
            b = head[0]
            if self.in_sync and self.escape and b == self.escape[0]:
                return self.ESCAPE
            if b == MAGIC[0]:
                if not self._fill(hv[1:2]):
                    return self._timeout(False)
                if head[1] == MAGIC[1]:
                    break
                head[0] = head[1]
            elif not self._fill(hv[0:1]):
                return self._timeout(False)
            scanned = True
        if scanned and self.in_sync:
            self._drop(GARBAGE)
        if not self._fill(hv[2:HEADER_SIZE]):
            return self._timeout(True)
        length, reason = parse_header(head, self.max_payload)
        if reason is not None:
            # the rest of a bad frame follows: skipped as garbage, with Ctrl-C ignored, by the next reads
            self._drop(reason)
            self.in_sync = False
            return None
        body = self.mv[0 : length + TRAILER_SIZE]
        if not self._fill(body):
            return self._timeout(True)
        if struct.unpack_from(_U32, self.buf, length)[0] != crc32(self.mv[0:length]):
            self._drop(BAD_CRC)
            self.in_sync = False  # a truncated frame swallowed the start of the next: its rest follows
            return None
        self.in_sync = True
        self.frames += 1
        return self.mv[0:length]
