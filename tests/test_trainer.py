"""The trainer: training improves accuracy, every query is counted, a killed run resumes bit-identically."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_estimators import ToyReservoir

import pgt.trainer as trainer_mod
from pgt.device import default_device, open_device
from pgt.errors import DeviceError, UserError
from pgt.reservoir import from_callable
from pgt.sim.reservoirs import reference_ring
from pgt.sim_board import open_sim_board
from pgt.trainer import TrainConfig, Trainer, crossing, fit


def test_short_run_improves_accuracy_and_counts_every_row() -> None:
    res = open_device("sim://?seed=0&board=wide")  # the simulated board through the firmware Core, in process
    tr = Trainer(res, TrainConfig(estimator="surrogate", steps=60, eval_every=20, seed=1))
    result = tr.run()
    first, last = result.history[0], result.history[-2]
    assert last["val_acc"] > first["val_acc"] + 0.4
    assert result.best_test_acc is not None and result.best_test_acc > 0.75
    assert result.history[-1]["test_step"] == result.best_step  # the test set once, on the best iterate
    assert result.queries == res.queries  # nothing goes to the device uncounted
    c = tr.counters
    slots = tr.physical.slots  # device rows per sample (the rp2-shaped board: 8)
    assert c.train == 60 * 32 * slots
    assert c.calibration >= tr.physical.probe_queries(256) + tr.estimator.calibration.queries  # (+ averaging tries)
    n_rest = len(tr.task.y_val) - 64  # the 2 best iterates measured again on the rest of the validation set
    assert c.eval == (4 * 64 + 2 * n_rest + len(tr.task.y_test)) * slots  # 4 subsamples, selection, one test
    assert result.queries == result.calibration_queries + result.training_queries + result.eval_queries
    assert result.device_seconds == pytest.approx(res.device_seconds)


def test_default_evaluation_is_a_small_share_of_all_rows() -> None:
    tr = Trainer(open_sim_board(seed=0), TrainConfig(estimator="surrogate", seed=0))
    cfg = tr.config
    evals = cfg.steps // cfg.eval_every + 1
    rows = tr.physical.slots * tr.model.rows_per_sample  # device rows per sample
    n_rest = len(tr.task.y_val) - cfg.val_size  # type: ignore[operator]
    selection = 2 * n_rest  # the final choice between the two best iterates, on the rest of the validation set
    evaluation = (evals * cfg.val_size + selection + len(tr.task.y_test)) * rows  # type: ignore[operator]
    training = cfg.steps * cfg.batch_size * rows  # (calibration left out: the share is an upper bound)
    assert evaluation / (evaluation + training) <= 0.15  # the default plan, surrogate (the cheapest per step)


def test_the_final_iterate_is_the_best_candidate_on_the_whole_validation_set() -> None:
    from pgt import selection

    lines: list[str] = []
    tr = Trainer(open_sim_board(seed=0), TrainConfig(estimator="surrogate", steps=40, eval_every=10,
                                                               val_size=16), log=lines.append)
    result = tr.run()
    (line,) = [x for x in lines if x.startswith("final iterate")]
    chosen = int(re.match(r"final iterate: step (\d+)", line).group(1))  # type: ignore[union-attr]
    listed = {int(s): float(a) for s, a in re.findall(r"step (\d+) ([\d.]+)%", line.split("candidates:")[1])}
    assert len(listed) == selection.CANDIDATES and listed[chosen] == max(listed.values())
    assert result.best_step == chosen == result.history[-1]["test_step"]
    subsample = {r["step"]: r["val_acc"] for r in result.history if r["val_acc"] is not None}
    best_two = sorted(subsample, key=lambda s: (-subsample[s], -s))[:2]
    assert sorted(listed) == sorted(best_two)  # the two best by the subsample were the candidates
    assert selection.keep([], 3, 0.5, {"w": np.zeros(2)})[0]["params"]["w"].shape == (2,)
    assert selection.whole_set(0.5, 16, 1.0, 16) == 0.75


def test_evaluation_rows_feed_the_surrogate() -> None:
    tr = Trainer(open_sim_board(seed=0), TrainConfig(estimator="surrogate", steps=0))
    tr.setup()
    before = sum(len(u) for u in tr.estimator._u)  # type: ignore[attr-defined]
    tr.evaluate()
    assert sum(len(u) for u in tr.estimator._u) == before + 64 * tr.physical.slots  # type: ignore[attr-defined]


def test_crossing_needs_two_consecutive_evaluations() -> None:
    hist = [{"val_acc": a, "queries": q} for a, q in [(0.5, 10), (0.95, 20), (0.7, 30), (0.91, 40), (0.92, 50)]]
    assert crossing(hist, 0.9) == 40
    assert crossing(hist + [{"val_acc": None, "test_acc": 0.99, "queries": 60}], 0.93) is None


@pytest.mark.parametrize("estimator", ["node", "param", "backprop"])
def test_other_estimators_learn(estimator: str) -> None:
    res = reference_ring(seed=0, board="wide") if estimator == "backprop" else open_sim_board(seed=0, board="wide")
    if estimator == "param":  # slow by nature (d = 1370 coordinates): ask only for a falling training loss
        result = Trainer(res, TrainConfig(estimator=estimator, steps=100, eval_every=20, seed=3)).run()
        assert result.history[-2]["loss"] < result.history[1]["loss"] - 0.1
        return
    result = Trainer(res, TrainConfig(estimator=estimator, steps=40, eval_every=20, seed=2, val_size=None)).run()
    assert result.history[-2]["val_acc"] > result.history[0]["val_acc"] + 0.3


def test_fit_with_a_user_callable_and_a_transformer() -> None:
    w = np.random.default_rng(0).normal(size=(16, 24)) / 4.0
    res = from_callable(lambda u: np.tanh(u @ w), 16, 24, drive_low=-1.0, drive_high=1.0)
    result = fit(res, task="majority", model="transformer", estimator="node", steps=30, eval_every=10,
                 batch_size=16, model_options={"d_model": 16, "heads": 2})
    assert result.queries == res.queries
    assert len(result.history) == 5 and result.best_step >= 0  # 4 evaluations and the test


def test_fit_defaults_to_the_simulated_board() -> None:
    result = fit(steps=2, eval_every=1, val_size=8)
    assert result.queries > 0 and result.best_test_acc is not None


class Kill(Exception):
    pass


def _run_dir_metrics(path: Path) -> bytes:
    return (path / "metrics.jsonl").read_bytes()


@pytest.mark.parametrize("estimator", ["surrogate", "node", "param"])
def test_resume_after_kill_is_bit_identical(tmp_path: Path, estimator: str) -> None:
    cfg = TrainConfig(estimator=estimator, steps=40, eval_every=5, checkpoint_every=10, seed=3, val_size=32)
    full = Trainer(open_device("sim://?seed=4&board=wide"), cfg, out_dir=tmp_path / "full").run()

    def killer(rec: dict[str, Any]) -> None:
        if rec["step"] == 25:  # after the checkpoint at 20, with metrics written past it
            raise Kill

    with pytest.raises(Kill):
        Trainer(open_device("sim://?seed=4&board=wide"), cfg, out_dir=tmp_path / "killed", on_eval=killer).run()
    assert json.loads(_run_dir_metrics(tmp_path / "killed").splitlines()[-1])["step"] == 25
    assert not list((tmp_path / "killed").glob("*.pkl"))
    resumed_trainer = Trainer.resume(tmp_path / "killed")  # reopens sim:// and restores the board's state
    assert resumed_trainer.step == 20
    resumed = resumed_trainer.run()
    assert _run_dir_metrics(tmp_path / "killed") == _run_dir_metrics(tmp_path / "full")
    assert resumed.history == full.history
    for k, v in full.best_params.items():
        np.testing.assert_array_equal(v, resumed.best_params[k])


def test_resume_extends_a_finished_run(tmp_path: Path) -> None:
    cfg = TrainConfig(estimator="surrogate", steps=20, eval_every=10, val_size=16)
    Trainer(default_device("surrogate", 0), cfg, out_dir=tmp_path).run()
    with pytest.raises(UserError, match="already at step 20"):
        Trainer.resume(tmp_path, steps=10)
    result = Trainer.resume(tmp_path, steps=30).run()
    assert [r["step"] for r in result.history if r["val_acc"] is not None] == [0, 10, 20, 30]
    assert json.loads((tmp_path / "config.json").read_text())["config"]["steps"] == 30


@pytest.mark.parametrize("name", ["surrogate", "node", "param"])
def test_estimator_state_round_trips_through_a_checkpoint(tmp_path: Path, name: str) -> None:
    """Everything an estimator needs to continue is in state(): a restored copy estimates identically."""
    from pgt import checkpoint
    from pgt.estimators import make_estimator

    tr = Trainer(ToyReservoir(k=16, m=32), TrainConfig(estimator=name, steps=3, val_size=8))
    tr.run()
    checkpoint.save(tmp_path, {"e": tr.estimator.state()}, 0)
    copy = make_estimator(name, 99, **tr.config.estimator_options)
    copy.load_state(checkpoint.load(tmp_path)["e"])
    batch = tr._batch(np.random.default_rng(5))
    if name == "surrogate":
        copy.refit_every = tr.estimator.refit_every = 1  # type: ignore[attr-defined]
    la, ga, _ = tr.estimator.estimate(tr.model, batch)
    lb, gb, _ = copy.estimate(tr.model, batch)
    assert la == lb and all(np.array_equal(ga[k], gb[k]) for k in ga)


def test_no_pickle_in_host_code() -> None:
    host = Path(trainer_mod.__file__).parent
    uses = re.compile(r"\bimport pickle|\bpickle\.|allow_pickle=True")
    assert not [p.name for p in host.rglob("*.py") if uses.search(p.read_text())]


class VanishingDevice(ToyReservoir):
    def __init__(self, after: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.after = after

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.queries + x.shape[0] > self.after:
            raise ConnectionError("serial port closed")
        return super().forward(x)


def test_device_vanishing_keeps_a_checkpoint_at_the_last_completed_step(tmp_path: Path) -> None:
    cfg = TrainConfig(task="digits", estimator="surrogate", steps=30, eval_every=10, checkpoint_every=10,
                      model_options={})
    dev = VanishingDevice(after=1000, k=16, m=32)
    with pytest.raises(DeviceError, match=r"device query failed.*checkpoint at step \d+ .*pgt train --resume") as e:
        Trainer(dev, cfg, out_dir=tmp_path).run()
    tr = Trainer.resume(tmp_path, ToyReservoir(k=16, m=32))
    assert tr.step > 0 and f"checkpoint at step {tr.step} " in str(e.value)
    assert tr.run().history[-1]["step"] == 30


def test_a_device_lost_during_calibration_says_there_is_nothing_to_resume(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="before the first checkpoint"):
        Trainer(VanishingDevice(after=100, k=16, m=32), TrainConfig(), out_dir=tmp_path).run()


class RailedDevice(ToyReservoir):
    @property
    def info(self) -> dict[str, Any]:
        return {"kind": "toy", "volts_high": 3.3}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.minimum(super().forward(x) + 10.0, 3.3)


def test_bad_readings_and_bad_input_raise_clear_errors(tmp_path: Path) -> None:
    nan = from_callable(lambda u: np.full((u.shape[0], 8), np.nan), 4, 8, drive_low=0.0, drive_high=1.0)
    with pytest.raises(DeviceError, match="NaN"):
        Trainer(nan, TrainConfig(steps=1)).run()
    stuck = from_callable(lambda u: np.ones((u.shape[0], 8)), 4, 8, drive_low=0.0, drive_high=1.0)
    with pytest.raises(DeviceError, match="saturated"):
        Trainer(stuck, TrainConfig(steps=1)).run()
    with pytest.raises(DeviceError, match="3.3 V rail"):
        Trainer(RailedDevice(k=16, m=32), TrainConfig(steps=1)).run()
    with pytest.raises(UserError, match="task must be one of digits"):
        Trainer(ToyReservoir(), TrainConfig(task="mnist"))
    with pytest.raises(UserError, match="sequence task"):
        Trainer(ToyReservoir(), TrainConfig(task="digits-seq", model="mlp"))
    with pytest.raises(UserError, match="exact vjp"):
        Trainer(open_sim_board(seed=0, board="wide"), TrainConfig(estimator="backprop"))
    with pytest.raises(UserError, match="no checkpoint"):
        Trainer.resume(tmp_path / "nothing")
    wrong = trainer_mod.PhysicalLayer(ToyReservoir(k=6, m=10))
    with pytest.raises(UserError, match="inputs"):
        wrong.attach(ToyReservoir(k=5, m=10))


class FlakyLinkDevice(ToyReservoir):
    """A device whose link resends a request every 100 rows and reconnects once."""

    class Link:
        def __init__(self, dev: FlakyLinkDevice) -> None:
            self.dev = dev

        def counters(self) -> dict[str, Any]:
            q = self.dev.queries
            return {"retries": q // 100, "timeouts": q // 100, "reconnects": int(q > 700), "requests": q}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.link = FlakyLinkDevice.Link(self)
        self.device_resets = 0


def test_resends_and_reconnects_go_to_stderr_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = FlakyLinkDevice(k=16, m=32)
    Trainer(dev, TrainConfig(steps=20, eval_every=10, val_size=16), out_dir=tmp_path).run()
    err = capsys.readouterr().err
    assert "resends" in err and "1 reconnects" in err
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = recs[-2]  # the last validation record
    link = dev.link.counters()
    assert last["reconnects"] == 1 and 0 < last["retries"] <= link["retries"]


def test_resume_gives_the_device_its_averaging_back(tmp_path: Path) -> None:
    dev = default_device("surrogate", 0)
    dev.configure(n_avg=4)  # type: ignore[attr-defined]
    Trainer(dev, TrainConfig(steps=2, eval_every=1, val_size=8), out_dir=tmp_path).run()
    resumed = Trainer.resume(tmp_path, steps=3)  # a fresh sim:// client starts at the default n_avg
    assert resumed.reservoir.info["n_avg"] == 4


def test_the_test_set_is_used_once_at_the_end_of_the_run_not_of_each_chunk() -> None:
    tr = Trainer(open_sim_board(seed=0), TrainConfig(estimator="surrogate", steps=6, eval_every=2, val_size=8))
    rows = tr.physical.slots  # device rows per sample
    assert tr.run(steps=3).best_test_acc is None and tr.counters.eval == 3 * 8 * rows  # steps 0, 2 and 3
    result = tr.run()
    tests = [r for r in result.history if r["test_acc"] is not None]
    assert result.best_test_acc is not None and len(tests) == 1 and tests[0]["test_step"] == result.best_step
    n_rest = len(tr.task.y_val) - 8  # the final selection: 2 candidates on the rest of the validation set
    assert tr.counters.eval == (5 * 8 + 2 * n_rest + len(tr.task.y_test)) * rows


@pytest.mark.parametrize("noise_free", [False, True])
def test_resume_rebuilds_an_in_process_simulator_given_as_an_object(tmp_path: Path, noise_free: bool) -> None:
    """A run on open_sim_board(...) or reference_ring(...) resumes without being handed the device, bit-identically."""
    est = "backprop" if noise_free else "node"
    cfg = TrainConfig(estimator=est, steps=6, eval_every=2, checkpoint_every=2, val_size=8, seed=1)

    def device() -> Any:
        return reference_ring(seed=2, board="wide") if noise_free else open_sim_board(seed=2, board="wide")

    full = Trainer(device(), cfg).run()

    def killer(rec: dict[str, Any]) -> None:
        if rec["step"] == 4:
            raise Kill

    with pytest.raises(Kill):
        Trainer(device(), cfg, out_dir=tmp_path,
                on_eval=killer).run()
    resumed = Trainer.resume(tmp_path)
    assert resumed.step == 2 and resumed.reservoir.n_inputs == 16
    assert resumed.run().history == full.history
