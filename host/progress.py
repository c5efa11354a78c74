"""A run's accounting and what it tells a person: device rows by kind, the result, progress lines, link trouble."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .reservoir import Reservoir

Array = np.ndarray
LINK_KEYS = {"retries": "resends", "timeouts": "timeouts", "reconnects": "reconnects",
             "repl_revivals": "REPL revivals", "device_resets": "device resets"}
"""Link trouble counted into the metrics (metrics key -> what it is called in messages)."""


def link_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {LINK_KEYS[k]}" for k, n in counts.items() if n)


@dataclass
class Counters:
    """Device rows by kind, device time, and link trouble seen (cumulative over the run)."""

    calibration: int = 0
    train: int = 0
    eval: int = 0
    device_seconds: float = 0.0
    link: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.calibration + self.train + self.eval


@dataclass
class Result:
    """What a run returns: the best-validation iterate, its test accuracy (regression: NMSE), the device rows
    and the history."""

    best_step: int
    best_val_acc: float | None
    """Validation accuracy at the best-validation step (None for regression: see ``best_val_nmse``)."""
    best_test_acc: float | None
    """Test accuracy at the best-validation step (None if the test set was never evaluated, or regression)."""
    final_val_acc: float | None
    queries: int
    """Every device row: calibration + training + evaluation."""
    calibration_queries: int
    training_queries: int
    eval_queries: int
    device_seconds: float
    history: list[dict[str, Any]]
    best_params: dict[str, Array]
    run_dir: str | None = None
    metric: str = "acc"
    """What selects and reports: ``acc`` (classification, higher is better) or ``nmse`` (regression, lower)."""
    best_val_nmse: float | None = None
    best_test_nmse: float | None = None

    @property
    def best_test(self) -> float | None:
        """The test figure at the best-validation step: accuracy, or NMSE for regression."""
        return self.best_test_nmse if self.metric == "nmse" else self.best_test_acc

    @property
    def best_val(self) -> float | None:
        return self.best_val_nmse if self.metric == "nmse" else self.best_val_acc


def accuracy(logits: Array, labels: Array) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def nmse(pred: Array, target: Array) -> float:
    """Normalised mean-squared error, MSE / var(target), averaged over targets (the evaluated set's variance)."""
    t = target.reshape(len(target), -1)
    p = pred.reshape(t.shape)
    return float(np.mean(np.mean((p - t) ** 2, axis=0) / np.maximum(t.var(axis=0), 1e-300)))


def scores(out: Array, target: Array, loss: str) -> dict[str, float]:
    """``{"acc": ...}`` for class logits (``loss`` ``"ce"``), ``{"nmse": ..., "r2": ...}`` for regression
    (R² = 1 - NMSE, both on the evaluated set)."""
    if loss == "mse":
        e = nmse(out, target)
        return {"nmse": e, "r2": 1.0 - e}
    return {"acc": accuracy(out, target)}


def right_per_sample(device: Array, twin: Array, labels: Array, loss: str) -> tuple[Array, Array]:
    """Per sample, whether the device's and the twin's outputs are right: the class, or (regression, ``loss``
    ``"mse"``) a squared error at most the median of both sets of errors together (equal error distributions
    give equal rates; a twin more accurate than the device shows as a gap, as in classification)."""
    if loss != "mse":
        return np.argmax(device, axis=1) == labels, np.argmax(twin, axis=1) == labels
    err_d = ((device - labels) ** 2).mean(axis=1)
    err_t = ((twin - labels) ** 2).mean(axis=1)
    cut = float(np.median(np.concatenate([err_d, err_t])))
    return err_d <= cut, err_t <= cut


def better(metric: str, new: float, old: float | None) -> bool:
    """Whether ``new`` beats ``old`` (None: nothing yet) on ``metric`` (``acc`` higher, ``nmse`` lower)."""
    return old is None or (new < old if metric == "nmse" else new > old)


def crossing(history: Sequence[dict[str, Any]], threshold: float, key: str = "val_acc") -> int | None:
    """All device rows (``queries``) spent when ``key`` first reached ``threshold`` on two consecutive
    evaluations: the rows at the first of the two. None if it never did. This is the crossing Q is taken on
    (README: Q = these rows / backprop's rows for the same threshold). For an NMSE key (``val_nmse``),
    reaching means falling to ``threshold`` or below."""
    evals = [r for r in history if r.get(key) is not None]
    lower = key.endswith("nmse")
    for a, b in zip(evals, evals[1:]):
        if all((r[key] <= threshold) if lower else (r[key] >= threshold) for r in (a, b)):
            return int(a["queries"])
    return None


def link_counters(reservoir: Reservoir) -> dict[str, int]:
    link = getattr(reservoir, "link", None)
    counts = link.counters() if link is not None and hasattr(link, "counters") else {}
    counts["device_resets"] = getattr(reservoir, "device_resets", 0)
    return {k: int(counts.get(k, 0)) for k in LINK_KEYS}


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def progress_line(rec: dict[str, Any]) -> str:
    """One line for a metrics record: step, loss, accuracy, all device rows (by kind), device time."""
    loss = "   -  " if rec["loss"] is None else format(rec["loss"], ".4f")
    m = "nmse" if any(rec.get(f"{p}_nmse") is not None for p in ("val", "test", "twin_val")) else "acc"

    def fig(v: float) -> str:
        return f"NMSE {v:.4f}" if m == "nmse" else f"{100 * v:5.1f}%"

    if rec.get(f"val_{m}") is not None:
        acc = f"val {fig(rec[f'val_{m}'])}" + (f" (R² {rec['val_r2']:.3f})" if m == "nmse" else "")
    elif rec.get(f"test_{m}") is not None:
        acc = f"test {fig(rec[f'test_{m}'])}" + (f" (R² {rec['test_r2']:.3f})" if m == "nmse" else "") + \
            f" (best-validation step {rec.get('test_step')})"
    else:
        acc = "val   (twin only)"
    if rec.get(f"twin_val_{m}") is not None:
        acc += f"  twin val {fig(rec[f'twin_val_{m}'])}"
    if rec.get("phase"):
        acc += f"  [{rec['phase']}{', fallback' if rec.get('fallback') else ''}]"
    link = link_text({k: rec.get(k, 0) for k in LINK_KEYS})
    return (
        f"step {rec['step']:5d}  loss {loss}  {acc}  queries {rec['queries']:,} "
        f"(cal {rec['calibration_queries']:,}, train {rec['training_queries']:,}, eval {rec['eval_queries']:,})  "
        f"device {rec['device_seconds']:.1f} s" + (f"  link: {link}" if link else "")
    )


PROGRESS_EVERY = 5.0
"""Seconds between time-based progress lines (besides the line at every evaluation)."""


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressClock:
    """When to say how far a run is: :meth:`tick` returns a line at most every ``every`` seconds, with the
    elapsed time and the time left (seconds per step so far in this session, evaluations and checkpoints
    included, times the steps left)."""

    def __init__(self, every: float | None = None) -> None:
        self.every = PROGRESS_EVERY if every is None else every
        self.start(0, 0)

    def start(self, target: int, step: int) -> None:
        """A session begins (``run()``): it ends at step ``target``; steps are timed from :meth:`loop`."""
        self.t0 = self.last = time.monotonic()
        self.target, self.step0, self.t_loop = target, step, 0.0

    def loop(self, step: int) -> None:
        self.step0, self.t_loop = step, time.monotonic()

    def tick(self, step: int, phase: str) -> str | None:
        now = time.monotonic()
        if now - self.last < self.every:
            return None
        self.last = now
        done = step - self.step0 if self.t_loop else 0
        return eta_line(step, self.target, phase, now - self.t0, done, now - self.t_loop)


def eta_line(step: int, target: int, phase: str, elapsed: float, steps_done: int, loop_seconds: float) -> str:
    """``step 12/300 (training): 0:25 elapsed, about 9:40 left``."""
    left = "estimating time left" if steps_done <= 0 else \
        f"about {_clock(loop_seconds / steps_done * max(target - step, 0))} left"
    return f"step {step}/{target} ({phase}): {_clock(elapsed)} elapsed, {left}"
