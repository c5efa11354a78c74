"""A training run's parts and its setup on the device (the base of :class:`pgt.trainer.Trainer`).

From the config: the task, the physical layer, the hybrid model, the estimator, the generators, the validation
subsample and the counters; then device accounting (every device row booked once, by kind, with the link's
resends and resets) and the setup on the device: output normalisation, ADC averaging, the estimator's own
measurements (:meth:`RunSetup.measure_device`), the starting learning rate and the optimizer
(:meth:`RunSetup.setup`), and the same measurements anew on a new device (:meth:`RunSetup.remeasure_device`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import run_dir as run_dirs
from . import settle
from .config import TrainConfig, check_config, check_memory
from .errors import UserError
from .estimators import Estimator, make_estimator
from .models import HybridModel, build_model
from .optim import Transform, make_optimizer, make_schedule
from .physical import PhysicalLayer
from .progress import LINK_KEYS, Counters, ProgressClock, link_counters, link_text, log_to_stderr
from .reservoir import Reservoir
from .tasks import Task

Array = np.ndarray


class RunSetup:
    """A run's parts and its setup on the device; :class:`pgt.trainer.Trainer` trains with them."""

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
