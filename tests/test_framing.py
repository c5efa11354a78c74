from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgt.protocol import decoder, framing


def _decode_all(data: bytes, chunks: list[int], max_payload: int = 1 << 16) -> tuple[list[bytes], decoder.Decoder]:
    dec = decoder.Decoder(max_payload)
    out: list[bytes] = []
    pos = 0
    sizes = chunks or [len(data) or 1]
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        dec.feed(data[pos : pos + n])
        pos += n
        i += 1
        while (p := dec.next_payload()) is not None:
            out.append(p)
    return out, dec


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.lists(st.integers(1, 50), max_size=5))
def test_round_trip_any_chunking(payloads: list[bytes], chunks: list[int]) -> None:
    data = b"".join(framing.encode(p) for p in payloads)
    got, dec = _decode_all(data, chunks)
    assert got == payloads
    assert dec.dropped == {} and dec.pending() == 0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.binary(min_size=1, max_size=100), st.binary(max_size=40))
def test_garbage_around_frames_is_skipped(before: bytes, payload: bytes, after: bytes) -> None:
    good = framing.encode(payload)
    got, _ = _decode_all(before + good + after + good, [7])
    # the good frames are found whatever the garbage (the garbage itself may hold a frame only by a 2^-64 chance)
    assert got[-1] == payload and got.count(payload) >= 2


def test_corrupt_payload_dropped_and_next_frame_kept() -> None:
    a, b = framing.encode(b"first"), framing.encode(b"second")
    bad = bytearray(a)
    bad[framing.HEADER_SIZE + 1] ^= 0x10
    got, dec = _decode_all(bytes(bad) + b, [3])
    assert got == [b"second"]
    assert dec.dropped == {"bad_crc": 1}


def test_oversized_length_rejected_before_waiting_for_it() -> None:
    head = struct.pack("<2sBBI", b"PG", 1, 0, 10**9)
    frame = head + struct.pack("<I", framing.crc32(head))
    dec = decoder.Decoder(max_payload=1024)
    dec.feed(frame + framing.encode(b"ok"))
    assert dec.next_payload() == b"ok"
    assert dec.dropped["too_large"] == 1


def test_header_check_catches_a_flipped_length_bit() -> None:
    frame = bytearray(framing.encode(b"x" * 10))
    frame[4] ^= 0x01
    got, dec = _decode_all(bytes(frame) + framing.encode(b"y"), [])
    assert got == [b"y"] and dec.dropped.get("bad_header") == 1


def test_incomplete_frame_waits() -> None:
    frame = framing.encode(b"abcdef")
    dec = decoder.Decoder()
    dec.feed(frame[:-1])
    assert dec.next_payload() is None
    dec.feed(frame[-1:])
    assert dec.next_payload() == b"abcdef"


def test_known_frame_bytes() -> None:
    # the worked example of docs/protocol.md
    payload = bytes.fromhex("82a26f70a568656c6c6fa3736571cd0102")
    assert payload == __import__("msgpack").packb({"op": "hello", "seq": 258})
    frame = framing.encode(payload)
    assert frame.hex() == (
        "50470100" "11000000" + struct.pack("<I", framing.crc32(frame[:8])).hex() + payload.hex()
        + struct.pack("<I", framing.crc32(payload)).hex()
    )
    assert frame[:4] == b"PG\x01\x00"


class _Chunky:
    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readinto(self, mv: memoryview) -> int:
        n = min(len(mv), self.step, len(self.data) - self.pos)
        mv[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_stream_reader(step: int) -> None:
    frames = framing.encode(b"one") + b"\x00junk" + framing.encode(b"two") + b"\x03"
    r = framing.StreamReader(_Chunky(frames, step), 64)
    assert bytes(r.read()) == b"one"
    assert bytes(r.read()) == b"two"
    assert r.dropped == {"garbage": 1}
    assert r.read() == framing.StreamReader.ESCAPE
    with pytest.raises(EOFError):
        r.read()


def test_stream_reader_refuses_oversized_frame() -> None:
    r = framing.StreamReader(_Chunky(framing.encode(b"x" * 100) + framing.encode(b"ok"), 50), 64)
    assert r.read() is None and r.last_drop == "too_large"
    assert bytes(r.read()) == b"ok"


class _Timed:
    """A stream of scheduled bytes; ``wait`` says False once the bytes before a pause are used up."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = [bytearray(p) for p in parts]

    def wait(self) -> bool:
        if self.parts and not self.parts[0]:
            self.parts.pop(0)  # the pause: the line is quiet for a frame timeout
            return False
        return True

    def readinto(self, mv: memoryview) -> int:
        while self.parts and not self.parts[0]:
            self.parts.pop(0)
        if not self.parts:
            return 0
        part = self.parts[0]
        n = min(len(mv), len(part))
        mv[:n] = part[:n]
        del part[:n]
        return n


def test_ctrl_c_inside_the_rest_of_a_dropped_frame_is_data() -> None:
    good = framing.encode(b"\x03\x03 codes")
    bad = bytearray(framing.encode(b"\x03" * 20))
    bad[4] ^= 0x01  # corrupt length: the header is dropped, its \x03-filled rest follows
    r = framing.StreamReader(_Chunky(bytes(bad) + good + b"\x03", 5), 64)
    assert r.read() is None and r.last_drop == "bad_header"
    assert bytes(r.read()) == b"\x03\x03 codes"  # not mistaken for Ctrl-C
    assert r.read() == framing.StreamReader.ESCAPE  # in sync again: now it is Ctrl-C


def test_a_frame_cut_short_times_out_and_ctrl_c_then_works() -> None:
    frame = framing.encode(b"x" * 30)
    stream = _Timed(frame[:20], b"", b"\r\x03")
    r = framing.StreamReader(stream, 64, wait=stream.wait)
    assert r.read() is None and r.last_drop == "timeout" and r.in_sync
    assert r.read() == framing.StreamReader.ESCAPE


def test_idle_line_restores_sync_after_a_drop() -> None:
    bad = bytearray(framing.encode(b"abc"))
    bad[-1] ^= 1
    r = framing.StreamReader(_Chunky(bytes(bad) + b"\x03", 64), 64)
    assert r.read() is None and not r.in_sync
    r.idle()
    assert r.read() == framing.StreamReader.ESCAPE


def test_with_wait_a_long_body_is_read_in_chunks_so_a_stall_mid_body_times_out() -> None:
    frame = framing.encode(bytes(range(200)))
    stream = _Timed(frame[:150], b"", framing.encode(b"next"))
    reads: list[int] = []
    original = stream.readinto

    def spy(mv: memoryview) -> int:
        reads.append(len(mv))
        return original(mv)

    stream.readinto = spy  # type: ignore[method-assign]
    r = framing.StreamReader(stream, 256, wait=stream.wait)
    assert r.read() is None and r.last_drop == "timeout"
    assert max(reads) <= framing.WAIT_CHUNK
    assert bytes(r.read()) == b"next"
