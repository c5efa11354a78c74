"""Message schema: protocol version, ops, fields, error codes, and request validation.

Every request is a msgpack map with ``op`` (str) and ``seq`` (uint32) plus the op's fields; every request
gets exactly one reply, a map that echoes ``seq`` and has ``op`` set to the request's op, or to ``"error"``
(then with ``code``, ``msg`` and ``req``, the op asked for). docs/protocol.md is the full specification.

``validate(req)`` checks a decoded request against ``SCHEMA`` and returns None or an (error code, message)
pair; it never raises. Checks that depend on the device (channel counts, batch limit) are the Core's.
Runs unchanged on MicroPython.
"""

PROTOCOL_VERSION = 2  # of the messages (hello's proto); the frame format has its own (framing.VERSION)

HELLO = "hello"
CONFIG = "config"
RUN = "run"
STATUS = "status"
STOP = "stop"
EXIT = "exit"
PING = "ping"
ERROR = "error"

# Stable error codes (never renumber; add new ones at the end).
E_MALFORMED = 1  # payload is not a msgpack map
E_UNKNOWN_OP = 2  # op is not one of OPS
E_MISSING_FIELD = 3  # a required field is absent
E_BAD_TYPE = 4  # a field has the wrong type
E_BAD_VALUE = 5  # a field's value is out of its range
E_BAD_SHAPE = 6  # a block's size does not match its shape or the device's channels
E_TOO_LARGE = 7  # a batch larger than the device's max_batch
E_HAL_FAULT = 8  # the hardware layer failed; the drive was set to zero
E_INTERNAL = 9  # an unexpected error inside the device; the drive was set to zero

ERROR_NAMES = {
    E_MALFORMED: "malformed",
    E_UNKNOWN_OP: "unknown_op",
    E_MISSING_FIELD: "missing_field",
    E_BAD_TYPE: "bad_type",
    E_BAD_VALUE: "bad_value",
    E_BAD_SHAPE: "bad_shape",
    E_TOO_LARGE: "too_large",
    E_HAL_FAULT: "hal_fault",
    E_INTERNAL: "internal",
}

U32_MAX = 0xFFFFFFFF
MAX_ECHO = 31  # characters of a request's op echoed in an error reply (a msgpack fixstr)
MAX_MSG = 120  # characters of an error reply's msg

# Field types: "uint" (int 0..2**32-1, not bool), "bin" (bytes), "uints" (array of uint), "bool".
# op -> (required fields, optional fields), each a tuple of (name, type).
SCHEMA = {
    HELLO: ((), ()),
    PING: ((), (("data", "bin"),)),
    CONFIG: ((), (("settle_us", "uint"), ("n_avg", "uint"), ("timeout_ms", "uint"),
                  ("drive_lo", "uints"), ("drive_hi", "uints"))),
    RUN: ((("n", "uint"), ("k", "uint"), ("drive", "bin")), ()),
    STATUS: ((), ()),
    STOP: ((), ()),
    EXIT: ((), ()),
}

OPS = tuple(SCHEMA)


def is_uint(v):
    return type(v) is int and 0 <= v <= U32_MAX


def _type_ok(value, kind):
    if kind == "uint":
        return is_uint(value)
    if kind == "bin":
        return isinstance(value, (bytes, bytearray, memoryview))
    if kind == "uints":
        if not isinstance(value, list):
            return False
        for v in value:
            if not is_uint(v):
                return False
        return True
    if kind == "bool":
        return type(value) is bool
    return False


def validate(req):
    """None if ``req`` is a well-formed request, else (error code, message). Never raises.

    Fields whose value is nil are removed from ``req`` first: nil means absent. The checks run in the order of
    docs/protocol.md section 2 (seq, op, then the op's fields in schema order); the first failure is reported.
    """
    if not isinstance(req, dict):
        return E_MALFORMED, "request is not a map"
    for key in [key for key in req if req[key] is None]:
        del req[key]
    op = req.get("op")
    if "seq" not in req:
        return E_MISSING_FIELD, "missing field: seq"
    if not is_uint(req["seq"]):
        return E_BAD_TYPE, "seq must be a uint32"
    if op is None:
        return E_MISSING_FIELD, "missing field: op"
    if not isinstance(op, str):
        return E_BAD_TYPE, "op must be a string"
    spec = SCHEMA.get(op)
    if spec is None:
        return E_UNKNOWN_OP, "unknown op: " + op[:MAX_ECHO]
    for name, kind in spec[0]:
        if name not in req:
            return E_MISSING_FIELD, "missing field: " + name
        if not _type_ok(req[name], kind):
            return E_BAD_TYPE, name + " must be " + kind
    for name, kind in spec[1]:
        if name in req and not _type_ok(req[name], kind):
            return E_BAD_TYPE, name + " must be " + kind
    return None


def request_seq(req):
    """The request's seq if it is a valid uint32, else None (then the reply carries nil)."""
    if isinstance(req, dict):
        seq = req.get("seq")
        if is_uint(seq):
            return seq
    return None


def reply(op, seq, boot, fields=None):
    """A reply map for ``op`` echoing ``seq``, with the device's boot id."""
    out = {"op": op, "seq": seq, "boot": boot}
    if fields:
        for key in fields:
            out[key] = fields[key]
    return out


def printable(text, limit):
    """``text`` cut to ``limit`` characters, each one that is not printable ASCII replaced by ``?``."""
    text = text[:limit]
    for ch in text:
        if not " " <= ch <= "~":
            return "".join([c if " " <= c <= "~" else "?" for c in text])
    return text


def error_reply(seq, boot, code, msg, req_op=None):
    """An ``error`` reply echoing ``seq`` (None when the request had no valid seq), with the boot id; ``msg``
    and the echoed op are printable ASCII cut to MAX_MSG and MAX_ECHO characters, so an error reply's payload
    is at most 197 bytes (docs/protocol.md)."""
    if req_op is not None:
        req_op = printable(req_op, MAX_ECHO)
    return {"op": ERROR, "seq": seq, "boot": boot, "code": code, "msg": printable(msg, MAX_MSG), "req": req_op}
