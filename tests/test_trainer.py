"""The trainer: training improves accuracy, every query is counted, a killed run resumes bit-identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_estimators import ToyReservoir

import pgt.trainer as trainer_mod
from pgt.errors import DeviceError, UserError
from pgt.reservoir import from_callable
from pgt.trainer import TrainConfig, Trainer, fit

ring = pytest.importorskip("pgt.sim.ring")


def test_short_run_improves_accuracy_and_counts_every_query() -> None:
    res = ring.make_ring_reservoir(seed=0, board="wide")
    tr = Trainer(res, TrainConfig(estimator="surrogate", steps=60, eval_every=20, seed=1))
    result = tr.run()
    first, last = result.history[0], result.history[-1]
    assert last["test_acc"] > first["test_acc"] + 0.4
    assert result.best_test_acc > 0.75
    assert result.queries == res.queries  # nothing goes to the device uncounted
    c = tr.counters
    assert c.train == 60 * 32 and c.calibration == tr.physical.probe_queries(256) + tr.estimator.calibration.queries
    assert c.eval == 4 * (len(tr.task.y_val) + len(tr.task.y_test))
    assert result.device_seconds == pytest.approx(res.device_seconds)


@pytest.mark.parametrize("estimator", ["node", "param", "backprop"])
def test_other_estimators_learn(estimator: str) -> None:
    res = ring.make_ring_reservoir(seed=0, noise_free=estimator == "backprop", board="wide")
    if estimator == "param":  # slow by nature (d = 1370 coordinates): ask only for a falling training loss
        result = Trainer(res, TrainConfig(estimator=estimator, steps=100, eval_every=20, seed=3)).run()
        assert result.history[-1]["loss"] < result.history[1]["loss"] - 0.1
        return
    result = Trainer(res, TrainConfig(estimator=estimator, steps=40, eval_every=20, seed=2)).run()
    assert result.history[-1]["test_acc"] > result.history[0]["test_acc"] + 0.3


def test_fit_with_a_user_callable_and_a_transformer() -> None:
    w = np.random.default_rng(0).normal(size=(16, 24)) / 4.0
    res = from_callable(lambda u: np.tanh(u @ w), 16, 24, drive_low=-1.0, drive_high=1.0)
    result = fit(res, task="majority", model="transformer", estimator="node", steps=30, eval_every=10,
                 batch_size=16, model_options={"d_model": 16, "heads": 2})
    assert result.queries == res.queries
    assert len(result.history) == 4 and result.best_step >= 0


class Kill(Exception):
    pass


def _run_dir_metrics(path: Path) -> bytes:
    return (path / "metrics.jsonl").read_bytes()


@pytest.mark.parametrize("estimator", ["surrogate", "node"])
def test_resume_after_kill_is_bit_identical(tmp_path: Path, estimator: str) -> None:
    cfg = TrainConfig(estimator=estimator, steps=40, eval_every=5, checkpoint_every=10, seed=3)
    full = Trainer(ring.make_ring_reservoir(seed=4, board="wide"), cfg, out_dir=tmp_path / "full").run()

    def killer(rec: dict[str, Any]) -> None:
        if rec["step"] == 25:  # after the checkpoint at 20, with metrics written past it
            raise Kill

    with pytest.raises(Kill):
        Trainer(ring.make_ring_reservoir(seed=4, board="wide"), cfg, out_dir=tmp_path / "killed",
                on_eval=killer).run()
    assert json.loads(_run_dir_metrics(tmp_path / "killed").splitlines()[-1])["step"] == 25
    resumed_trainer = Trainer.resume(tmp_path / "killed")  # the simulator's state comes from the checkpoint
    assert resumed_trainer.step == 20
    resumed = resumed_trainer.run()
    assert _run_dir_metrics(tmp_path / "killed") == _run_dir_metrics(tmp_path / "full")
    assert resumed.history == full.history
    for k, v in full.best_params.items():
        np.testing.assert_array_equal(v, resumed.best_params[k])


class VanishingDevice(ToyReservoir):
    def __init__(self, after: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.after = after

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.queries + x.shape[0] > self.after:
            raise ConnectionError("serial port closed")
        return super().forward(x)


def test_device_vanishing_keeps_a_usable_checkpoint(tmp_path: Path) -> None:
    cfg = TrainConfig(task="digits", estimator="surrogate", steps=30, eval_every=10, checkpoint_every=10,
                      model_options={})
    dev = VanishingDevice(after=2000, k=16, m=32)
    with pytest.raises(DeviceError, match=r"device query failed.*checkpoint kept"):
        Trainer(dev, cfg, out_dir=tmp_path).run()
    tr = Trainer.resume(tmp_path, ToyReservoir(k=16, m=32))
    assert tr.step > 0 and tr.step % 10 == 0
    assert tr.run().history[-1]["step"] == 30


class RailedDevice(ToyReservoir):
    @property
    def info(self) -> dict[str, Any]:
        return {"kind": "toy", "volts_high": 3.3}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.minimum(super().forward(x) + 10.0, 3.3)


def test_bad_readings_and_bad_input_raise_clear_errors(tmp_path: Path) -> None:
    nan = from_callable(lambda u: np.full((u.shape[0], 8), np.nan), 4, 8)
    with pytest.raises(DeviceError, match="NaN"):
        Trainer(nan, TrainConfig(steps=1)).run()
    stuck = from_callable(lambda u: np.ones((u.shape[0], 8)), 4, 8)
    with pytest.raises(DeviceError, match="saturated"):
        Trainer(stuck, TrainConfig(steps=1)).run()
    with pytest.raises(DeviceError, match="3.3 V rail"):
        Trainer(RailedDevice(k=16, m=32), TrainConfig(steps=1)).run()
    with pytest.raises(UserError, match="unknown task"):
        Trainer(ToyReservoir(), TrainConfig(task="mnist"))
    with pytest.raises(UserError, match="sequence task"):
        Trainer(ToyReservoir(), TrainConfig(task="digits-seq", model="mlp"))
    with pytest.raises(UserError, match="exact vjp"):
        Trainer(ring.make_ring_reservoir(seed=0, board="wide"), TrainConfig(estimator="backprop"))
    with pytest.raises(UserError, match="no checkpoint"):
        Trainer.resume(tmp_path / "nothing")
    wrong = trainer_mod.PhysicalLayer(ToyReservoir(k=6, m=10))
    with pytest.raises(UserError, match="inputs"):
        wrong.attach(ToyReservoir(k=5, m=10))
