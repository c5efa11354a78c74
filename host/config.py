"""What defines a training run (:class:`TrainConfig`), each field's constraints declared once, and one check.

:data:`CONSTRAINTS` declares every field's type, bounds or choices (scikit-learn's ``_parameter_constraints``
idea). :func:`validate` checks a config against it (the constructor calls it), :func:`check_config` adds what
needs the task (and returns it), :func:`check_field` serves a sweep's single values, and :meth:`Field.argtype`
turns a declaration into an argparse ``type`` so ``pgt train``'s flag errors come from the same place.
:func:`model_memory` bounds every size: a model that would need more than :data:`MAX_MEMORY` is refused with
the memory it would take, before anything is allocated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError
from .estimators import ESTIMATORS, check_options
from .fields import Field, short
from .physical import SLOTS
from .tasks import TASKS, Task, load_task

MAX_MEMORY = 4 << 30
"""Bytes a model may take in training (its parameters, gradients, optimizer state, copies, activations)."""
COPIES = 6
"""Arrays of a parameter's size that training holds: the live one, its gradient, two Adam moments, the best
iterate and a checkpoint copy."""
EVAL_BATCH = 512
DEFAULT_BOARD = (2, 3)
"""Drives and taps of the default board (rp2), used to size a model before its device is open."""


def _optimizers() -> Sequence[str]:
    return ("sgd", "momentum", "adam")


def _estimators() -> Sequence[str]:
    return tuple(ESTIMATORS)


CONSTRAINTS: dict[str, Field] = {
    "task": Field("str", choices=lambda: (*TASKS, "data")),
    "model": Field("str", choices=lambda: ("mlp", "transformer")),
    "estimator": Field("str", choices=_estimators),
    "steps": Field("int", 0, 10_000_000),
    "batch_size": Field("int", 1, 65_536),
    "optimizer": Field("str", choices=_optimizers),
    "lr": Field("float", 0, optional=True, none_text="chosen at calibration"),
    "lr_rel": Field("float", 0, optional=True, none_text="0.1 for backprop, surrogate, twin; 0.03 for node, param"),
    "schedule": Field("str", choices=lambda: ("constant", "cosine")),
    "clip": Field("float", 0, optional=True, none_text="no clipping"),
    "eval_every": Field("int", 1, 10_000_000),
    "val_size": Field("int", 1, 10_000_000, optional=True, none_text="the whole validation set"),
    "checkpoint_every": Field("int", 1, 10_000_000),
    "seed": Field("int", 0, 2**32 - 1),
    "probe": Field("int", 2, 65_536),
    "settle_us": Field("int", 0, 1_000_000, optional=True, none_text="the board's"),
    "model_options": Field("dict"),
    "estimator_options": Field("dict"),
    "data": Field("str", optional=True, none_text="the built-in task"),
    "label": Field("str", optional=True, none_text="the last column"),
    "loss": Field("str", choices=lambda: ("ce", "mse"), optional=True, none_text="from the labels"),
    "scale": Field("str", choices=lambda: ("global", "feature", "none")),
}
"""Every :class:`TrainConfig` field's declaration (a test checks that none is missing)."""

