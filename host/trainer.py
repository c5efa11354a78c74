"""The training loop: any Reservoir, any estimator, every device row counted, exact resume.

``Trainer(reservoir, TrainConfig(...), out_dir=...)`` builds the task, the hybrid model and the estimator from
the config (:mod:`pgt.run_setup`); ``run()`` sets it up on the device (output normalisation from a probe
batch, device repeat noise, perturbation size, starting learning rate: :meth:`Trainer.setup`), writes a
checkpoint, then steps. Every ``eval_every`` steps it evaluates the unperturbed model on a fixed subsample of
the validation set (``val_size`` rows; the whole set if None), keeps the best iterates by validation accuracy
and appends one record to ``metrics.jsonl``; with an estimator that has a twin of the device, through the twin
as well (``twin_val_acc``, no device rows) and through the device only when the estimator asks for a check. At
the end the best candidates are measured again on the rest of the validation set (:mod:`pgt.selection`) and
the test set is evaluated once, on the chosen iterate (and on demand: :meth:`Trainer.test`). Evaluation
readings also feed the estimator (``estimator.observe``: surrogate and twin learn from them).

Every device row is counted once, by kind: ``calibration``, ``train`` (estimator steps) and ``eval``;
``queries`` is their sum. Checkpoints (JSON + ``.npz``, :mod:`pgt.checkpoint`) are written after calibration,
every ``checkpoint_every`` steps, at the end, on Ctrl-C (after the step in progress) and when the device is
lost (:mod:`pgt.run_state`); :meth:`Trainer.resume` rebuilds the run from its config and restores each
component's state (model, optimizer, estimator, physical layer, counters, generators and, on the in-process
simulator, the device), so a resumed simulator run continues bit-identically.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import run_dir as run_dirs
from . import run_state, selection
from .config import TrainConfig, check_config
from .device import default_device, open_device  # (open_device: re-exported)
from .errors import DeviceError, PgtError, UserError
from .estimators import ESTIMATORS
from .interrupts import TrainingInterrupted, deferred_interrupt
from .optim import apply_updates
from .physical import PhysicalLayer  # (re-exported)
from .progress import (
    LINK_KEYS,
    Counters,
    Result,
    better,
    crossing,
    log_to_stderr,
    progress_line,
    right_per_sample,
    scores,
)
from .reservoir import Reservoir
from .run_setup import RunSetup
from .tasks import TASKS, Task

Array = np.ndarray
METRICS = run_dirs.METRICS


class Trainer(RunSetup):
    """Train a hybrid model through ``reservoir`` as ``config`` says; see the module docstring."""

    # -- evaluation --------------------------------------------------------------------------------
    def predict(self, x: Array, batch: int = 512, twin: bool = False) -> Array | None:
        """Unperturbed forward through the device (counted as eval rows, shown to the estimator); logits.
        ``twin``: through the estimator's twin of the device instead (no device rows; None without a twin)."""
        out = []
        ph = self.physical
        for i in range(0, len(x), batch):
            a, pc = self.model.pre(x[i : i + batch])
            u, _ = ph.drive(a)
            if twin:
                z = self.estimator.twin_readings(u)
                if z is None:
                    return None
            else:
                y = self._device_call("eval", partial(ph.query, u))
                self.estimator.observe(u, y)
                z = ph.normalise(y)
            out.append(self.model.post(z, pc)[0])
        return np.concatenate(out)

    def _device_logits(self, x: Array) -> Array:
        logits = self.predict(x)
        assert logits is not None
        return logits

    def _scores_with(self, params: dict[str, Array] | None, x: Array, labels: Array) -> dict[str, float]:
        """Accuracy (regression: NMSE and R²) through the device with ``params`` in the model (the current ones
        if None), then back."""
        saved = {k: v.copy() for k, v in self.model.params.items()}
        try:
            for k, v in self.model.params.items():
                if params is not None:
                    v[...] = params[k]
            return scores(self._device_logits(x), labels, self.loss)
        finally:
            for k, v in self.model.params.items():
                v[...] = saved[k]

    def _record(self, **fields: Any) -> dict[str, Any]:
        c = self.counters
        rec = {
            "step": self.step,
            "loss": self._loss_sum / self._loss_n if self._loss_n else None,
            "val_acc": None,
            "test_acc": None,
            **fields,
            "queries": c.total,
            "calibration_queries": c.calibration,
            "training_queries": c.train,
            "eval_queries": c.eval,
            "device_seconds": round(c.device_seconds, 9),
            "lr": self.lr,
            "best_step": self.best["step"],
            f"best_val_{self.metric}": self.best[f"val_{self.metric}"],
            **{k: c.link.get(k, 0) for k in LINK_KEYS},
        } | self.estimator.diagnostics() | self._note
        self._note = {}
        self.history.append(rec)
        if self.run_dir is not None:
            with open(self.run_dir / METRICS, "ab") as f:
                f.write((json.dumps(rec) + "\n").encode())
        return rec

    def evaluate(self) -> dict[str, Any]:
        """Validation accuracy (regression: NMSE and R²) of the current iterate (on the fixed subsample);
        tracks the best iterates.

        With an estimator that has a twin of the device, through the twin too (``twin_val_acc`` or
        ``twin_val_nmse``, no device rows), and through the device only when the estimator asks for a check
        (``val_acc``/``val_nmse`` None otherwise)."""
        t = self.task
        self._busy = True
        x, labels = t.x_val[self.val_idx], t.y_val[self.val_idx]
        fields: dict[str, Any] = {}
        twin = self.predict(x, twin=True)
        if twin is not None:
            fields[f"twin_val_{self.metric}"] = scores(twin, labels, self.loss)[self.metric]
        last = self.step >= self.config.steps
        if twin is None or "device_changed" in self._note or self.estimator.eval_through_device(self.step, last):
            out = self._device_logits(x)
            val = scores(out, labels, self.loss)
            fields |= {f"val_{k}": v for k, v in val.items()}
            if twin is not None:
                self.estimator.checked(self.step, self.model, *right_per_sample(out, twin, labels, self.loss))
            key = f"val_{self.metric}"
            if better(self.metric, val[self.metric], None if self.best["params"] is None else self.best[key]):
                self.best = {"step": self.step, key: val[self.metric],
                             "params": {k: v.copy() for k, v in self.model.params.items()}}
            if self.metric == "acc":
                self.candidates = selection.keep(self.candidates, self.step, val["acc"], self.model.params)
        rec = self._record(**fields)
        self._loss_sum, self._loss_n = 0.0, 0
        self._busy = False
        if self.on_eval is not None:
            self.on_eval(rec)
        return rec

    def test(self) -> float:
        """Test accuracy (regression: NMSE) of the best-validation iterate (the current one before any
        evaluation); counted as eval rows and recorded in the metrics with ``test_step``."""
        params = self.best["params"]
        self._busy = True
        test = self._scores_with(params, self.task.x_test, self.task.y_test)
        self.tested_step = self.best["step"] if params is not None else self.step
        self._record(**{f"test_{k}": v for k, v in test.items()}, test_step=self.tested_step, loss=None)
        self._busy = False
        return test[self.metric]

    # -- stepping ----------------------------------------------------------------------------------
    def train_step(self) -> float:
        self._finishing = self.step + 1
        self._busy = self._stepping = True
        batch = self._batch(self.batch_rng)
        loss, grads, _ = self._device_call("train", lambda: self.estimator.estimate(self.model, batch))
        if not np.isfinite(loss) or not all(np.all(np.isfinite(g)) for g in grads.values()):
            raise DeviceError(f"non-finite loss or gradient at step {self.step + 1} (bad device readings?)")
        assert self._opt is not None
        updates, self.opt_state = self._opt.update(grads, self.opt_state, self.model.params)
        apply_updates(self.model.params, updates)
        self.step += 1
        self._loss_sum += loss
        self._loss_n += 1
        self._busy = self._stepping = False
        return loss

    def run(self, steps: int | None = None) -> Result:
        """Train until ``steps`` (default: the config's), test the best iterate, return the result.

        Ctrl-C (main thread) stops after the step in progress, writes a checkpoint and raises
        :class:`TrainingInterrupted` naming the resume command; a lost device writes a checkpoint at the last
        completed step too."""
        cfg = self.config
        target = cfg.steps if steps is None else steps
        self.clock.start(target, self.step)
        with deferred_interrupt(lambda: f"step {self._finishing if self._stepping else self.step}") as stop:
            try:
                if not self.calibrated:
                    self.setup()
                    self.log(self.header())
                    for note in self.readout_notes:
                        self.log(note)
                    self.evaluate()
                    self._save_if_dir()
                elif self._evaluate_first or (self.history and self.history[-1]["step"] != self.step
                                              and self.step % cfg.eval_every == 0):
                    self.evaluate()  # (a run stopped between a step and its evaluation, or moved to a new device)
                    self._evaluate_first = False
                self.clock.loop(self.step)
                while self.step < target:
                    if stop.requested:
                        raise KeyboardInterrupt
                    self.train_step()
                    self._check_link()
                    if self.step % cfg.eval_every == 0 or self.step == target:
                        self.evaluate()
                    if self.step % cfg.checkpoint_every == 0 or self.step == target:
                        self._save_if_dir()
                if self.step >= cfg.steps and self.tested_step != self.best["step"]:  # the run's end, not a chunk's
                    self.select()
                    self.test()
                    self._save_if_dir()
            except KeyboardInterrupt as exc:
                raise TrainingInterrupted(run_state.stopped_note(self, consistent=not self._busy)) from exc
            except PgtError as exc:
                note = run_state.stopped_note(self, consistent=isinstance(exc, DeviceError))
                raise type(exc)(f"{exc}; {note}") from exc
        return self.result()

    def select(self) -> None:
        """The final iterate (:mod:`pgt.selection`): the candidates measured again on the validation samples
        outside the subsample (evaluation rows); the best on the whole validation set becomes ``best``.
        Classification only: a regression run keeps its best iterate by subsample NMSE."""
        t = self.task
        rest = np.setdiff1d(np.arange(len(t.y_val)), self.val_idx)
        if self.metric != "acc" or len(self.candidates) < 2 or rest.size == 0:
            return
        self._busy = True
        acc, best, text = selection.choose(self.candidates, len(self.val_idx), rest.size,
                                           lambda p: self._scores_with(p, t.x_val[rest], t.y_val[rest])["acc"])
        self.best = {"step": best["step"], "val_acc": acc, "params": best["params"]}
        self.candidates = [best]
        self._busy = False
        self.log(text)

    def _save_if_dir(self) -> None:
        if self.run_dir is not None:
            self.save_checkpoint()

    def result(self) -> Result:
        return run_state.result(self)

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The whole run as plain data and arrays (:func:`pgt.run_state.state`)."""
        return run_state.state(self)

    def load_state(self, state: dict[str, Any], device_changed: bool = False) -> None:
        """Restore :meth:`state` on a trainer built from the same config (:func:`pgt.run_state.load_state`)."""
        run_state.load_state(self, state, device_changed)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.json`` + ``checkpoint-<step>.npz`` atomically (:mod:`pgt.checkpoint`)."""
        return run_state.save(self)

    @classmethod
    def resume(
        cls, run_dir: str | Path, reservoir: Reservoir | None = None,
        on_eval: Callable[[dict[str, Any]], None] | None = None, steps: int | None = None,
        device_changed: bool = False, log: Callable[[str], None] | None = None,
    ) -> Trainer:
        """Continue a run from its last checkpoint (the previous one if the newest is damaged), optionally to
        ``steps`` in all. Without ``reservoir`` the recorded device URL is reopened (on the in-process simulator,
        with its checkpointed state). A device of another shape is refused; another board, uid or simulator
        seed needs ``device_changed`` (see :mod:`pgt.resume`)."""
        return run_state.resume(cls, run_dir, reservoir, on_eval, steps, device_changed, log)


