"""Offline tasks: a train/validation/test split of inputs and integer labels, plus a description.

* ``digits`` — scikit-learn's bundled 8x8 digits (1797 images), pixels scaled to [0, 1], 64 inputs.
* ``digits-seq`` — the same images as sequences of 8 row tokens of 8 pixels (for the transformer).
* ``majority`` — synthetic: sequences of 12 tokens over a vocabulary of 6; the label is the token among 0..3
  that occurs most often (ties to the smaller one), tokens 4 and 5 are distractors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UserError

Array = np.ndarray


@dataclass
class Task:
    name: str
    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    x_test: Array
    y_test: Array
    info: dict[str, Any] = field(default_factory=dict)


def _split(name: str, x: Array, y: Array, info: dict[str, Any], seed: int = 0,
           val: float = 0.1, test: float = 0.2) -> Task:
    """A stratified-by-shuffle split fixed by ``seed`` (the same for every run, independent of the run seed)."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test, n_val = int(round(test * len(y))), int(round(val * len(y)))
    te, va, tr = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Task(name, x[tr], y[tr], x[va], y[va], x[te], y[te], info | {"name": name})


def _digits() -> tuple[Array, Array]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float64) / 16.0, d.target.astype(np.int64)


def load_task(name: str) -> Task:
    """Load a task by name: ``digits``, ``digits-seq`` or ``majority``."""
    if name == "digits":
        x, y = _digits()
        return _split(name, x, y, {"kind": "vector", "n_in": 64, "n_classes": 10})
    if name == "digits-seq":
        x, y = _digits()
        return _split(name, x.reshape(-1, 8, 8), y,
                      {"kind": "sequence", "seq_len": 8, "token_dim": 8, "n_classes": 10})
    if name == "majority":
        rng = np.random.default_rng(12345)
        n, t, vocab = 3000, 12, 6
        x = rng.integers(0, vocab, size=(n, t))
        counts = np.stack([(x == c).sum(axis=1) for c in range(4)], axis=1)
        y = np.argmax(counts, axis=1)
        return _split(name, x, y, {"kind": "sequence", "seq_len": t, "vocab": vocab, "n_classes": 4})
    raise UserError(f"unknown task {name!r} (choose from {', '.join(TASKS)})")


TASKS = ("digits", "digits-seq", "majority")
