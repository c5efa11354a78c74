"""Checkpoints as JSON + ``.npz``: plain data, nothing pickled.

A state is a tree of dicts (string keys), lists, JSON scalars and numpy arrays. :func:`save` writes the arrays
to ``checkpoint-<step>-<tag>.npz`` and everything else to ``checkpoint.json``, which names its array file; both
are written atomically, the JSON last, and the checkpoint before it stays as ``checkpoint-previous.json`` (with
its array file), so a crash or a damaged file leaves a readable checkpoint. :func:`load` returns the tree, from
the previous checkpoint when the newest cannot be read. Numpy generators are stored as their bit
generator's state (:func:`rng_state`, :func:`set_rng_state`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

CHECKPOINT = "checkpoint.json"
PREVIOUS = "checkpoint-previous.json"
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
    """Write ``state`` as ``checkpoint.json`` + ``checkpoint-<step>-<tag>.npz`` in ``run_dir``, keeping the
    previous checkpoint (``checkpoint-previous.json`` and its arrays) until this one is complete; returns the
    JSON path."""
    import io
    import secrets

    arrays: dict[str, np.ndarray] = {}
    doc = {"format": FORMAT, "arrays": f"checkpoint-{step:08d}-{secrets.token_hex(3)}.npz",
           "state": encode(state, arrays)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    atomic_write(run_dir / doc["arrays"], buf.getvalue())
    path = run_dir / CHECKPOINT
    if _read(run_dir, path) is not None:  # (a damaged newest one is not kept: the previous stays)
        atomic_write(run_dir / PREVIOUS, path.read_bytes())
    atomic_write(path, (json.dumps(doc) + "\n").encode())
    keep = {doc["arrays"], _arrays_of(run_dir / PREVIOUS)}
    for old in run_dir.glob("checkpoint-*.npz"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return path


def _arrays_of(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["arrays"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read(run_dir: Path, path: Path) -> dict[str, Any] | None:
    """The state in checkpoint file ``path``, or None if it is missing or damaged in any way."""
    try:
        return _decode_file(run_dir, path)
    except (UserError, OSError):
        return None


def _decode_file(run_dir: Path, path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not a checkpoint document")
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, this pgt reads {FORMAT}")
        name = str(doc["arrays"])
        if Path(name).name != name:
            raise ValueError(f"array file {name!r} is outside the run directory")
        with np.load(run_dir / name, allow_pickle=False) as arrays:
            return dict(decode(doc["state"], arrays))
    except FileNotFoundError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror}: {Path(exc.filename or '').name}") from exc
    except Exception as exc:  # a truncated zip, a bad JSON, a damaged array: all say the same thing
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc)[:200]}") from exc


def load(run_dir: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Read the newest checkpoint in ``run_dir``; if it is damaged, the previous one (``log`` says so).
    UserError if there is none or none can be read."""
    path = run_dir / CHECKPOINT
    previous = run_dir / PREVIOUS
    if not path.exists() and not previous.exists():
        if (run_dir / "checkpoint.pkl").exists():
            raise UserError(f"{run_dir} holds a pickled checkpoint from an older pgt, which this one does not read")
        if not run_dir.is_dir():
            raise UserError(f"no checkpoint in {str(run_dir)[:200]}: no such directory")
        raise UserError(f"no checkpoint in {run_dir}")
    try:
        return _decode_file(run_dir, path)
    except UserError as exc:
        if not previous.exists():
            raise
        older = _read(run_dir, previous)
        if older is None:
            raise UserError(f"{exc}; the previous checkpoint cannot be read either") from None
        (log or _warn)(f"{exc}; using the previous checkpoint (step {older.get('step', '?')})")
        return older


def _warn(text: str) -> None:
    import sys

    print(f"warning: {text}", file=sys.stderr)
