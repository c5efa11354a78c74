"""The training loop: any Reservoir, any estimator, every device query counted, exact resume.

``Trainer(reservoir, TrainConfig(...), out_dir=...)`` builds the task, the hybrid model and the estimator from
the config; ``run()`` calibrates (output normalisation from a probe batch, device repeat noise, perturbation
size, starting learning rate), then steps. Every ``eval_every`` steps it evaluates the unperturbed model on the
validation and test sets, tracks the best iterate (by validation accuracy), and appends one line to
``metrics.jsonl``; every ``checkpoint_every`` steps it writes ``checkpoint.pkl`` atomically. A run is fully
determined by its config (seed included) and by the device: with the in-process simulator the device's own
state is checkpointed as well, so ``Trainer.resume(run_dir)`` continues bit-identically; a real device resumes
with its present state.

Queries are counted by kind: ``calibration`` (probe batch and noise measurement), ``train`` (estimator
steps) and ``eval`` (unperturbed evaluations). "Training queries" below means calibration + train.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DeviceError, PgtError, UserError
from .estimators import Estimator, make_estimator
from .models import HybridModel, build_model
from .optim import Transform, apply_updates, make_optimizer, make_schedule
from .physical import PhysicalLayer
from .reservoir import Reservoir
from .tasks import Task, load_task

Array = np.ndarray
CHECKPOINT = "checkpoint.pkl"
METRICS = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in ``config.json``)."""

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
    eval_every: int = 10
    checkpoint_every: int = 50
    seed: int = 0
    probe: int = 256
    model_options: dict[str, Any] = field(default_factory=dict)
    estimator_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    calibration: int = 0
    train: int = 0
    eval: int = 0
    device_seconds: float = 0.0

    @property
    def training(self) -> int:
        return self.calibration + self.train

    @property
    def total(self) -> int:
        return self.calibration + self.train + self.eval


@dataclass
class Result:
    """What a run returns: the best iterate's accuracies, the final ones, the query counts and the history."""

    best_step: int
    best_val_acc: float
    best_test_acc: float
    final_test_acc: float
    queries: int
    training_queries: int
    device_seconds: float
    history: list[dict[str, Any]]
    best_params: dict[str, Array]
    run_dir: str | None = None


def _accuracy(logits: Array, labels: Array) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _device_snapshot(reservoir: Reservoir) -> bytes | None:
    """The in-process simulator's whole state (noise generator, drift), so a resume is bit-identical."""
    info = getattr(reservoir, "info", {}) or {}
    if not (str(info.get("kind", "")).startswith("sim") or getattr(reservoir, "snapshot_ok", False)):
        return None
    try:
        return pickle.dumps(reservoir)
    except Exception:
        return None