def fit(
    reservoir: Reservoir | None = None, task: str = "digits", model: str | None = None,
    estimator: str = "twin", steps: int = 300, seed: int = 0, out_dir: str | Path | None = None,
    verbose: bool = False, data: Any = None, **options: Any,
) -> Result:
    """Train a hybrid model through any :class:`~pgt.reservoir.Reservoir` and return a :class:`Result`.

    Without ``reservoir``: the simulated board in process (``sim://``; the noise-free reference ring for
    ``estimator="backprop"``). ``options`` are further :class:`TrainConfig` fields (``batch_size``, ``lr``,
    ``optimizer``, ``estimator_options``, ...). Example: ``pgt.fit(from_callable(f, 2, 3, drive_low=0,
    drive_high=1), steps=200)``.

    ``data``: your own data instead of ``task``: a file name (as ``pgt train --data``; ``label``, ``loss``,
    ``scale`` are further options), an ``(x, y)`` pair of arrays, or a :class:`~pgt.tasks.Task` (e.g.
    ``Task.from_arrays(x, y, loss="mse")``). ``model`` defaults to the task's (mlp for vectors, transformer for
    sequences).
    """
    given: Task | None = None
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise UserError("data=(x, y): give a pair of arrays")
        given = Task.from_arrays(data[0], data[1], loss=options.get("loss"), scale=options.get("scale", "global"))
    elif isinstance(data, Task):
        given = data
    elif data is not None:
        options["data"] = str(data)
    if data is not None:
        task = "data"
    cfg = TrainConfig(task=task, model=model or "mlp", estimator=estimator, steps=steps, seed=seed, **options)
    task_data = given or check_config(cfg)
    if model is None:
        cfg.model = "mlp" if task_data.info["kind"] == "vector" else "transformer"
    task_data = check_config(cfg, task_data)
    device = reservoir if reservoir is not None else default_device(estimator, seed)
    on_eval = (lambda r: print(progress_line(r), file=sys.stderr)) if verbose else None
    return Trainer(device, cfg, out_dir=out_dir, on_eval=on_eval, task=task_data).run()


__all__ = ["TrainConfig", "Trainer", "Result", "Counters", "fit", "crossing", "check_config", "default_device",
           "open_device", "progress_line", "TrainingInterrupted", "ESTIMATORS", "TASKS",
           "log_to_stderr", "PhysicalLayer"]
