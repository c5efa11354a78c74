"""A small msgpack codec for the device side (and for parity tests on the host).

Covers the subset the protocol uses: nil, bool, int (up to 64 bit), float32/64 (floats are written as
float64), str, bin, array, map. Maps are written with their keys sorted (by type name, then value), so
that CPython and MicroPython — whose dicts are not insertion-ordered — write the same bytes. For that subset
its bytes are the same as ``msgpack.packb`` of the same map with keys inserted in sorted order (smallest
representation for ints, strings, bins, arrays and maps, as msgpack-python writes them), and it decodes what
msgpack-python writes. ``decode`` returns ``bin`` fields as memoryview slices of the input: no copy.

Anything malformed raises ``DecodeError`` (a ValueError), never another exception: truncated input, unknown
type bytes, ext types, invalid UTF-8, unhashable map keys, nesting deeper than ``MAX_DEPTH``, trailing bytes.
Declared lengths are checked against the bytes present before anything is allocated.

Runs unchanged on MicroPython (note: there ``isinstance(True, int)`` is False, so bools are tested first).
"""

import struct

from .unpack import MAX_DEPTH, DecodeError, decode  # noqa: F401  (the codec's other half)


class EncodeError(ValueError):
    pass


def _encode_int(out, n):
    if 0 <= n < 0x80:
        out.append(n)
    elif -32 <= n < 0:
        out.append(n & 0xFF)
    elif n >= 0:
        if n <= 0xFF:
            out.extend(struct.pack("<BB", 0xCC, n))
        elif n <= 0xFFFF:
            out.extend(struct.pack(">BH", 0xCD, n))
        elif n <= 0xFFFFFFFF:
            out.extend(struct.pack(">BI", 0xCE, n))
        elif n <= 0xFFFFFFFFFFFFFFFF:
            out.extend(struct.pack(">BQ", 0xCF, n))
        else:
            raise EncodeError("int too large for msgpack")
    else:
        if n >= -0x80:
            out.extend(struct.pack(">Bb", 0xD0, n))
        elif n >= -0x8000:
            out.extend(struct.pack(">Bh", 0xD1, n))
        elif n >= -0x80000000:
            out.extend(struct.pack(">Bi", 0xD2, n))
        elif n >= -0x8000000000000000:
            out.extend(struct.pack(">Bq", 0xD3, n))
        else:
            raise EncodeError("int too small for msgpack")


def _encode_len(out, n, fix_tag, fix_max, tag8, tag16, tag32):
    if fix_tag is not None and n <= fix_max:
        out.append(fix_tag | n)
    elif tag8 is not None and n <= 0xFF:
        out.extend(struct.pack(">BB", tag8, n))
    elif n <= 0xFFFF:
        out.extend(struct.pack(">BH", tag16, n))
    elif n <= 0xFFFFFFFF:
        out.extend(struct.pack(">BI", tag32, n))
    else:
        raise EncodeError("object too long for msgpack")


def _nbytes(buf):
    n = getattr(buf, "nbytes", None)  # CPython memoryview of a typed array
    return len(buf) if n is None else n


def _key_order(key):
    return (type(key).__name__, key)


def encode_into(out, obj, depth=0):
    """Append the msgpack encoding of ``obj`` to the bytearray ``out``."""
    if depth > MAX_DEPTH:
        raise EncodeError("nesting too deep")
    if obj is None:
        out.append(0xC0)
    elif obj is True:
        out.append(0xC3)
    elif obj is False:
        out.append(0xC2)
    elif isinstance(obj, int):
        _encode_int(out, obj)
    elif isinstance(obj, float):
        out.extend(struct.pack(">Bd", 0xCB, obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        _encode_len(out, len(data), 0xA0, 31, 0xD9, 0xDA, 0xDB)
        out.extend(data)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _encode_len(out, _nbytes(obj), None, 0, 0xC4, 0xC5, 0xC6)
        out.extend(obj)
    elif isinstance(obj, (list, tuple)):
        _encode_len(out, len(obj), 0x90, 15, None, 0xDC, 0xDD)
        for item in obj:
            encode_into(out, item, depth + 1)
    elif isinstance(obj, dict):
        _encode_len(out, len(obj), 0x80, 15, None, 0xDE, 0xDF)
        for key in sorted(obj, key=_key_order):
            encode_into(out, key, depth + 1)
            encode_into(out, obj[key], depth + 1)
    else:
        raise EncodeError("cannot encode " + type(obj).__name__)


def encode(obj):
    """The msgpack bytes of ``obj``."""
    out = bytearray()
    encode_into(out, obj)
    return bytes(out)
