"""Checkpoints as JSON + ``.npz``: plain data, nothing pickled.

A state is a tree of dicts (string keys), lists, JSON scalars and numpy arrays. :func:`save` writes the arrays
to ``checkpoint-<step>.npz`` and everything else to ``checkpoint.json``, which names its array file; both are
written atomically, the JSON last, so a crash leaves the previous checkpoint readable. Older array files are
removed after the JSON is in place. :func:`load` returns the tree. Numpy generators are stored as their bit
generator's state (:func:`rng_state`, :func:`set_rng_state`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

CHECKPOINT = "checkpoint.json"
FORMAT = 2
_ARRAY = "__array__"


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A generator's complete state as plain data."""
    return dict(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def encode(tree: Any, arrays: dict[str, np.ndarray], path: str = "") -> Any:
    """``tree`` with every array moved into ``arrays`` (keyed by its path) and numpy scalars made plain."""
    if isinstance(tree, np.ndarray):
        arrays[path] = tree
        return {_ARRAY: path}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if not isinstance(k, str) or k == _ARRAY:
                raise TypeError(f"checkpoint keys must be strings, got {k!r} at {path or '/'}")
            out[k] = encode(v, arrays, f"{path}/{k}")
        return out
    if isinstance(tree, (list, tuple)):
        return [encode(v, arrays, f"{path}/{i}") for i, v in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot checkpoint a {type(tree).__name__} at {path or '/'}")


def decode(tree: Any, arrays: Any) -> Any:
    """The inverse of :func:`encode` (lists stay lists)."""
    if isinstance(tree, dict):
        if set(tree) == {_ARRAY}:
            return np.array(arrays[tree[_ARRAY]])
        return {k: decode(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    return tree


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(run_dir: Path, state: dict[str, Any], step: int) -> Path:
    """Write ``state`` as ``checkpoint.json`` + ``checkpoint-<step>.npz`` in ``run_dir``; returns the JSON path."""
    import io

    arrays: dict[str, np.ndarray] = {}
    doc = {"format": FORMAT, "arrays": f"checkpoint-{step:08d}.npz", "state": encode(state, arrays)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write(run_dir / doc["arrays"], buf.getvalue())
    path = run_dir / CHECKPOINT
    atomic_write(path, (json.dumps(doc) + "\n").encode())
    for old in run_dir.glob("checkpoint-*.npz"):
        if old.name != doc["arrays"]:
            old.unlink(missing_ok=True)
    return path


def load(run_dir: Path) -> dict[str, Any]:
    """Read the checkpoint in ``run_dir``; UserError if there is none or it cannot be read."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        if (run_dir / "checkpoint.pkl").exists():
            raise UserError(f"{run_dir} holds a pickled checkpoint from an older pgt, which this one does not read")
        raise UserError(f"no checkpoint in {run_dir}")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, this pgt reads {FORMAT}")
        with np.load(run_dir / doc["arrays"], allow_pickle=False) as arrays:
            return dict(decode(doc["state"], arrays))
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc}") from exc
