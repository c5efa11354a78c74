"""Offline tasks: a train/validation/test split of inputs and targets, plus a description (``info``).

Classification tasks have integer labels 0..C-1 (``info["loss"] == "ce"``); regression tasks have float targets
``(n, t)``, standardised with the training split's statistics (``"mse"``; ``y_shift``/``y_scale`` map back).
``info["x_shift"]``/``info["x_scale"]`` say how raw inputs were scaled (``x = (raw - shift) * scale``), so a
model can take new raw inputs. Your own data: :func:`pgt.datasets.load_data` / :meth:`Task.from_arrays`.

* ``digits`` — the 8x8 handwritten digits shipped with pgt (``pgt/data/digits.npz``, 1797 images; provenance
  in ``data/README.md``), pixels scaled to [0, 1], 64 inputs.
* ``digits-seq`` — the same images as sequences of 8 row tokens of 8 pixels (for the transformer).
* ``majority`` — synthetic: sequences of 12 tokens over a vocabulary of 6; the label is the token among 0..3
  that occurs most often (ties to the smaller one), tokens 4 and 5 are distractors.
* ``narma10`` — regression: the textbook NARMA10 system (order 10, u ~ U[0, 0.5]); predict y(t+1) from a window
  of the last 20 inputs u(t-19..t).
* ``mackey_glass`` — regression: the Mackey-Glass series (tau = 17, RK4 with dt = 0.1, sampled every 6 time
  units); predict the next sample from a window of the last 8 samples.

The ring is quasi-static (it settles within a query), so a regression model's memory comes from its input
window, not from the device. The two time series are split in time (first 70 % train, 10 % validation, 20 % test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import Task, from_arrays
from .errors import UserError

Array = np.ndarray


def _split(name: str, x: Array, y: Array, info: dict[str, Any], seed: int = 0,
           val: float = 0.1, test: float = 0.2) -> Task:
    """A shuffled split fixed by ``seed`` (the same for every run, independent of the run seed)."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_test, n_val = int(round(test * len(y))), int(round(val * len(y)))
    te, va, tr = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    info = {"loss": "ce", "classes": list(range(info["n_classes"]))} | info | {"name": name}
    return Task(name, x[tr], y[tr], x[va], y[va], x[te], y[te], info)


@lru_cache(maxsize=1)
def digits() -> tuple[Array, Array]:
    """The shipped digits: pixels (1797, 64) scaled to [0, 1] (read-only) and labels (1797,)."""
    with np.load(Path(__file__).parent / "data" / "digits.npz") as d:
        x, y = d["images"], d["labels"]
    x = x.astype(np.float64) / 16.0
    x.setflags(write=False)
    return x, y.astype(np.int64)


_PIXELS = {"x_shift": [0.0], "x_scale": [1.0 / 16.0], "scale": "global"}
"""The digits' raw pixels are 0..16."""


def _digits_task() -> Task:
    x, y = digits()
    return _split("digits", x, y, {"kind": "vector", "n_in": 64, "n_classes": 10} | _PIXELS)


def _digits_seq_task() -> Task:
    x, y = digits()
    return _split("digits-seq", x.reshape(-1, 8, 8), y,
                  {"kind": "sequence", "seq_len": 8, "token_dim": 8, "n_classes": 10} | _PIXELS)


def _majority_task() -> Task:
    rng = np.random.default_rng(12345)
    n, t, vocab = 3000, 12, 6
    x = rng.integers(0, vocab, size=(n, t))
    counts = np.stack([(x == c).sum(axis=1) for c in range(4)], axis=1)
    y = np.argmax(counts, axis=1)
    return _split("majority", x, y, {"kind": "sequence", "seq_len": t, "vocab": vocab, "n_classes": 4})


