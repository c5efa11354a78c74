from __future__ import annotations

from typing import Any

import pytest

from pgt.protocol import messages as m


@pytest.mark.parametrize(
    "req, code",
    [
        ({"op": "hello", "seq": 1}, None),
        ({"op": "run", "seq": 1, "n": 1, "k": 2, "drive": b"\x00" * 4}, None),
        ({"op": "run", "seq": 1, "n": 1, "k": 2}, m.E_MISSING_FIELD),
        ({"op": "run", "seq": 1, "n": True, "k": 2, "drive": b""}, m.E_BAD_TYPE),
        ({"op": "config", "seq": 1, "drive_lo": [1, -2]}, m.E_BAD_TYPE),
        ({"op": "warp", "seq": 1}, m.E_UNKNOWN_OP),
        ({"op": "hello"}, m.E_MISSING_FIELD),
        ({"op": "hello", "seq": 2**32}, m.E_BAD_TYPE),
        ({"seq": 3}, m.E_MISSING_FIELD),
        ([1], m.E_MALFORMED),
    ],
)
def test_validate(req: Any, code: int | None) -> None:
    err = m.validate(req)
    assert (err[0] if err else None) == code


def test_every_op_has_a_schema_and_error_codes_are_unique() -> None:
    assert set(m.OPS) == {"hello", "config", "run", "status", "stop", "exit", "ping"}
    assert len(set(m.ERROR_NAMES)) == len(m.ERROR_NAMES) == 9


def test_error_reply_echoes_seq() -> None:
    r = m.error_reply(7, 0xB007, m.E_BAD_SHAPE, "k must be 16", "run")
    assert r == {"op": "error", "seq": 7, "boot": 0xB007, "code": 6, "msg": "k must be 16", "req": "run"}