class Trainer:
    """Train a hybrid model through ``reservoir`` as ``config`` says; see the module docstring."""

    def __init__(
        self, reservoir: Reservoir, config: TrainConfig | None = None, out_dir: str | Path | None = None,
        on_eval: Callable[[dict[str, Any]], None] | None = None, task: Task | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.log = log or _stderr
        cfg = self.config
        if cfg.steps < 0 or cfg.batch_size < 1 or cfg.eval_every < 1 or cfg.checkpoint_every < 1:
            raise UserError("steps must be >= 0; batch size, eval and checkpoint intervals >= 1")
        make_optimizer(cfg.optimizer, make_schedule(cfg.schedule, 1.0, cfg.steps), cfg.clip)  # validate names
        self.reservoir = reservoir
        self.task = task or load_task(cfg.task)
        self.on_eval = on_eval
        seeds = np.random.SeedSequence(cfg.seed).spawn(4)
        init_rng, self.batch_rng, est_rng, self.cal_rng = (np.random.default_rng(s) for s in seeds)
        self.physical = PhysicalLayer(reservoir, slots=cfg.model_options.get("slots"))
        self.model: HybridModel = build_model(cfg.model, self.task.info, self.physical, init_rng,
                                              **cfg.model_options)
        self.estimator: Estimator = make_estimator(cfg.estimator, est_rng, **cfg.estimator_options)
        if self.estimator.needs_vjp and not getattr(reservoir, "exact_vjp", hasattr(reservoir, "vjp")):
            raise UserError("the backprop estimator needs a reservoir with an exact vjp (a noise-free simulator)")
        self.counters = Counters()
        self.step = 0
        self.calibrated = False
        self.lr: float | None = cfg.lr
        self.opt_state: Any = None
        self._opt: Transform | None = None
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"step": -1, "val_acc": -1.0, "test_acc": 0.0, "params": None}
        self._loss_sum = 0.0
        self._loss_n = 0
        self.run_dir = Path(out_dir) if out_dir is not None else None
        self._metrics_bytes = 0
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_doc = {"config": dataclasses.asdict(cfg), "device": dict(getattr(reservoir, "info", {})),
                          "model_params": self.model.n_params()}
            (self.run_dir / "config.json").write_text(json.dumps(config_doc, indent=2, default=str) + "\n")
            (self.run_dir / METRICS).write_bytes(b"")

    # -- accounting --------------------------------------------------------------------------------
    def _device_call(self, kind: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (which queries the device) and book its queries and device time under ``kind``."""
        q0 = self.reservoir.queries
        t0 = float(self.reservoir.device_seconds)
        out = fn()
        setattr(self.counters, kind, getattr(self.counters, kind) + (self.reservoir.queries - q0))
        self.counters.device_seconds += float(self.reservoir.device_seconds) - t0
        return out

    # -- calibration -------------------------------------------------------------------------------
    def _batch(self) -> tuple[Array, Array]:
        idx = self.batch_rng.choice(len(self.task.y_train), size=self.config.batch_size, replace=False)
        return self.task.x_train[idx], self.task.y_train[idx]

    def calibrate(self) -> None:
        """Output normalisation (probe batch), repeat noise and perturbation size, starting LR."""
        cfg = self.config
        _, u, y = self._device_call("calibration", lambda: self.physical.calibrate(self.cal_rng, cfg.probe))
        self.estimator.observe(u, y)
        self.readout_notes: list[str] = self._device_call(
            "calibration", lambda: self.physical.tune_averaging(self.cal_rng, cfg.probe))
        if self.estimator.name != "backprop":
            idx = self.cal_rng.choice(len(self.task.y_train), size=cfg.batch_size, replace=False)
            batch = (self.task.x_train[idx], self.task.y_train[idx])
            self._device_call("calibration", lambda: self.estimator.calibrate(self.model, batch))
        if self.lr is None:
            weights = np.concatenate([p.ravel() for p in self.model.params.values() if p.ndim > 1])
            lr_rel = cfg.lr_rel if cfg.lr_rel is not None else (
                0.1 if cfg.estimator in ("backprop", "surrogate") else 0.03)
            self.lr = float(lr_rel * np.sqrt(np.mean(weights**2)))
            if cfg.optimizer != "adam":
                # SGD: scale so the first step's update has the same RMS (gradient size from one estimate).
                idx = self.cal_rng.choice(len(self.task.y_train), size=cfg.batch_size, replace=False)
                batch = (self.task.x_train[idx], self.task.y_train[idx])
                _, g, _ = self._device_call("calibration", lambda: self.estimator.estimate(self.model, batch))
                g_rms = float(np.sqrt(np.mean(np.concatenate([v.ravel() for v in g.values()]) ** 2)))
                self.lr = self.lr / max(g_rms, 1e-12)
        self._make_optimizer()
        self.opt_state = self._opt.init(self.model.params) if self._opt else None
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
        rows = self.config.batch_size * self.model.rows_per_sample * self.estimator.rows_per_row()
        n_avg = ph.n_avg
        return (f"device {board}{uid}: k={ph.k} drives, m={ph.m} taps; {ph.slots} slots -> ring layer "
                f"{ph.width_in} drives / {ph.width_out} readings; noise/span per tap "
                f"{' '.join(f'{v:.2f}' for v in ph.noise_span)}; n_avg {'-' if n_avg is None else n_avg}; "
                f"{rows:,} queries per step, ~{rows * ph.seconds_per_query:.3g} device s per step")

    # -- evaluation --------------------------------------------------------------------------------
    def predict(self, x: Array, batch: int = 512) -> Array:
        """Unperturbed forward through the device (counted as eval queries); returns logits."""
        out = []
        ph = self.physical
        for i in range(0, len(x), batch):
            a, pc = self.model.pre(x[i : i + batch])
            u, _ = ph.drive(a)
            y = self._device_call("eval", partial(ph.query, u))
            out.append(self.model.post(ph.normalise(y), pc)[0])
        return np.concatenate(out)

    def evaluate(self) -> dict[str, Any]:
        t = self.task
        val_acc = _accuracy(self.predict(t.x_val), t.y_val)
        test_acc = _accuracy(self.predict(t.x_test), t.y_test)
        if val_acc > self.best["val_acc"]:
            self.best = {"step": self.step, "val_acc": val_acc, "test_acc": test_acc,
                         "params": {k: v.copy() for k, v in self.model.params.items()}}
        rec = {
            "step": self.step,
            "loss": self._loss_sum / self._loss_n if self._loss_n else None,
            "val_acc": val_acc,
            "test_acc": test_acc,
            "training_queries": self.counters.training,
            "eval_queries": self.counters.eval,
            "queries": self.counters.total,
            "device_seconds": round(self.counters.device_seconds, 9),
            "lr": self.lr,
            "best_step": self.best["step"],
            "best_test_acc": self.best["test_acc"],
        } | self.estimator.diagnostics()
        self._loss_sum, self._loss_n = 0.0, 0
        self.history.append(rec)
        if self.run_dir is not None:
            line = (json.dumps(rec) + "\n").encode()
            with open(self.run_dir / METRICS, "ab") as f:
                f.write(line)
            self._metrics_bytes += len(line)
        if self.on_eval is not None:
            self.on_eval(rec)
        return rec

    # -- stepping ----------------------------------------------------------------------------------
    def train_step(self) -> float:
        batch = self._batch()
        loss, grads, _ = self._device_call("train", lambda: self.estimator.estimate(self.model, batch))
        if not np.isfinite(loss) or not all(np.all(np.isfinite(g)) for g in grads.values()):
            raise DeviceError(f"non-finite loss or gradient at step {self.step + 1} (bad device readings?)")
        assert self._opt is not None
        updates, self.opt_state = self._opt.update(grads, self.opt_state, self.model.params)
        apply_updates(self.model.params, updates)
        self.step += 1
        self._loss_sum += loss
        self._loss_n += 1
        return loss

    def run(self, steps: int | None = None) -> Result:
        """Train until ``steps`` (default: the config's) and return the result; checkpoints as configured."""
        cfg = self.config
        target = cfg.steps if steps is None else steps
        try:
            if not self.calibrated:
                self.calibrate()
                self.log(self.header())
                for note in self.readout_notes:
                    self.log(note)
                self.evaluate()
            while self.step < target:
                self.train_step()
                if self.step % cfg.eval_every == 0 or self.step == target:
                    self.evaluate()
                if self.run_dir is not None and (self.step % cfg.checkpoint_every == 0 or self.step == target):
                    self.save_checkpoint()
        except PgtError as exc:
            where = ""
            if self.run_dir is not None and (self.run_dir / CHECKPOINT).exists():
                where = f"; checkpoint kept in {self.run_dir} (continue with --resume {self.run_dir})"
            raise type(exc)(f"{exc}{where}") from exc
        return self.result()

    def result(self) -> Result:
        last = self.history[-1] if self.history else {"test_acc": 0.0}
        return Result(
            best_step=self.best["step"], best_val_acc=self.best["val_acc"], best_test_acc=self.best["test_acc"],
            final_test_acc=float(last["test_acc"]), queries=self.counters.total,
            training_queries=self.counters.training, device_seconds=self.counters.device_seconds,
            history=list(self.history), best_params=self.best["params"] or {},
            run_dir=str(self.run_dir) if self.run_dir else None,
        )

    # -- checkpoints -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "config": dataclasses.asdict(self.config),
            "step": self.step,
            "model": self.model,
            "estimator": self.estimator,
            "opt_state": self.opt_state,
            "lr": self.lr,
            "batch_rng": self.batch_rng,
            "cal_rng": self.cal_rng,
            "counters": self.counters,
            "history": self.history,
            "best": self.best,
            "loss": (self._loss_sum, self._loss_n),
            "metrics_bytes": self._metrics_bytes,
            "device": _device_snapshot(self.reservoir),
        }

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pkl`` atomically (temp file + rename)."""
        if self.run_dir is None:
            raise UserError("this trainer has no run directory")
        path = self.run_dir / CHECKPOINT
        _atomic_write(path, pickle.dumps(self._state(), protocol=pickle.HIGHEST_PROTOCOL))
        return path

    @classmethod
    def resume(
        cls, run_dir: str | Path, reservoir: Reservoir | None = None,
        on_eval: Callable[[dict[str, Any]], None] | None = None,
    ) -> Trainer:
        """Continue a run from its last checkpoint. Without ``reservoir``, the checkpointed simulator is used."""
        run_dir = Path(run_dir)
        path = run_dir / CHECKPOINT
        if not path.exists():
            raise UserError(f"no checkpoint in {run_dir}")
        try:
            state = pickle.loads(path.read_bytes())
        except Exception as exc:
            raise UserError(f"cannot read checkpoint {path}: {exc}") from exc
        if reservoir is None:
            if state["device"] is None:
                raise UserError("this run used an external device: give the device to resume on")
            reservoir = pickle.loads(state["device"])
        assert reservoir is not None
        self = cls.__new__(cls)
        self.config = TrainConfig(**state["config"])
        self.reservoir = reservoir
        self.task = load_task(self.config.task)
        self.on_eval = on_eval
        self.log = _stderr
        self.model = state["model"]
        self.physical = self.model.physical
        self.physical.attach(reservoir)
        self.estimator = state["estimator"]
        self.opt_state = state["opt_state"]
        self.lr = state["lr"]
        self.batch_rng = state["batch_rng"]
        self.cal_rng = state["cal_rng"]
        self.counters = state["counters"]
        self.history = state["history"]
        self.best = state["best"]
        self._loss_sum, self._loss_n = state["loss"]
        self.step = state["step"]
        self.calibrated = True
        self.run_dir = run_dir
        self._metrics_bytes = state["metrics_bytes"]
        # The metrics file as it was at the checkpoint (lines written after it are dropped).
        data = b"".join((json.dumps(rec) + "\n").encode() for rec in self.history)
        _atomic_write(run_dir / METRICS, data)
        self._metrics_bytes = len(data)
        self._make_optimizer()
        return self


def fit(
    reservoir: Reservoir, task: str = "digits", model: str = "mlp", estimator: str = "surrogate",
    steps: int = 300, seed: int = 0, out_dir: str | Path | None = None, verbose: bool = False,
    **options: Any,
) -> Result:
    """Train a hybrid model through any :class:`~pgt.reservoir.Reservoir` and return a :class:`Result`.

    ``options`` are further :class:`TrainConfig` fields (``batch_size``, ``lr``, ``optimizer``,
    ``estimator_options``, ...). Example: ``pgt.fit(pgt.reservoir.from_callable(f, 16, 32), steps=200)``.
    """
    cfg = TrainConfig(task=task, model=model, estimator=estimator, steps=steps, seed=seed, **options)
    on_eval = (lambda r: print(progress_line(r), file=sys.stderr)) if verbose else None
    return Trainer(reservoir, cfg, out_dir=out_dir, on_eval=on_eval).run()


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def progress_line(rec: dict[str, Any]) -> str:
    """One line for a metrics record: step, loss, accuracies, queries, device time."""
    loss = "   -  " if rec["loss"] is None else format(rec["loss"], ".4f")
    return (
        f"step {rec['step']:5d}  loss {loss}  val {100 * rec['val_acc']:5.1f}%  "
        f"test {100 * rec['test_acc']:5.1f}%  queries {rec['queries']:,} "
        f"(train {rec['training_queries']:,})  device {rec['device_seconds']:.1f} s"
    )
