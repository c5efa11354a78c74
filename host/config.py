"""What defines a training run (:class:`TrainConfig`) and its one check before any device is touched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UserError
from .estimators import check_options
from .optim import make_optimizer, make_schedule
from .tasks import TASKS, Task, load_task


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in ``config.json`` and in every checkpoint)."""

    task: str = "digits"
    model: str = "mlp"
    estimator: str = "surrogate"
    steps: int = 300
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    """None: chosen at calibration (``lr_rel`` times the RMS of the initial weights for Adam)."""
    lr_rel: float | None = None
    """None: 0.1 for the low-variance estimators (backprop, surrogate), 0.03 for the perturbative ones."""
    schedule: str = "constant"
    clip: float | None = None
    eval_every: int = 20
    val_size: int | None = 64
    """Validation samples per evaluation: a fixed subsample of the validation set (None: all of it)."""
    checkpoint_every: int = 50
    seed: int = 0
    probe: int = 256
    model_options: dict[str, Any] = field(default_factory=dict)
    estimator_options: dict[str, Any] = field(default_factory=dict)
    # -- your own data (pgt.datasets): set, it replaces ``task`` (which then names the run) --
    data: str | None = None
    """A data file (``.npz``, ``.csv``, IDX files joined by commas); None: the built-in ``task``."""
    label: str | None = None
    """CSV: the label/target column (None: the last one)."""
    loss: str | None = None
    """``ce`` (classification) or ``mse`` (regression); None: from the labels (integers or text: ce; floats: mse)."""
    scale: str = "global"
    """Input scaling from the training split: ``global``, ``feature`` or ``none`` (see :mod:`pgt.datasets`)."""


def _positive_finite(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a finite number > 0, got {value!r}")


def _load(cfg: TrainConfig) -> Task:
    """The run's data: the file ``cfg.data`` or the built-in ``cfg.task``, checked (one-line UserError)."""
    if cfg.data is not None:
        from .datasets import load_data

        if not isinstance(cfg.data, str) or not cfg.data:
            raise UserError(f"data must be a file name, got {cfg.data!r}")
        return load_data(cfg.data, cfg.label, cfg.loss, cfg.scale)
    if cfg.task not in TASKS:
        raise UserError(f"unknown task {cfg.task!r} (choose from {', '.join(TASKS)})")
    for name, value, default in (("label", cfg.label, None), ("scale", cfg.scale, "global")):
        if value != default:
            raise UserError(f"{name} applies to your own data (data=FILE), not to the built-in task {cfg.task!r}")
    task = load_task(cfg.task)
    if cfg.loss is not None and cfg.loss != task.info["loss"]:
        kind = "regression (mse)" if task.info["loss"] == "mse" else "classification (ce)"
        raise UserError(f"task {cfg.task!r} is {kind}; loss {cfg.loss!r} does not fit it")
    return task


def check_config(cfg: TrainConfig, task: Task | None = None) -> Task:
    """Validate every field of ``cfg`` without touching a device; returns the task (``task`` given: that one,
    e.g. from :meth:`Task.from_arrays`, instead of ``cfg.task``/``cfg.data``). UserError on the first problem,
    in one line."""
    task = task or _load(cfg)
    if cfg.model not in ("mlp", "transformer"):
        raise UserError(f"unknown model {cfg.model!r} (choose mlp or transformer)")
    want = "vector" if cfg.model == "mlp" else "sequence"
    if task.info["kind"] != want:
        raise UserError(f"task {task.name!r} is {'a sequence' if want == 'vector' else 'not a sequence'} task; "
                        f"use --model {'transformer' if want == 'vector' else 'mlp'}")
    check_options(cfg.estimator, cfg.estimator_options)
    n_train = len(task.y_train)
    for name, value, low in (("steps", cfg.steps, 0), ("seed", cfg.seed, 0), ("eval_every", cfg.eval_every, 1),
                             ("checkpoint_every", cfg.checkpoint_every, 1), ("probe", cfg.probe, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or not 1 <= cfg.batch_size <= n_train:
        raise UserError(f"batch_size must be between 1 and {n_train} (the {task.name} training split), "
                        f"got {cfg.batch_size!r}")
    if cfg.val_size is not None and (not isinstance(cfg.val_size, int) or cfg.val_size < 1):
        raise UserError(f"val_size must be an integer >= 1 or None (the whole validation set), got {cfg.val_size!r}")
    _positive_finite("lr", cfg.lr)
    _positive_finite("lr_rel", cfg.lr_rel)
    _positive_finite("clip", cfg.clip)
    make_optimizer(cfg.optimizer, make_schedule(cfg.schedule, 1.0, max(cfg.steps, 1)), cfg.clip)  # the names
    return task
