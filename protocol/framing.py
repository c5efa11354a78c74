"""Length-prefixed frames with a checked header and a CRC-32 over the payload.

Layout (all integers little-endian; see docs/protocol.md):

    offset  size  field
    0       2     magic b"PG"
    2       1     protocol version
    3       1     flags (0; reserved)
    4       4     payload length n (uint32)
    8       4     header check: crc32 of bytes 0..7
    12      n     payload (one msgpack map)
    12+n    4     crc32 of the payload

Goals of the two readers here:
- ``Decoder`` (host, incremental): accepts bytes in chunks of any size; amortised O(n) over the stream — it
  never rescans bytes it has already searched; checks the length against the maximum before it waits for (or
  allocates) a payload; drops bad frames with a reason and resynchronises by scanning for the magic.
- ``StreamReader`` (device): reads the header with one call and the payload with one ``readinto`` into a
  preallocated buffer; no Python loop per byte except while scanning garbage for the magic.

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

# Reasons a frame is dropped (also the names of the counters).
BAD_HEADER = "bad_header"
TOO_LARGE = "too_large"
BAD_CRC = "bad_crc"
BAD_VERSION = "bad_version"
GARBAGE = "garbage"

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
    if head[2] != VERSION:
        return None, BAD_VERSION
    length = struct.unpack_from(_U32, head, 4)[0]
    if length > max_payload:
        return None, TOO_LARGE
    return length, None


class Decoder:
    """Incremental frame decoder for the host: ``feed`` bytes, then ``next_payload`` until it returns None.

    Dropped frames are counted in ``dropped`` (reason -> count) and the last reason is in ``last_drop``;
    ``garbage_bytes`` counts bytes skipped while looking for the magic.
    """

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self._start = 0  # bytes before this offset are consumed
        self._need = 0  # payload length of the header already accepted at _start, or 0
        self.frames = 0
        self.garbage_bytes = 0
        self.dropped = {}
        self.last_drop = None
        self._after_drop = False  # bytes skipped right after a dropped frame are that frame's, not garbage

    def feed(self, data):
        self._buf.extend(data)

    def _drop(self, reason):
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_drop = reason

    def _compact(self):
        if self._start > 4096 and self._start * 2 > len(self._buf):
            self._buf = self._buf[self._start :]  # (MicroPython's bytearray has no slice deletion)
            self._start = 0

    def pending(self):
        """Bytes buffered but not yet consumed."""
        return len(self._buf) - self._start

    def next_payload(self):
        """Return the next good payload (bytes), or None when no whole frame is buffered yet."""
        while True:
            self._compact()
            buf = self._buf
            start = self._start
            avail = len(buf) - start
            if self._need == 0:
                if avail < 2:
                    if avail == 1 and buf[start] != MAGIC[0]:
                        self.garbage_bytes += 1
                        self._start += 1
                    return None
                if buf[start] != MAGIC[0] or buf[start + 1] != MAGIC[1]:
                    found = buf.find(MAGIC, start + 1)
                    if found < 0:
                        # keep a last byte that may be the start of a magic
                        keep = 1 if buf[-1] == MAGIC[0] else 0
                        skipped = len(buf) - keep - start
                    else:
                        skipped = found - start
                    self.garbage_bytes += skipped
                    if not self._after_drop:
                        self._drop(GARBAGE)
                    self._after_drop = found < 0 and self._after_drop
                    self._start += skipped
                    continue
                if avail < HEADER_SIZE:
                    return None
                length, reason = parse_header(bytes(buf[start : start + HEADER_SIZE]), self.max_payload)
                if reason is not None:
                    self._drop(reason)
                    self._after_drop = True
                    self._start += 1  # resynchronise: search again after this false magic
                    continue
                self._need = length + 1  # +1 so that an empty payload is still "a header accepted"
            length = self._need - 1
            total = HEADER_SIZE + length + TRAILER_SIZE
            if avail < total:
                return None
            body_start = start + HEADER_SIZE
            payload = bytes(buf[body_start : body_start + length])
            check = struct.unpack_from(_U32, buf, body_start + length)[0]
            self._need = 0
            if check != crc32(payload):
                self._drop(BAD_CRC)
                self._after_drop = True
                self._start += 1
                continue
            self._after_drop = False
            self._start += total
            self.frames += 1
            return payload


class StreamReader:
    """Device-side frame reader over a stream with ``readinto`` (e.g. ``sys.stdin.buffer``).

    ``read()`` returns a memoryview of the payload inside the preallocated buffer (valid until the next call),
    or None when a frame was dropped (reason in ``last_drop``; counts in ``dropped``). If ``escape`` bytes
    (Ctrl-C, 0x03) arrive where a frame should start, ``read`` returns the constant ``ESCAPE``.
    """

    ESCAPE = -1

    def __init__(self, stream, max_payload, escape=b"\x03"):
        self.stream = stream
        self.max_payload = max_payload
        self.escape = escape
        self.head = bytearray(HEADER_SIZE)
        self.head_mv = memoryview(self.head)
        self.buf = bytearray(max_payload + TRAILER_SIZE)
        self.mv = memoryview(self.buf)
        self.frames = 0
        self.dropped = {}
        self.last_drop = None
        self._after_drop = False

    def _fill(self, mv):
        """Read exactly len(mv) bytes into mv; False on end of stream."""
        got = 0
        n = len(mv)
        while got < n:
            r = self.stream.readinto(mv[got:])
            if not r:
                return False
            got += r
        return True

    def _drop(self, reason):
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_drop = reason

    def read(self):
        """Block until a frame (or an escape, or end of stream -> raises EOFError) is read."""
        head = self.head
        hv = self.head_mv
        if not self._fill(hv[0:1]):
            raise EOFError
        scanned = False
        while True:
            # only garbage pays for this per-byte loop: a frame's first two bytes end it
            b = head[0]
            if self.escape and b == self.escape[0]:
                return self.ESCAPE
            if b == MAGIC[0]:
                if not self._fill(hv[1:2]):
                    raise EOFError
                if head[1] == MAGIC[1]:
                    break
                head[0] = head[1]
            elif not self._fill(hv[0:1]):
                raise EOFError
            scanned = True
        if scanned and not self._after_drop:
            self._drop(GARBAGE)
        self._after_drop = False
        if not self._fill(hv[2:HEADER_SIZE]):
            raise EOFError
        length, reason = parse_header(head, self.max_payload)
        if reason is not None:
            # the rest of a bad frame is skipped by the next read
            self._drop(reason)
            self._after_drop = True
            return None
        body = self.mv[0 : length + TRAILER_SIZE]
        if not self._fill(body):
            raise EOFError
        if struct.unpack_from(_U32, self.buf, length)[0] != crc32(self.mv[0:length]):
            self._drop(BAD_CRC)
            return None  # (the whole frame was read: nothing of it is left to skip)
        self.frames += 1
        return self.mv[0:length]