MODEL_OPTIONS: dict[str, Field] = {
    "hidden": Field("int", 1),  # each width (the model's memory is the bound: check_memory)
    "d_model": Field("int", 1),
    "heads": Field("int", 1, 1024),
    "slots": SLOTS,
}
"""``model_options`` keys: mlp takes ``hidden`` (a list of widths) and ``slots``; the transformer ``d_model``,
``heads`` and ``slots``."""
MODEL_KEYS = {"mlp": ("hidden", "slots"), "transformer": ("d_model", "heads", "slots")}


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in ``config.json`` and in every checkpoint); checked on
    construction against :data:`CONSTRAINTS`."""

    task: str = "digits"
    model: str = "mlp"
    estimator: str = "twin"
    steps: int = 300
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    """None: chosen at calibration (``lr_rel`` times the RMS of the initial weights for Adam)."""
    lr_rel: float | None = None
    """None: the estimator's own ``lr_rel`` (0.1 for backprop, surrogate and twin, 0.03 for node and param)."""
    schedule: str = "constant"
    clip: float | None = None
    eval_every: int = 20
    val_size: int | None = 64
    """Validation samples per evaluation: a fixed subsample of the validation set (None: all of it)."""
    checkpoint_every: int = 50
    seed: int = 0
    probe: int = 256
    settle_us: int | None = None
    """None: the board's settle time (its board.json's, e.g. measured by ``pgt selftest --write``, else the
    firmware's default); refused below the board's ``settle_min_us`` when the device opens."""
    model_options: dict[str, Any] = field(default_factory=dict)
    estimator_options: dict[str, Any] = field(default_factory=dict)
    # -- your own data (pgt.datasets): with ``task="data"`` --
    data: str | None = None
    """A data file (``.npz``, ``.csv``, IDX files joined by commas); None: the built-in ``task``."""
    label: str | None = None
    """CSV: the label/target column (None: the last one)."""
    loss: str | None = None
    """``ce`` (classification) or ``mse`` (regression); None: from the labels (integers or text: ce; floats: mse)."""
    scale: str = "global"
    """Input scaling from the training split: ``global``, ``feature`` or ``none`` (see :mod:`pgt.datasets`)."""

    def __post_init__(self) -> None:
        validate(self)


def check_field(name: str, value: Any) -> Any:
    """One field's value checked against its declaration (a sweep's base and grid values); returns it
    converted. UserError for an unknown field or a bad value."""
    if name not in CONSTRAINTS:
        raise UserError(f"unknown config field {name!r} (fields: {', '.join(CONSTRAINTS)})")
    value = CONSTRAINTS[name].check(name, value)
    return _model_options(value) if name == "model_options" else value


