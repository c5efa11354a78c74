"""A training run as data: the trainer's checkpoint state, writing it, restoring it, resuming a run from its
run directory, and the run's :class:`~pgt.progress.Result`.

Functions of a run (:class:`~pgt.run_setup.RunSetup`, the base of :class:`~pgt.trainer.Trainer`; the
trainer's methods ``state``, ``load_state``, ``save_checkpoint``, ``resume`` and ``result`` call them); the
checks ``--resume`` makes are in :mod:`pgt.resume`.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import checkpoint
from .device import reopen
from .errors import UserError
from .progress import Counters, Result
from .reservoir import Reservoir
from .run_setup import RunSetup

Run = TypeVar("Run", bound=RunSetup)


def resume_command(run_dir: Path | str) -> str:
    return f"pgt train --resume {shlex.quote(str(run_dir))}"


def state(tr: RunSetup) -> dict[str, Any]:
    """The whole run as plain data and arrays, each component's own ``state()``."""
    device = getattr(tr.reservoir, "state", None)
    return {
        "config": dataclasses.asdict(tr.config),
        "step": tr.step,
        "calibrated": tr.calibrated,
        "lr": tr.lr,
        "rngs": {"batch": checkpoint.rng_state(tr.batch_rng), "cal": checkpoint.rng_state(tr.cal_rng)},
        "counters": dataclasses.asdict(tr.counters),
        "history": tr.history,
        "best": tr.best,
        "candidates": tr.candidates,
        "tested_step": tr.tested_step,
        "loss": [tr._loss_sum, tr._loss_n],
        "model": tr.model.state(),
        "physical": tr.physical.state(),
        "estimator": tr.estimator.state(),
        "opt": tr.opt_state,
        "task": tr.task.info,
        "device": {"info": dict(getattr(tr.reservoir, "info", {})),
                   "state": device() if callable(device) else None},
    }


def load_state(tr: RunSetup, state: dict[str, Any], device_changed: bool = False) -> None:
    """Restore :func:`state` on a trainer built from the same config. ``device_changed``: the device is not the
    one the state was measured on, so the readout calibration, the estimator and the device state are not
    restored (:meth:`~pgt.trainer.Trainer.remeasure_device` measures them anew)."""
    tr.step, tr.calibrated, tr.lr = state["step"], state["calibrated"], state["lr"]
    checkpoint.set_rng_state(tr.batch_rng, state["rngs"]["batch"])
    checkpoint.set_rng_state(tr.cal_rng, state["rngs"]["cal"])
    tr.counters = Counters(**state["counters"])
    tr.history, tr.best, tr.tested_step = state["history"], state["best"], state["tested_step"]
    tr.candidates = state["candidates"]
    tr._loss_sum, tr._loss_n = state["loss"]
    try:
        tr.model.load_state(state["model"])
    except ValueError as exc:
        raise UserError(f"{exc} (a different model or device shape)") from None
    tr.opt_state = state["opt"]
    if tr.calibrated:
        tr._make_optimizer()
    if device_changed:
        return
    tr.physical.load_state(state["physical"])
    tr.estimator.load_state(state["estimator"])
    device_state = state["device"]["state"]
    if device_state is not None and _same_simulator(state["device"]["info"], getattr(tr.reservoir, "info", {})):
        tr.reservoir.load_state(device_state)  # type: ignore[attr-defined]


def _same_simulator(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    keys = ("kind", "url", "seed", "level", "uid")
    return all(saved.get(k) == now.get(k) for k in keys)


def save(tr: RunSetup) -> Path:
    """Write ``checkpoint.json`` + ``checkpoint-<step>.npz`` atomically (:mod:`pgt.checkpoint`)."""
    if tr.run_dir is None:
        raise UserError("this trainer has no run directory")
    return checkpoint.save(tr.run_dir, state(tr), tr.step)


def stopped_note(tr: RunSetup, consistent: bool) -> str:
    """Write a checkpoint at the last completed step when the state allows; say how to resume."""
    if tr.run_dir is None:
        return f"stopped at step {tr.step} (no run directory, nothing saved)"
    if consistent and tr.calibrated:
        save(tr)
    try:
        at = checkpoint.load(tr.run_dir)["step"]
    except UserError:
        return f"stopped at step {tr.step} before the first checkpoint (nothing to resume)"
    return f"checkpoint at step {at} in {tr.run_dir}; resume with: {resume_command(tr.run_dir)}"


def resume(
    cls: type[Run], run_dir: str | Path, reservoir: Reservoir | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None, steps: int | None = None,
    device_changed: bool = False, log: Callable[[str], None] | None = None,
) -> Run:
    """A ``cls`` trainer continuing the run in ``run_dir``; see :meth:`pgt.trainer.Trainer.resume`."""
    from . import resume as checks

    run_dir = Path(run_dir)
    state, config = checks.load(run_dir, steps, log)
    saved = state["device"]["info"]
    if reservoir is None:
        reservoir = reopen(saved)
    note = checks.check_device(saved, dict(getattr(reservoir, "info", {}) or {}), device_changed)
    tr = cls(reservoir, config, on_eval=on_eval, log=log)
    load_state(tr, state, device_changed=note is not None)
    tr.run_dir = run_dir
    checks.write_files(run_dir, tr.history, tr.config_doc(), note)
    if note is not None and tr.calibrated:
        tr.log(f"device changed ({note}): recalibrating on it")
        tr.remeasure_device(note)
    return tr


def result(tr: RunSetup) -> Result:
    """The run's :class:`~pgt.progress.Result` from its history and its best iterate."""
    m = tr.metric
    vals = [r[f"val_{m}"] for r in tr.history if r.get(f"val_{m}") is not None]
    tests = [r[f"test_{m}"] for r in tr.history
             if r.get(f"test_{m}") is not None and r.get("test_step") == tr.best["step"]]
    c = tr.counters
    best_val, best_test = tr.best[f"val_{m}"], tests[-1] if tests else None
    return Result(
        best_step=tr.best["step"], best_val_acc=best_val if m == "acc" else None,
        best_test_acc=best_test if m == "acc" else None,
        final_val_acc=(vals[-1] if vals else 0.0) if m == "acc" else None,
        metric=m, best_val_nmse=best_val if m == "nmse" else None,
        best_test_nmse=best_test if m == "nmse" else None,
        queries=c.total, calibration_queries=c.calibration, training_queries=c.train, eval_queries=c.eval,
        device_seconds=c.device_seconds, history=list(tr.history), best_params=tr.best["params"] or {},
        run_dir=str(tr.run_dir) if tr.run_dir else None,
    )
