"""The twin estimator: its phases, exact row counts, fallbacks with a reason, resume mid-phase."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hostile
import numpy as np
import pytest

from pgt.estimators.twin import PHASES, TwinPGT, latin_hypercube, mcnemar_gap
from pgt.trainer import TrainConfig, Trainer, open_device

Array = np.ndarray


class Switch(hostile.Box):
    """A clean box whose map changes for good after ``at`` rows (a part swapped, a cable moved)."""

    kind = "switch"

    def __init__(self, seed: int = 0, at: int = 1000) -> None:
        super().__init__(seed)
        self.at = at
        self.W2 = np.random.default_rng(seed + 7).normal(size=self.W.shape) * 1.5

    def mean(self, u: Array) -> Array:
        W = self.W2 if self.t >= self.at else self.W
        return 0.5 + 0.4 * np.tanh((u - 0.5) @ W + self.b)


def run(box: hostile.Box, steps: int = 60, out: Path | None = None, **options: Any) -> tuple[Trainer, Any]:
    cfg = TrainConfig(estimator="twin", steps=steps, eval_every=10, seed=0, probe=128, estimator_options=options)
    tr = Trainer(box.reservoir(), cfg, out_dir=out, log=lambda line: None)
    return tr, tr.run()


def test_latin_hypercube_fills_every_stratum_of_the_box() -> None:
    low, high = np.array([0.0, -2.0, 5.0]), np.array([1.0, 2.0, 6.0])
    x = latin_hypercube(np.random.default_rng(0), 40, low, high)
    assert x.shape == (40, 3) and np.all(x >= low) and np.all(x <= high)
    for j in range(3):
        strata = np.floor((x[:, j] - low[j]) / (high[j] - low[j]) * 40).astype(int)
        assert sorted(strata) == list(range(40))


def test_mcnemar_gap_counts_only_discordant_samples() -> None:
    dev = np.array([True] * 50 + [False] * 14)
    assert mcnemar_gap(dev, dev.copy()) == (0.0, 0.0)
    twin = np.ones(64, dtype=bool)  # the twin right on 14 samples the device got wrong
    gap, chance = mcnemar_gap(dev, twin)
    assert gap == pytest.approx(14 / 64) and chance == pytest.approx(2 * np.sqrt(14) / 64)


def test_phases_and_every_row_counted_on_a_clean_box(tmp_path: Path) -> None:
    box = hostile.Box(0)
    tr, result = run(box, steps=60, out=tmp_path, check_every=20, drift_every=25)
    est = tr.estimator
    assert isinstance(est, TwinPGT) and est.fallback is None and est.phase == "in_silico"
    assert est.heldout is not None and est.noise_floor is not None and est.heldout < 0.2
    slots, c = tr.physical.slots, tr.counters
    # calibration: the physical probe, the calibration block (24 rows x 11), the space-filling and active rows
    n_design, n_active = 128, 32 * slots
    assert est.calibration is not None and est.calibration.queries == 24 * 11 + n_design + n_active
    assert c.calibration == tr.physical.probe_queries(128) + est.calibration.queries
    assert c.train == 2 * 16  # in silico: only the drift watch's reference rows (steps 25 and 50)
    n_val, n_rest = 64, len(tr.task.y_val) - 64
    checks = [r["step"] for r in result.history if r["val_acc"] is not None]
    assert checks == [20, 40, 60]  # device validation at the checks and at the end only
    assert c.eval == (3 * n_val + 2 * n_rest + len(tr.task.y_test)) * slots  # checks, 2 candidates, test
    assert result.queries == tr.reservoir.queries == c.total
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["phase"] in PHASES for r in records)
    assert all(r["twin_val_acc"] is not None for r in records if r["test_acc"] is None)
    assert result.best_test_acc is not None and result.best_test_acc > 0.85
    assert "estimator twin: probe -> fit (held-out error" in tr.header()


def test_a_gap_between_twin_and_device_is_corrected_with_device_steps(caplog: pytest.LogCaptureFixture) -> None:
    box = Switch(0, at=700)  # after the probe: the twin learnt a map the device no longer has
    with caplog.at_level(logging.WARNING, logger="pgt"):
        tr, result = run(box, steps=80, check_every=20, drift_every=1000)
    assert "validation through the twin is" in caplog.text and "device-in-the-loop" in caplog.text
    phases = [r.get("phase") for r in result.history]
    assert "correct" in phases
    assert tr.counters.train >= 10 * 32 * tr.physical.slots  # device-in-the-loop steps were sent
    assert "in_silico" in phases[phases.index("correct"):]  # and the gap closed again
    assert result.best_test_acc is not None and result.best_test_acc > 0.8


def test_drift_is_seen_on_the_reference_rows_and_the_twin_is_probed_again(caplog: pytest.LogCaptureFixture) -> None:
    box = Switch(0, at=700)
    with caplog.at_level(logging.WARNING, logger="pgt"):
        tr, result = run(box, steps=40, check_every=100, drift_every=10)
    est = tr.estimator
    assert isinstance(est, TwinPGT) and est.drifts == 1 and est.fallback is None
    assert "reference rows moved" in caplog.text
    # the drift watch (4 x 16 rows) and one fresh probe block (128 space-filling + 32 x slots active rows)
    assert tr.counters.train == 4 * 16 + 128 + 32 * tr.physical.slots
    assert result.best_test_acc is not None and result.best_test_acc > 0.8


@pytest.mark.parametrize("box, options, words", [
    (hostile.Memory(0, m=0.2), {}, "remembers the previous row"),
    (hostile.Box(0, noise=0.4), {}, "held-out error"),
    (Switch(0, at=700), {"max_drifts": 1, "drift_every": 10}, "drifted 1 times"),
])
def test_a_twin_that_cannot_be_learnt_falls_back_with_a_reason(
    box: hostile.Box, options: dict[str, Any], words: str, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pgt"):
        tr, result = run(box, steps=40, **options)
    est = tr.estimator
    assert isinstance(est, TwinPGT) and est.fallback is not None and words in est.fallback
    lines = [r.message for r in caplog.records if "falling back" in r.message]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert result.history[-2]["fallback"] == est.fallback  # in the metrics too
    assert tr.counters.train >= 10 * 32 * tr.physical.slots  # device-in-the-loop steps from then on
    assert result.queries == tr.reservoir.queries


@pytest.mark.slow
@pytest.mark.parametrize("url, phase", [
    ("sim://?seed=4&board=wide", "in_silico"),
    ("sim://?seed=4&board=wide&model=B", "correct"),  # virtual-node memory: device-in-the-loop steps
])
def test_resume_mid_phase_is_bit_identical(tmp_path: Path, url: str, phase: str) -> None:
    """Killed after the checkpoint at step 20 (between two device checks): the resumed run is the same run."""
    cfg = TrainConfig(estimator="twin", steps=40, eval_every=10, checkpoint_every=10, seed=3, val_size=32,
                      estimator_options={"check_every": 15, "drift_every": 15})
    full = Trainer(open_device(url), cfg, out_dir=tmp_path / "full", log=lambda line: None).run()

    class Kill(Exception):
        pass

    def killer(rec: dict[str, Any]) -> None:
        if rec["step"] == 30:  # metrics written past the checkpoint at 20
            raise Kill

    with pytest.raises(Kill):
        Trainer(open_device(url), cfg, out_dir=tmp_path / "killed", log=lambda line: None, on_eval=killer).run()
    resumed_tr = Trainer.resume(tmp_path / "killed")
    assert resumed_tr.step == 20 and resumed_tr.estimator.phase == phase  # type: ignore[attr-defined]
    resumed = resumed_tr.run()
    assert resumed.history == full.history
    assert (tmp_path / "killed" / "metrics.jsonl").read_bytes() == (tmp_path / "full" / "metrics.jsonl").read_bytes()
    for k, v in full.best_params.items():
        np.testing.assert_array_equal(v, resumed.best_params[k])
