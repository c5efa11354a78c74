"""The host's incremental frame reader (the frame layout is in ``framing``).

Goals: accepts bytes in chunks of any size; amortised O(n) over the stream — it never rescans bytes it has
already searched; checks the length against the maximum before it waits for (or allocates) a payload; drops
bad frames with a reason and resynchronises by scanning for the magic, one byte after a false one.

Runs unchanged on MicroPython too (the parity tests feed it the same corpus there).
"""

import struct

from .framing import (
    BAD_CRC,
    DEFAULT_MAX_PAYLOAD,
    GARBAGE,
    HEADER_SIZE,
    MAGIC,
    TRAILER_SIZE,
    crc32,
    parse_header,
)

_U32 = "<I"


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
                        if not self._after_drop:
                            self._drop(GARBAGE)
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
