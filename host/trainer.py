"""The training loop: any Reservoir, any estimator, every device row counted, exact resume.

``Trainer(reservoir, TrainConfig(...), out_dir=...)`` builds the task, the hybrid model and the estimator from
the config; ``run()`` calibrates (output normalisation from a probe batch, device repeat noise, perturbation
size, starting learning rate), writes a checkpoint, then steps. Every ``eval_every`` steps it evaluates the
unperturbed model on a fixed subsample of the validation set (``val_size`` rows; the whole set if None), keeps
the best iterates by validation accuracy and appends one record to ``metrics.jsonl``; with an estimator that
has a twin of the device, through the twin as well (``twin_val_acc``, no device rows) and through the device
only when the estimator asks for a check. At the end the best candidates are measured again on the rest of the
validation set (:mod:`pgt.selection`) and the test set is evaluated once, on the chosen iterate (and on demand:
:meth:`Trainer.test`). Evaluation readings also feed the estimator (``estimator.observe``: surrogate and twin
learn from them).

Every device row is counted once, by kind: ``calibration``, ``train`` (estimator steps) and ``eval``;
``queries`` is their sum. Checkpoints (JSON + ``.npz``, :mod:`pgt.checkpoint`) are written after calibration,
every ``checkpoint_every`` steps, at the end, on Ctrl-C (after the step in progress) and when the device is
lost; :meth:`Trainer.resume` rebuilds the run from its config and restores each component's state (model,
optimizer, estimator, physical layer, counters, generators and, on the in-process simulator, the device), so
a resumed simulator run continues bit-identically.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import run_dir as run_dirs
from . import run_state, selection, settle
from .config import TrainConfig, check_config, check_memory
from .device import default_device, open_device  # (re-exported)
from .errors import DeviceError, PgtError, UserError
from .estimators import ESTIMATORS, Estimator, make_estimator
from .fitting import fit  # (re-exported: pgt.trainer.fit)
from .interrupts import TrainingInterrupted, deferred_interrupt
from .models import HybridModel, build_model
from .optim import Transform, apply_updates, make_optimizer, make_schedule
from .physical import PhysicalLayer
from .progress import (
    LINK_KEYS,
    Counters,
    ProgressClock,
    Result,
    better,
    crossing,
    link_counters,
    link_text,
    log_to_stderr,
    progress_line,
    right_per_sample,
    scores,
)
from .reservoir import Reservoir
from .tasks import TASKS, Task

Array = np.ndarray
METRICS = run_dirs.METRICS


class Trainer:
    """Train a hybrid model through ``reservoir`` as ``config`` says; see the module docstring."""

    def __init__(
        self, reservoir: Reservoir, config: TrainConfig | None = None, out_dir: str | Path | None = None,
        on_eval: Callable[[dict[str, Any]], None] | None = None, task: Task | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.log = log or log_to_stderr
        cfg = self.config
        self.task = check_config(cfg, task)
        self.reservoir = reservoir
        self.on_eval = on_eval
        seeds = np.random.SeedSequence(cfg.seed).spawn(4)
        init_rng, self.batch_rng, est_rng, self.cal_rng = (np.random.default_rng(s) for s in seeds)
        if cfg.settle_us is not None:
            settle.apply(reservoir, cfg.settle_us)
        self.physical = PhysicalLayer(reservoir, slots=cfg.model_options.get("slots"))
        ph = self.physical
        check_memory(cfg, self.task.info, ph.k, ph.m, where=f"on this {ph.k}-drive, {ph.m}-tap device")
        self.model: HybridModel = build_model(cfg.model, self.task.info, self.physical, init_rng,
                                              **cfg.model_options)
        self.estimator: Estimator = make_estimator(cfg.estimator, est_rng, **cfg.estimator_options)
        self.estimator.check(self.model, self.task.x_train[:1])
        if self.estimator.needs_vjp and not getattr(reservoir, "exact_vjp", hasattr(reservoir, "vjp")):
            raise UserError("the backprop estimator needs a reservoir with an exact vjp (a noise-free simulator)")
        n_val = len(self.task.y_val)
        self.val_idx = np.arange(n_val) if cfg.val_size is None or cfg.val_size >= n_val else \
            np.sort(np.random.default_rng(0).choice(n_val, size=cfg.val_size, replace=False))
        self.counters = Counters()
        self.step = 0
        self.calibrated = False
        self.lr: float | None = cfg.lr
        self.opt_state: Any = None
        self._opt: Transform | None = None
        self.history: list[dict[str, Any]] = []
        self.loss = str(self.task.info.get("loss", "ce"))
        self.metric = "nmse" if self.loss == "mse" else "acc"
        """What selects the best iterate and is reported: validation accuracy, or NMSE for regression."""
        self.best: dict[str, Any] = {"step": -1, f"val_{self.metric}": None, "params": None}
        self.candidates: list[dict[str, Any]] = []
        """The few best iterates by subsample validation (classification), measured again on the whole set at
        the end."""
        self.tested_step = -1
        """The best-validation step whose test accuracy was last measured (-1: never)."""
        self._loss_sum = 0.0
        self._loss_n = 0
        self._busy = False
        """True while the state is between two consistent points (a step or an evaluation in progress)."""
        self._stepping = False
        """True while a training step is in progress (the one that will end at step ``_finishing``)."""
        self._finishing = 0
        self._link_seen = link_counters(reservoir)
        self._evaluate_first = False
        """Evaluate before the next step (set when a resumed run moved to another device)."""
        self._note: dict[str, Any] = {}
        """Fields for the next metrics record only."""
        self.on_progress: Callable[[str], None] | None = None
        """Called with a progress line (elapsed, time left) at least every PROGRESS_EVERY s of device work."""
        self.clock = ProgressClock()
        self.run_dir = Path(out_dir) if out_dir is not None else None
        if self.run_dir is not None:
            run_dirs.start(self.run_dir, self.config_doc())

    def config_doc(self) -> dict[str, Any]:
        """What ``config.json`` holds: the config, the device's description and the model's size."""
        return {"config": dataclasses.asdict(self.config), "device": dict(getattr(self.reservoir, "info", {})),
                "model_params": self.model.n_params(), "task": self.task.info}

    # -- accounting --------------------------------------------------------------------------------
    def _device_call(self, kind: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (which queries the device) and book its rows and device time under ``kind``."""
        q0 = self.reservoir.queries
        t0 = float(self.reservoir.device_seconds)
        try:
            return fn()
        finally:
            setattr(self.counters, kind, getattr(self.counters, kind) + (self.reservoir.queries - q0))
            self.counters.device_seconds += float(self.reservoir.device_seconds) - t0
            line = self.clock.tick(self.step, "training" if kind == "train" else kind)
            if line is not None and self.on_progress is not None:
                self.on_progress(line)

    def _check_link(self) -> None:
        """Book resends, reconnects and resets the link saw since the last look; say so on stderr."""
        now = link_counters(self.reservoir)
        new = {k: now[k] - self._link_seen.get(k, 0) for k in LINK_KEYS if now[k] > self._link_seen.get(k, 0)}
        self._link_seen = now
        if new:
            for k, n in new.items():
                self.counters.link[k] = self.counters.link.get(k, 0) + n
            self.log(f"link at step {self.step}: {link_text(new)}")

    # -- calibration -------------------------------------------------------------------------------
    def _batch(self, rng: np.random.Generator) -> tuple[Array, Array]:
        idx = rng.choice(len(self.task.y_train), size=self.config.batch_size, replace=False)
        return self.task.x_train[idx], self.task.y_train[idx]

    def measure_device(self) -> None:
        """The device's part of calibration: output normalisation (probe batch), ADC averaging, the estimator's
        repeat noise and perturbation size."""
        cfg = self.config
        ph = self.physical
        _, u, y = self._device_call("calibration", lambda: ph.fit_normalisation(self.cal_rng, cfg.probe))
        self.estimator.observe(u, y)
        self.readout_notes: list[str] = self._device_call(
            "calibration", lambda: ph.tune_averaging(self.cal_rng, cfg.probe))
        if self.estimator.name != "backprop":
            batch = self._batch(self.cal_rng)
            self._device_call("calibration", lambda: self.estimator.fit_to_device(self.model, batch))

    def setup(self) -> None:
        """:meth:`measure_device`, then the starting learning rate and the optimizer."""
        cfg = self.config
        self.measure_device()
        if self.lr is None:
            weights = np.concatenate([p.ravel() for p in self.model.params.values() if p.ndim > 1])
            lr_rel = cfg.lr_rel if cfg.lr_rel is not None else self.estimator.lr_rel
            self.lr = float(lr_rel * np.sqrt(np.mean(weights**2)))
            if cfg.optimizer != "adam":
                # SGD: scale so the first step's update has the same RMS (gradient size from one estimate).
                batch = self._batch(self.cal_rng)
                _, g, _ = self._device_call("calibration", lambda: self.estimator.estimate(self.model, batch))
                g_rms = float(np.sqrt(np.mean(np.concatenate([v.ravel() for v in g.values()]) ** 2)))
                self.lr = self.lr / max(g_rms, 1e-12)
        self._make_optimizer()
        assert self._opt is not None
        self.opt_state = self._opt.init(self.model.params)
        self.calibrated = True

    def _make_optimizer(self) -> None:
        assert self.lr is not None
        cfg = self.config
        self._opt = make_optimizer(cfg.optimizer, make_schedule(cfg.schedule, self.lr, cfg.steps), cfg.clip)

    def header(self) -> str:
        """One line on what a step costs: board, shape, slots, per-tap noise/span, n_avg, queries, device time."""
        ph = self.physical
        info = dict(getattr(self.reservoir, "info", {}) or {})
        board = " ".join(str(info[key]) for key in ("board", "name") if info.get(key)) or str(info.get("kind", "?"))
        uid = f" uid {info['uid']}" if info.get("uid") else ""
        rows = self.config.batch_size * self.model.rows_per_sample * self.estimator.device_rows_per_batch_row()
        n_avg = ph.n_avg
        return (f"device {board}{uid}: k={ph.k} drives, m={ph.m} taps; {ph.slots} slots -> ring layer "
                f"{ph.width_in} drives / {ph.width_out} readings; noise/span per tap "
                f"{' '.join(f'{v:.2f}' for v in ph.noise_span)}; n_avg {'-' if n_avg is None else n_avg}; "
                + (f"{settle.describe(info)}; " if settle.describe(info) else "")
                + f"{rows:,} queries per step, ~{rows * ph.seconds_per_query:.3g} device s per step; "
                + self.estimator.describe())

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

    def remeasure_device(self, note: str) -> None:
        """On a new device: measure the readout and the estimator's calibration anew (calibration rows), keep
        the model and optimizer, and restart the best-iterate choice from an evaluation before the next step
        (its metrics record carries ``note`` as ``device_changed``)."""
        self.measure_device()
        self.best = {"step": -1, f"val_{self.metric}": None, "params": None}
        self.candidates = []
        self._evaluate_first = True
        self._note = {"device_changed": note}
        self.log(self.header())

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


__all__ = ["TrainConfig", "Trainer", "Result", "Counters", "fit", "crossing", "check_config", "default_device",
           "open_device", "progress_line", "TrainingInterrupted", "ESTIMATORS", "TASKS"]