def _model_options(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key, value in options.items():
        if key not in MODEL_OPTIONS:
            raise UserError(f"unknown model option {key!r} (mlp: hidden, slots; transformer: d_model, heads, slots)")
        if key == "hidden":
            if not isinstance(value, (list, tuple)):
                raise UserError(f"hidden must be a list of widths, got {short(value)}")
            out[key] = tuple(MODEL_OPTIONS[key].check("hidden width", h) for h in value)
        else:
            MODEL_OPTIONS[key].check(key, value)
    return out


def validate(cfg: TrainConfig) -> None:
    """Check every field of ``cfg`` against :data:`CONSTRAINTS` (types, bounds, choices, model options) and
    convert in place (ints to floats, widths to tuples). UserError on the first problem, in one line."""
    for f in dataclasses.fields(cfg):
        if f.name not in CONSTRAINTS:
            raise TypeError(f"TrainConfig.{f.name} has no declaration in CONSTRAINTS")
        setattr(cfg, f.name, check_field(f.name, getattr(cfg, f.name)))
    wrong = set(cfg.model_options) - set(MODEL_KEYS[cfg.model])
    if wrong:
        raise UserError(f"the {cfg.model} takes model options {', '.join(MODEL_KEYS[cfg.model])}, "
                        f"not {', '.join(sorted(wrong))}")
    d_model, heads = cfg.model_options.get("d_model", 32), cfg.model_options.get("heads", 4)
    if cfg.model == "transformer" and d_model % heads:
        raise UserError(f"d_model must be a multiple of heads, got {d_model} and {heads}")


def model_parameters(cfg: TrainConfig, info: dict[str, Any], width_in: int, width_out: int) -> tuple[int, int]:
    """(parameters, widest activation per sample) of ``cfg``'s model for a task described by ``info``, with a
    ring layer ``width_in`` drives / ``width_out`` readings wide; plain integer arithmetic (nothing allocated)."""
    classes = int(info.get("n_targets", 1) if info.get("loss") == "mse" else info.get("n_classes", 10))
    if cfg.model == "mlp":
        widths = [int(info.get("n_in", 64)), width_in, width_out, *cfg.model_options.get("hidden", ()), classes]
        dense = [(a, b) for a, b in zip(widths, widths[1:]) if (a, b) != (width_in, width_out)]
        return sum(a * b + b for a, b in dense), sum(widths)
    d = int(cfg.model_options.get("d_model", 32))
    tokens = int(info.get("seq_len", 1))
    embed = int(info.get("vocab") or info.get("token_dim") or 1)
    params = embed * d + d + 4 * (d * d + d) + 6 * d + (d + 1) * width_in + (width_out + 1) * d + (d + 1) * classes
    return params, tokens * (6 * d + width_in + width_out) + tokens * tokens * int(cfg.model_options.get("heads", 4))


def model_memory(cfg: TrainConfig, info: dict[str, Any], k: int, m: int) -> int:
    """Bytes training ``cfg``'s model takes on a ``k``-drive, ``m``-tap device (see :data:`COPIES`)."""
    from .physical import default_slots

    slots = int(cfg.model_options.get("slots") or default_slots(k))
    params, activations = model_parameters(cfg, info, slots * k, slots * m)
    return 8 * (COPIES * params + 4 * max(cfg.batch_size, EVAL_BATCH) * activations)


def check_memory(cfg: TrainConfig, info: dict[str, Any], k: int, m: int, where: str) -> None:
    """UserError if the model would need more than :data:`MAX_MEMORY`, saying how much it would take."""
    need = model_memory(cfg, info, k, m)
    if need > MAX_MEMORY:
        sizes = ", ".join(f"{key} {','.join(map(str, v)) if isinstance(v, tuple) else v}"[:60]
                          for key, v in cfg.model_options.items() if key != "slots")
        raise UserError(f"the {cfg.model} ({sizes or 'defaults'}) would need about {_bytes(need)} of memory to "
                        f"train {where}; pgt allows up to {_bytes(MAX_MEMORY)}: use smaller widths")


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _load(cfg: TrainConfig) -> Task:
    """The run's data: the file ``cfg.data`` (``task`` then is ``"data"``) or the built-in ``cfg.task``,
    checked (one-line UserError)."""
    if cfg.data is not None or cfg.task == "data":
        from .datasets import load_data

        if cfg.data is None or cfg.task != "data":
            raise UserError("your own data goes with task='data' and data=FILE (task and data are alternatives)")
        return load_data(cfg.data, cfg.label, cfg.loss, cfg.scale)
    for name, value, default in (("label", cfg.label, None), ("scale", cfg.scale, "global")):
        if value != default:
            raise UserError(f"{name} applies to your own data (data=FILE), not to the built-in task {cfg.task!r}")
    task = load_task(cfg.task)
    if cfg.loss is not None and cfg.loss != task.info["loss"]:
        kind = "regression (mse)" if task.info["loss"] == "mse" else "classification (ce)"
        raise UserError(f"task {cfg.task!r} is {kind}; loss {cfg.loss!r} does not fit it")
    return task


def check_config(cfg: TrainConfig, task: Task | None = None) -> Task:
    """Validate ``cfg`` in full without touching a device (fields, the task's kind and size, the optimizer, the
    estimator's options, the model's memory on the default board); returns the task (``task`` given: that one,
    e.g. from :meth:`Task.from_arrays`, instead of ``cfg.task``/``cfg.data``). UserError in one line."""
    validate(cfg)
    task = task or _load(cfg)
    want = "vector" if cfg.model == "mlp" else "sequence"
    if task.info["kind"] != want:
        raise UserError(f"task {task.name!r} is {'a sequence' if want == 'vector' else 'not a sequence'} task; "
                        f"use --model {'transformer' if want == 'vector' else 'mlp'}")
    check_options(cfg.estimator, cfg.estimator_options)
    n_train = len(task.y_train)
    if cfg.batch_size > n_train:
        raise UserError(f"batch_size must be between 1 and {n_train} (the {task.name} training split), "
                        f"got {cfg.batch_size!r}")
    check_memory(cfg, task.info, *DEFAULT_BOARD, where="on the default 2-drive, 3-tap board")
    return task