@lru_cache(maxsize=4)
def narma10_series(n: int, seed: int = 0, washout: int = 200) -> tuple[Array, Array]:
    """Inputs u ~ U[0, 0.5] and the textbook NARMA10 output
    y(t+1) = 0.3 y(t) + 0.05 y(t) sum_{i=0..9} y(t-i) + 1.5 u(t-9) u(t) + 0.1 (after a washout)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 0.5, n + washout + 1)
    y = np.zeros_like(u)
    for t in range(9, len(u) - 1):
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * y[t - 9 : t + 1].sum() + 1.5 * u[t - 9] * u[t] + 0.1
    u, y = u[washout:], y[washout:]
    u.setflags(write=False)
    y.setflags(write=False)
    return u, y


@lru_cache(maxsize=4)
def mackey_glass_series(n: int, tau: float = 17.0, step: float = 6.0, dt: float = 0.1, seed: int = 0,
                        washout: int = 100) -> Array:
    """The Mackey-Glass series dx/dt = 0.2 x(t-tau) / (1 + x(t-tau)^10) - 0.1 x(t), integrated by RK4 (the
    delayed term interpolated at half steps), sampled every ``step`` time units after a washout."""
    lag, every = int(round(tau / dt)), int(round(step / dt))
    x = np.empty((n + washout) * every + lag + 1)
    x[: lag + 1] = 1.2 + 0.01 * np.random.default_rng(seed).standard_normal(lag + 1)

    def f(xt: float, xd: float) -> float:
        return 0.2 * xd / (1.0 + xd**10) - 0.1 * xt

    for i in range(lag, len(x) - 1):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dm = 0.5 * (d0 + d1)
        k1 = f(x[i], d0)
        k2 = f(x[i] + 0.5 * dt * k1, dm)
        k3 = f(x[i] + 0.5 * dt * k2, dm)
        k4 = f(x[i] + dt * k3, d1)
        x[i + 1] = x[i] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    out = x[lag + 1 :: every][washout : washout + n].copy()
    out.setflags(write=False)
    return out


def windows(u: Array, target: Array, width: int) -> tuple[Array, Array]:
    """Inputs ``(n, width)`` = u(t-width+1..t) and targets ``target(t)``, for every t with a full window."""
    x = np.lib.stride_tricks.sliding_window_view(u, width)
    return np.array(x), target[width - 1 :]


def _series_task(name: str, x: Array, y: Array) -> Task:
    """A time-series regression task split in time: 70 % train, 10 % validation, 20 % test."""
    n = len(y)
    a, b = int(0.7 * n), int(0.8 * n)
    return from_arrays(x[:a], y[:a], name=name, loss="mse", x_val=x[a:b], y_val=y[a:b], x_test=x[b:],
                       y_test=y[b:], what=name)


def _narma10_task() -> Task:
    u, y = narma10_series(4000)
    x, target = windows(u[:-1], y[1:], 20)  # window ending at u(t), target y(t+1)
    return _series_task("narma10", x, target)


def _mackey_glass_task() -> Task:
    s = mackey_glass_series(4000)
    x, target = windows(s[:-1], s[1:], 8)  # window ending at x(t), target the next sample
    return _series_task("mackey_glass", x, target)


@dataclass(frozen=True)
class TaskSpec:
    load: Callable[[], Task]
    model: str
    """The model that fits the task's inputs: ``mlp`` (vectors) or ``transformer`` (sequences)."""


TASKS: dict[str, TaskSpec] = {
    "digits": TaskSpec(_digits_task, "mlp"),
    "digits-seq": TaskSpec(_digits_seq_task, "transformer"),
    "majority": TaskSpec(_majority_task, "transformer"),
    "narma10": TaskSpec(_narma10_task, "mlp"),
    "mackey_glass": TaskSpec(_mackey_glass_task, "mlp"),
}
"""The task registry: name -> loader and default model."""


def default_model(name: str) -> str:
    """The model a task uses unless told otherwise (``mlp`` for an unknown name: its check comes later)."""
    return TASKS[name].model if name in TASKS else "mlp"


def n_outputs(info: dict[str, Any]) -> int:
    """Outputs a model needs for a task: its classes (classification) or its targets (regression)."""
    return int(info["n_targets"] if info.get("loss") == "mse" else info["n_classes"])


def load_task(name: str) -> Task:
    """Load a task by name (see :data:`TASKS`)."""
    try:
        spec = TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r} (choose from {', '.join(TASKS)})") from None
    return spec.load()
