"""A deterministic corpus of wire inputs — valid, corrupt, truncated, oversized, random — for parity tests."""

from __future__ import annotations

import random
import struct

import msgpack

from pgt.protocol import framing


def codec_corpus() -> list[bytes]:
    """Sized for a microcontroller's heap: the 32-bit length forms are tested on CPython only."""
    rng = random.Random(1)
    objects: list[object] = [
        None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
        -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
        0.0, -0.0, 1.5, -2.25e300, 1e-300, float("inf"),
        "", "a", "x" * 31, "x" * 32, "y" * 255, "y" * 256, "z" * 300, "héllo ✓",
        b"", b"\x00", b"\xff" * 255, b"\xab" * 256, b"\x01" * 300,
        [], [1, 2, 3], list(range(15)), list(range(16)), list(range(300)),
        {}, {"op": "run", "seq": 7}, {str(i): i for i in range(15)}, {str(i): i for i in range(16)},
        {"nested": {"a": [1, {"b": [None, True, b"\x00\x01"]}]}},
        {"op": "run", "seq": 1, "n": 2, "k": 16, "drive": bytes(64)},
        {1: "int key", "f": 2.5},
    ]
    data = [msgpack.packb(o, use_bin_type=True) for o in objects]
    data.append(b"\xca\x3f\xc0\x00\x00")  # float32 1.5
    data.append(b"\xca\x7f\xc0\x00\x00")  # float32 NaN
    # malformed: truncations, unsupported types, bad utf-8, deep nesting, trailing bytes, huge lengths
    for d in list(data[:50]):
        if len(d) > 1:
            data.append(d[: len(d) // 2])
            data.append(d[:-1])
    data += [
        b"", b"\xc1", b"\xd4\x01\x00", b"\xc7\x01\x01\x00", b"\xa2\xff\xfe", b"\x91" * 40 + b"\xc0",
        b"\x01\x02", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
        b"\x81\x90\x01", b"\x81\x80\x01", b"\x81\xc4\x01\xaa\x02",
    ]
    for _ in range(150):
        data.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 24))))
    return data


def frame_corpus() -> list[bytes]:
    rng = random.Random(2)
    good = [framing.encode(msgpack.packb({"op": "ping", "seq": i, "data": bytes(i * 7)})) for i in range(6)]
    stream = b"".join(good)
    cases = [stream, b"garbage!" + stream, stream + b"PG", b"P" + stream, b""]
    bad_crc = bytearray(good[1])
    bad_crc[-1] ^= 0xFF
    cases.append(good[0] + bytes(bad_crc) + good[2])
    bad_payload = bytearray(good[2])
    bad_payload[framing.HEADER_SIZE] ^= 0x01
    cases.append(good[0] + bytes(bad_payload) + good[3])
    bad_head = bytearray(good[3])
    bad_head[5] ^= 0x40
    cases.append(bytes(bad_head) + good[4])
    head = struct.pack("<2sBBI", b"PG", 1, 0, 10**6)
    too_large = head + struct.pack("<I", framing.crc32(head))
    cases.append(too_large + good[0])
    head = struct.pack("<2sBBI", b"PG", 9, 0, 3)
    bad_version = head + struct.pack("<I", framing.crc32(head)) + b"abc" + struct.pack("<I", framing.crc32(b"abc"))
    cases.append(bad_version + good[5])
    cases.append(good[0][:-3] + good[1])  # truncated then a good frame
    cases.append(b"\x03\x03" + good[0])
    for _ in range(25):
        s = bytearray(stream)
        for _ in range(rng.randint(1, 4)):
            s[rng.randrange(len(s))] = rng.getrandbits(8)
        cases.append(bytes(s))
    for _ in range(10):
        cases.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))))
    return cases


def request_corpus() -> list[bytes]:
    p = msgpack.packb
    reqs: list[object] = [
        {"op": "hello", "seq": 0}, {"op": "ping", "seq": 1, "data": b"xyz"}, {"op": "status", "seq": 2},
        {"op": "stop", "seq": 3}, {"op": "exit", "seq": 4},
        {"op": "config", "seq": 5, "settle_us": 1000, "n_avg": 4, "timeout_ms": 2000},
        {"op": "config", "seq": 6, "drive_lo": [0] * 16, "drive_hi": [4095] * 16},
        {"op": "config", "seq": 6, "drive_lo": [0, -1]}, {"op": "config", "seq": 6, "n_avg": True},
        {"op": "run", "seq": 7, "n": 1, "k": 16, "drive": bytes(32)},
        {"op": "run", "seq": 8, "n": 1, "k": 16}, {"op": "run", "seq": 9, "n": "1", "k": 16, "drive": b""},
        {"op": "run", "seq": 9, "n": -1, "k": 16, "drive": b""},
        {"op": "run", "seq": 9, "n": 2**40, "k": 1, "drive": b""},
        {"op": "launch", "seq": 10}, {"op": 5, "seq": 11}, {"seq": 12}, {"op": "hello"}, {"op": "hello", "seq": -1},
        {"op": "hello", "seq": True}, {"op": "hello", "seq": 2**32}, {"op": "x" * 100, "seq": 1},
        [1, 2], "hello", 5, None,
    ]
    return [p(r, use_bin_type=True) for r in reqs] + [b"\xc1", b"\x82\xa2op"]
