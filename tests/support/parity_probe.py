"""Probes that run unchanged under CPython and MicroPython and describe what the protocol code did as text.

The parity tests feed the same corpus to both interpreters and compare these descriptions byte for byte.
"""

import binascii

from pgt.protocol import decoder, framing, messages, mpack


def _hex(b):
    return binascii.hexlify(bytes(b)).decode()


def describe(obj):
    """A canonical text for a decoded msgpack object (bin as hex; floats by their bit pattern)."""
    if obj is None or obj is True or obj is False:
        return repr(obj)
    if isinstance(obj, int):
        return "i" + str(obj)
    if isinstance(obj, float):
        return "f" + _hex(mpack.encode(obj))
    if isinstance(obj, str):
        return "s" + _hex(obj.encode())
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return "b" + _hex(obj)
    if isinstance(obj, list):
        return "[" + ",".join(describe(x) for x in obj) + "]"
    if isinstance(obj, dict):
        keys = sorted(obj, key=lambda k: (type(k).__name__, k))  # MicroPython's dicts are unordered
        return "{" + ",".join(describe(k) + ":" + describe(obj[k]) for k in keys) + "}"
    return "?" + type(obj).__name__


def probe_codec(data):
    """Decode ``data``; re-encode what came out. Text: the description and the re-encoding, or the error."""
    try:
        obj = mpack.decode(data)
    except mpack.DecodeError as e:
        return "DecodeError " + str(e)
    return describe(obj) + " = " + _hex(mpack.encode(obj))


def probe_frames(data, chunk):
    """Feed ``data`` to the incremental decoder ``chunk`` bytes at a time; list payloads and drops."""
    dec = decoder.Decoder(max_payload=4096)
    out = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
        while True:
            p = dec.next_payload()
            if p is None:
                break
            out.append(_hex(p))
    drops = ",".join(k + "=" + str(dec.dropped[k]) for k in sorted(dec.dropped))
    return "|".join(out) + " drops:" + drops + " garbage:" + str(dec.garbage_bytes) + " pend:" + str(dec.pending())


class _Stream:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def readinto(self, mv):
        n = min(len(mv), len(self.data) - self.pos, 7)  # short reads, as a serial port gives
        mv[0:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def probe_stream(data):
    """Read ``data`` with the device-side StreamReader until end of stream; list what each read gave."""
    r = framing.StreamReader(_Stream(data), 4096)
    out = []
    while True:
        try:
            p = r.read()
        except EOFError:
            break
        if p is None:
            out.append("drop:" + str(r.last_drop))
        elif p is framing.StreamReader.ESCAPE or (isinstance(p, int) and p == framing.StreamReader.ESCAPE):
            out.append("escape")
        else:
            out.append(_hex(p))
    return "|".join(out)


def probe_validate(data):
    """Decode a request payload and validate it; text: the error pair or 'ok'."""
    try:
        req = mpack.decode(data)
    except mpack.DecodeError as e:
        return "DecodeError " + str(e)
    err = messages.validate(req)
    return "ok" if err is None else "err %d %s seq=%r" % (err[0], err[1], messages.request_seq(req))
