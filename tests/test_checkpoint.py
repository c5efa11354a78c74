"""Checkpoints: JSON + .npz round trips exactly, only the newest array file stays, no pickle is ever read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pgt import checkpoint
from pgt.errors import UserError


def test_a_state_round_trips_exactly_and_old_array_files_go(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rng.standard_normal(5)
    state = {"a": np.arange(6.0).reshape(2, 3), "nested": {"list": [1, 2.5, None, np.float64(0.1), "x"],
             "c": np.array([1 + 2j])}, "flag": True, "rng": checkpoint.rng_state(rng), "opt": [None, {"t": 3}]}
    checkpoint.save(tmp_path, state, 1)
    checkpoint.save(tmp_path, state, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000002.npz", "checkpoint.json"]
    back = checkpoint.load(tmp_path)
    np.testing.assert_array_equal(back["a"], state["a"])
    np.testing.assert_array_equal(back["nested"]["c"], state["nested"]["c"])
    assert back["nested"]["list"] == [1, 2.5, None, 0.1, "x"] and back["flag"] is True
    assert back["opt"] == [None, {"t": 3}]
    other = np.random.default_rng(0)
    checkpoint.set_rng_state(other, back["rng"])
    assert other.standard_normal() == rng.standard_normal()


def test_unreadable_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no checkpoint"):
        checkpoint.load(tmp_path)
    (tmp_path / "checkpoint.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="pickled checkpoint from an older pgt"):
        checkpoint.load(tmp_path)
    checkpoint.save(tmp_path, {"x": np.zeros(2)}, 0)
    (tmp_path / "checkpoint-00000000.npz").unlink()
    with pytest.raises(UserError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path)
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps(doc | {"format": 1}))
    with pytest.raises(UserError, match="format 1"):
        checkpoint.load(tmp_path)


def test_objects_are_refused_rather_than_pickled(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        checkpoint.save(tmp_path, {"x": object()}, 0)
    np.savez(tmp_path / "checkpoint-00000000.npz", x=np.array([{"evil": 1}], dtype=object))
    (tmp_path / "checkpoint.json").write_text(json.dumps(
        {"format": checkpoint.FORMAT, "arrays": "checkpoint-00000000.npz", "state": {"x": {"__array__": "x"}}}))
    with pytest.raises(UserError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path)  # object arrays would need pickle: refused
