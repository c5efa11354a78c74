"""One sweep trial on a Ray worker: Ray Tune's class-based ``Trainable`` around one ``Trainer`` run.

``step()`` trains to the next evaluation and returns that evaluation (then, once, the final test record), so
Tune sees every evaluation and nothing runs in a thread of its own. At a multiple of
``lcm(eval_every, checkpoint_every)`` (and at the end) the result asks Tune for a checkpoint, where the trainer
writes one anyway: ``save_checkpoint`` copies the run directory, ``load_checkpoint`` puts it back and the
trial continues through ``Trainer.resume`` (a restarted worker, on any node). The device is opened on the
first step (an error there fails the trial with the device's message) and closed when the run ends, so a
rig is held only while its trial trains.

Imported only on a worker or by the driver when a sweep runs (it imports Ray).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from ray import tune

from .spec import RESULT_KEYS, Trial, chunk_ends, rig_resource


def _metrics(rec: dict[str, Any]) -> dict[str, Any]:
    """A metrics record as Tune takes it: scalars only, no None (the final test record has no ``val_acc``)."""
    return {k: v for k, v in rec.items() if isinstance(v, (int, float, str, bool))}


def _close(device: Any) -> None:
    close = getattr(device, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


def open_device(trial: Trial) -> Any:
    """The trial's device: its rig's URL, or its own in-process simulated ring."""
    if trial.url is None:
        if trial.noise_free:
            from ..sim.reservoirs import reference_ring

            return reference_ring(seed=trial.ring_seed, board=trial.board)
        from ..sim_board import open_sim_board

        return open_sim_board(seed=trial.ring_seed, board=trial.board)
    from .. import device

    return device.open_device(trial.url)


class SweepTrainable(tune.Trainable):
    """A pgt training run as a Tune trial (see the module doc); ``config["spec"]`` holds the trial."""

    def setup(self, config: dict[str, Any]) -> None:
        self.trial = Trial.from_dict(config["spec"]["trial"])
        self.run_dir = Path(self.logdir) / "run"  # the pgt run directory, next to Tune's files
        shutil.rmtree(self.run_dir, ignore_errors=True)  # (what a lost worker wrote after its last checkpoint)
        self.device: Any = None
        self.trainer: Any = None
        self.pending: list[dict[str, Any]] = []  # records the trainer made, not yet returned to Tune
        self.seen = 0  # records of the trainer's history taken into pending so far
        self.resumed_from = -1
        self.ends = set(chunk_ends(self.trial.config))
        self.t_open = time.time()
        self.cpu0 = time.process_time()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """A new trial on this worker (Tune reuses workers without ASHA)."""
        self.cleanup()
        self.setup(new_config)
        return True

    def _start(self) -> None:
        from ..trainer import Trainer

        self.t_open, self.cpu0 = time.time(), time.process_time()
        self.device = open_device(self.trial)
        if self.resumed_from >= 0:
            self.trainer = Trainer.resume(self.run_dir, self.device)
            self.resumed_from = self.trainer.step
        else:
            self.trainer = Trainer(self.device, self.trial.config, out_dir=self.run_dir, log=lambda line: None)
        self.trainer.log = lambda line: None
        self.seen = len(self.trainer.history)

    def step(self) -> dict[str, Any]:
        if self.trainer is None:
            self._start()
        trainer, cfg = self.trainer, self.trial.config
        if not self.pending:  # train to the next evaluation (the trainer tests the best iterate at the end)
            every = cfg.eval_every
            trainer.run(steps=min(cfg.steps, (trainer.step // every + 1) * every))
            self.pending = trainer.history[self.seen:] or trainer.history[-1:]  # (always one: run() evaluates)
            self.seen = len(trainer.history)
        rec = self.pending.pop(0)
        out = _metrics(rec) | {"pid": os.getpid(), "resumed_from": self.resumed_from}
        if self.pending:
            return out
        finished = trainer.step >= cfg.steps and trainer.tested_step == trainer.best["step"]
        if finished:
            result = trainer.result()
            _close(self.device)
            self.device = None
            ph = trainer.physical
            out |= {k: getattr(result, k) for k in RESULT_KEYS} | {
                "k": ph.k, "m": ph.m, "slots": ph.slots, "wall_s": time.time() - self.t_open,
                "cpu_s": time.process_time() - self.cpu0,  # (the worker process's, Ray's threads in it included)
                "finished": True, "rig_open_t": self.t_open, "rig_close_t": time.time(), "done": True}
        # a checkpoint where the trainer wrote one: the run directory then holds exactly this state
        out["should_checkpoint"] = finished or trainer.step in self.ends and rec["step"] == trainer.step
        return out

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        shutil.copytree(self.run_dir, checkpoint_dir, dirs_exist_ok=True)

    def load_checkpoint(self, checkpoint: Any) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.copytree(str(checkpoint), self.run_dir)
        _close(self.device)
        self.device = self.trainer = None
        self.pending = []
        self.resumed_from = 0  # resume from the run directory on the next step

    def cleanup(self) -> None:
        _close(self.device)
        self.device = None


def trial_resources(config: dict[str, Any]) -> Any:
    """What a trial holds while it runs: its CPUs, and its rig's resource (capacity 1) if it has a rig."""
    from ray.tune import PlacementGroupFactory

    spec = config["spec"]
    rig = spec["trial"].get("rig")
    return PlacementGroupFactory([{"CPU": float(spec["cpus"])} | ({rig_resource(rig): 1.0} if rig else {})])


def trial_dirname(trial: Any) -> str:
    return f"trial-{trial.config['spec']['index']:03d}-{trial.trial_id}"
