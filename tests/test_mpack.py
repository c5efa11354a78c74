from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from pgt.protocol import mpack

scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=8), kids, max_size=6),
    max_leaves=30,
)


def _canonical(obj: Any) -> Any:
    """The same object with dict keys inserted in the codec's sorted order (what msgpack must match)."""
    if isinstance(obj, dict):
        return {k: _canonical(obj[k]) for k in sorted(obj, key=lambda k: (type(k).__name__, k))}
    if isinstance(obj, list):
        return [_canonical(x) for x in obj]
    return obj


def _plain(obj: Any) -> Any:
    if isinstance(obj, memoryview):
        return bytes(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    return obj


@settings(max_examples=300, deadline=None)
@given(values)
def test_encoding_matches_msgpack(obj: Any) -> None:
    assert mpack.encode(obj) == msgpack.packb(_canonical(obj), use_bin_type=True)


@settings(max_examples=300, deadline=None)
@given(values)
def test_decodes_what_msgpack_writes(obj: Any) -> None:
    assert _plain(mpack.decode(msgpack.packb(obj, use_bin_type=True))) == obj


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    try:
        mpack.decode(data)
    except mpack.DecodeError:
        pass


def test_long_forms_match_msgpack() -> None:
    for obj in ["s" * 70000, b"b" * 70000, list(range(70000)), {str(i): i for i in range(70000)}, 2**64 - 1]:
        enc = mpack.encode(obj)
        assert enc == msgpack.packb(_canonical(obj), use_bin_type=True)
        assert _plain(mpack.decode(enc)) == obj


def test_bin_is_a_view_not_a_copy() -> None:
    buf = bytearray(msgpack.packb({"drive": b"\x01\x02\x03"}))
    out = mpack.decode(buf)
    assert isinstance(out["drive"], memoryview)
    buf[-1] = 0x09
    assert bytes(out["drive"]) == b"\x01\x02\x09"


def test_float32_decoded() -> None:
    assert mpack.decode(b"\xca\x3f\xc0\x00\x00") == 1.5


def test_huge_declared_lengths_fail_fast() -> None:
    for data in [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff\x00"]:
        try:
            mpack.decode(data)
        except mpack.DecodeError as e:
            assert "truncated" in str(e)
        else:
            raise AssertionError("accepted " + data.hex())


def test_deep_nesting_refused() -> None:
    try:
        mpack.decode(b"\x91" * 100 + b"\xc0")
    except mpack.DecodeError as e:
        assert "deep" in str(e)
    else:
        raise AssertionError


def test_a_key_twice_is_refused_and_depth_16_is_the_limit() -> None:
    try:
        mpack.decode(b"\x82\xa1a\x01\xa1a\x02")
    except mpack.DecodeError as e:
        assert "duplicate" in str(e)
    else:
        raise AssertionError("a map with a key twice was accepted")
    assert mpack.decode(b"\x91" * 16 + b"\xc0") is not None  # nil at depth 16
    try:
        mpack.decode(b"\x91" * 17 + b"\xc0")  # nil at depth 17
    except mpack.DecodeError:
        pass
    else:
        raise AssertionError("depth 17 was accepted")
