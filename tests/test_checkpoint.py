"""Checkpoints: JSON + .npz round trips exactly, the newest two checkpoints stay (a damaged newest one falls back
to the previous), no pickle is ever read."""

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
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, state | {"step": step}, step)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n[:19] for n in names[:2]] == ["checkpoint-00000002", "checkpoint-00000003"]  # step 1's went
    assert names[2:] == ["checkpoint-previous.json", "checkpoint.json"]
    assert checkpoint.load(tmp_path)["step"] == 3
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
    next(tmp_path.glob("checkpoint-*.npz")).unlink()
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


@pytest.mark.parametrize("damage", ["truncate-npz", "empty-json", "delete-npz", "garbage-json"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path, damage: str) -> None:
    checkpoint.save(tmp_path, {"step": 1, "w": np.ones(3)}, 1)
    checkpoint.save(tmp_path, {"step": 2, "w": np.full(3, 2.0)}, 2)
    newest = tmp_path / json.loads((tmp_path / "checkpoint.json").read_text())["arrays"]
    if damage == "truncate-npz":
        newest.write_bytes(newest.read_bytes()[:40])
    elif damage == "delete-npz":
        newest.unlink()
    else:
        (tmp_path / "checkpoint.json").write_text("" if damage == "empty-json" else "{not json")
    said: list[str] = []
    state = checkpoint.load(tmp_path, log=said.append)
    assert state["step"] == 1 and state["w"].tolist() == [1.0, 1.0, 1.0]
    assert len(said) == 1 and "using the previous checkpoint (step 1)" in said[0]
    # The next save keeps the good previous checkpoint rather than the damaged newest one.
    checkpoint.save(tmp_path, {"step": 3, "w": np.zeros(3)}, 3)
    (tmp_path / "checkpoint.json").write_text("")
    assert checkpoint.load(tmp_path, log=said.append)["step"] == 1


def test_both_checkpoints_damaged_is_one_line(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, {"step": 1}, 1)
    checkpoint.save(tmp_path, {"step": 2}, 2)
    for p in tmp_path.glob("checkpoint*.json"):
        p.write_text("")
    with pytest.raises(UserError, match="cannot read checkpoint .* previous checkpoint cannot be read either"):
        checkpoint.load(tmp_path)
