"""The decoding half of the msgpack codec (``mpack`` re-exports ``decode`` and ``DecodeError``).

``decode`` returns ``bin`` fields as memoryview slices of its input; anything malformed raises
``DecodeError``. Kept apart from the encoder so that each module compiles in little RAM on a board.
"""

import struct

MAX_DEPTH = 16


class DecodeError(ValueError):
    pass


class _Reader:
    def __init__(self, buf):
        self.mv = memoryview(buf)
        self.pos = 0
        self.end = len(self.mv)

    def take(self, n):
        pos = self.pos
        if n > self.end - pos:
            raise DecodeError("truncated")
        self.pos = pos + n
        return self.mv[pos : pos + n]

    def unpack(self, fmt, n):
        return struct.unpack(fmt, self.take(n))[0]


# (struct format, size) of the length field, by type byte
_LEN = {0xC4: (">B", 1), 0xC5: (">H", 2), 0xC6: (">I", 4),
        0xD9: (">B", 1), 0xDA: (">H", 2), 0xDB: (">I", 4),
        0xDC: (">H", 2), 0xDD: (">I", 4), 0xDE: (">H", 2), 0xDF: (">I", 4)}
# (struct format, size) of fixed-size scalars, by type byte
_SCALAR = {0xCA: (">f", 4), 0xCB: (">d", 8),
           0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
           0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8)}


def _str(mv):
    try:
        return str(mv, "utf-8")
    except UnicodeError:
        raise DecodeError("invalid utf-8") from None


def _decode(r, depth):
    if depth > MAX_DEPTH:
        raise DecodeError("nesting too deep")
    b = r.take(1)[0]
    if b < 0x80:
        return b
    if b >= 0xE0:
        return b - 0x100
    if b == 0xC0:
        return None
    if b == 0xC2:
        return False
    if b == 0xC3:
        return True
    if 0xA0 <= b <= 0xBF:
        return _str(r.take(b & 0x1F))
    if 0x90 <= b <= 0x9F:
        return _array(r, b & 0x0F, depth)
    if 0x80 <= b <= 0x8F:
        return _map(r, b & 0x0F, depth)
    spec = _SCALAR.get(b)
    if spec is not None:
        return r.unpack(spec[0], spec[1])
    spec = _LEN.get(b)
    if spec is None:
        raise DecodeError("unsupported type byte 0x%02x" % b)
    n = r.unpack(spec[0], spec[1])
    if b <= 0xC6:
        return r.take(n)
    if b <= 0xDB:
        return _str(r.take(n))
    if b <= 0xDD:
        return _array(r, n, depth)
    return _map(r, n, depth)


def _array(r, n, depth):
    if n > r.end - r.pos:  # every element takes at least one byte
        raise DecodeError("truncated")
    return [_decode(r, depth + 1) for _ in range(n)]


def _map(r, n, depth):
    if 2 * n > r.end - r.pos:
        raise DecodeError("truncated")
    out = {}
    for _ in range(n):
        key = _decode(r, depth + 1)
        if isinstance(key, memoryview):
            key = bytes(key)
        elif isinstance(key, (list, dict)):
            raise DecodeError("unhashable map key")
        if key in out:
            raise DecodeError("duplicate map key")
        out[key] = _decode(r, depth + 1)
    return out


def decode(buf):
    """Decode exactly one msgpack object filling ``buf``; ``bin`` values are memoryview slices of it."""
    r = _Reader(buf)
    obj = _decode(r, 0)
    if r.pos != r.end:
        raise DecodeError("trailing bytes")
    return obj
