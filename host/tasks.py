"""Offline tasks: a train/validation/test split of inputs and integer labels, plus a description.

* ``digits`` — the 8x8 handwritten digits shipped with pgt (``pgt/data/digits.npz``, 1797 images; provenance
  in ``data/README.md``), pixels scaled to [0, 1], 64 inputs.
* ``digits-seq`` — the same images as sequences of 8 row tokens of 8 pixels (for the transformer).
* ``majority`` — synthetic: sequences of 12 tokens over a vocabulary of 6; the label is the token among 0..3
  that occurs most often (ties to the smaller one), tokens 4 and 5 are distractors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
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
    """A shuffled split fixed by ``seed`` (the same for every run, independent of the run seed)."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test, n_val = int(round(test * len(y))), int(round(val * len(y)))
    te, va, tr = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return Task(name, x[tr], y[tr], x[va], y[va], x[te], y[te], info | {"name": name})


@lru_cache(maxsize=1)
def digits() -> tuple[Array, Array]:
    """The shipped digits: pixels (1797, 64) scaled to [0, 1] (read-only) and labels (1797,)."""
    with np.load(Path(__file__).parent / "data" / "digits.npz") as d:
        x, y = d["images"], d["labels"]
    x = x.astype(np.float64) / 16.0
    x.setflags(write=False)
    return x, y.astype(np.int64)


def _digits_task() -> Task:
    x, y = digits()
    return _split("digits", x, y, {"kind": "vector", "n_in": 64, "n_classes": 10})


def _digits_seq_task() -> Task:
    x, y = digits()
    return _split("digits-seq", x.reshape(-1, 8, 8), y,
                  {"kind": "sequence", "seq_len": 8, "token_dim": 8, "n_classes": 10})


def _majority_task() -> Task:
    rng = np.random.default_rng(12345)
    n, t, vocab = 3000, 12, 6
    x = rng.integers(0, vocab, size=(n, t))
    counts = np.stack([(x == c).sum(axis=1) for c in range(4)], axis=1)
    y = np.argmax(counts, axis=1)
    return _split("majority", x, y, {"kind": "sequence", "seq_len": t, "vocab": vocab, "n_classes": 4})


@dataclass(frozen=True)
class TaskSpec:
    load: Callable[[], Task]
    model: str
    """The model that fits the task's inputs: ``mlp`` (vectors) or ``transformer`` (sequences)."""


TASKS: dict[str, TaskSpec] = {
    "digits": TaskSpec(_digits_task, "mlp"),
    "digits-seq": TaskSpec(_digits_seq_task, "transformer"),
    "majority": TaskSpec(_majority_task, "transformer"),
}
"""The task registry: name -> loader and default model."""


def default_model(name: str) -> str:
    """The model a task uses unless told otherwise (``mlp`` for an unknown name: its check comes later)."""
    return TASKS[name].model if name in TASKS else "mlp"


def load_task(name: str) -> Task:
    """Load a task by name (see :data:`TASKS`)."""
    try:
        spec = TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r} (choose from {', '.join(TASKS)})") from None
    return spec.load()
