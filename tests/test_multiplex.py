"""A ring layer wider than the device: ``slots`` device rows per sample through one k->m physical map.

The device here has the default rp2 board's shape (2 drives, 3 taps). Checked: the reshapes and their
gradients, that estimators work on rows (node perturbs rows, a sample's rows and their twins adjacent in one
block, the surrogate learns the single 2->3 map) and that the queries a run spends are exactly samples x slots x
(1 + perturbed rows) per step, plus the calibration the run books.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pgt.errors import DeviceError, UserError
from pgt.estimators import Backprop, NodePGT, SurrogatePGT
from pgt.layers import softmax_cross_entropy
from pgt.models import ReservoirMLP, ReservoirTransformer
from pgt.physical import PhysicalLayer, default_slots
from pgt.sim.reservoirs import RingReservoir
from pgt.sim.ring import Ring, RingParams
from pgt.trainer import TrainConfig, Trainer


def board_ring(seed: int = 0, noise_free: bool = False) -> RingReservoir:
    params = RingParams(n_inputs=2, n_outputs=3)
    return RingReservoir(Ring(params.noise_free() if noise_free else params, seed=seed))


class Recorder:
    """Wraps a reservoir and keeps every block it was sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.blocks: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.blocks.append(np.array(x))
        return self.inner.forward(x)


def test_default_slots_give_at_least_16_drive_units() -> None:
    assert [default_slots(k) for k in (1, 2, 3, 16, 32)] == [16, 8, 6, 1, 1]
    ph = PhysicalLayer(board_ring())
    assert (ph.k, ph.m, ph.slots, ph.width_in, ph.width_out) == (2, 3, 8, 16, 24)
    with pytest.raises(UserError, match="slots"):
        PhysicalLayer(board_ring(), slots=0)


def test_rows_round_trip() -> None:
    ph = PhysicalLayer(board_ring(), slots=4)
    a = np.arange(5 * 8, dtype=float).reshape(5, 8)
    rows = ph.to_rows(a)
    assert rows.shape == (20, 2)
    np.testing.assert_array_equal(rows[4:8].ravel(), a[1])  # sample 1's four rows, adjacent, in slot order
    z = np.arange(20 * 3, dtype=float).reshape(20, 3)
    np.testing.assert_array_equal(ph.from_rows(z, (5,))[1], z[4:8].ravel())
    np.testing.assert_array_equal(ph.from_rows_backward(ph.from_rows(z, (5,))), z)
    np.testing.assert_array_equal(ph.rows_backward(rows, (5,)), a)


def test_backprop_through_slots_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    ph = PhysicalLayer(board_ring(noise_free=True), slots=5)
    model = ReservoirMLP(12, 4, ph, rng)
    ph.fit_normalisation(rng, 128)
    x, labels = rng.normal(size=(16, 12)), rng.integers(0, 4, size=16)
    _, g, q = Backprop().estimate(model, (x, labels))
    assert q == 16 * 5

    def loss() -> float:
        a, pc = model.pre(x)
        logits, _ = model.post(ph.normalise(ph.query(ph.drive(a)[0])), pc)
        return softmax_cross_entropy(logits, labels)[0]

    p = model.params["front.0.W"]
    assert p.shape == (12, 10)
    for idx in [(0, 0), (3, 7), (11, 9)]:
        old = p[idx]
        p[idx] = old + 1e-6
        lp = loss()
        p[idx] = old - 1e-6
        lm = loss()
        p[idx] = old
        assert g["front.0.W"][idx] == pytest.approx((lp - lm) / 2e-6, rel=1e-3, abs=1e-7)


def test_node_perturbs_rows_with_twins_adjacent_in_one_block() -> None:
    rng = np.random.default_rng(1)
    dev = Recorder(board_ring(seed=1))
    ph = PhysicalLayer(dev, slots=4)
    model = ReservoirMLP(12, 4, ph, rng)
    ph.fit_normalisation(rng, 64)
    x, labels = rng.normal(size=(6, 12)), rng.integers(0, 4, size=6)
    dev.blocks.clear()
    _, _, q = NodePGT(2, sigma=0.01).estimate(model, (x, labels))
    assert len(dev.blocks) == 1 and q == 6 * 4 * 2
    u = ph.drive(model.pre(x)[0])[0].reshape(6, 4, 2)  # (sample, slot, drive)
    block = dev.blocks[0].reshape(6, 4, 2, 2)  # (sample, slot, +/-, drive)
    np.testing.assert_allclose(block.mean(axis=2), u, atol=1e-9)  # each row next to its twin, sample by sample
    assert np.all(np.abs(block[:, :, 0] - block[:, :, 1]) > 0)  # every row is perturbed


def test_surrogate_learns_the_single_device_map() -> None:
    rng = np.random.default_rng(2)
    ph = PhysicalLayer(board_ring(seed=2), slots=8)
    model = ReservoirMLP(12, 4, ph, rng)
    _, u, y = ph.fit_normalisation(rng, 256)
    est = SurrogatePGT(3)
    est.observe(u, y)
    x, labels = rng.normal(size=(10, 12)), rng.integers(0, 4, size=10)
    _, _, q = est.estimate(model, (x, labels))
    assert q == 10 * 8
    assert est.surrogate is not None and (est.surrogate.k, est.surrogate.m) == (2, 3)
    assert sum(len(b) for b in est._u) == ph.probe_queries(256) + 80  # every row seen, as (2,) -> (3,) pairs


@pytest.mark.parametrize(("estimator", "options", "rows_per_batch_row"), [
    ("node", {"two_sided": False, "directions": 2}, 3),
    ("node", {}, 2),
    ("surrogate", {}, 1),
])
def test_queries_are_samples_times_slots_times_rows_plus_calibration(
        estimator: str, options: dict[str, Any], rows_per_batch_row: int) -> None:
    dev = board_ring(seed=3)
    cfg = TrainConfig(estimator=estimator, steps=3, batch_size=8, probe=64, seed=3,
                      model_options={"slots": 4}, estimator_options=options)
    trainer = Trainer(dev, cfg)
    assert trainer.model.rows_per_sample == 4 and trainer.model.params["front.0.W"].shape == (64, 8)
    trainer.setup()
    est_cal = trainer.estimator.calibration
    assert est_cal is not None
    calibration = trainer.physical.probe_queries(cfg.probe) + est_cal.queries
    assert dev.queries == trainer.counters.calibration == calibration
    for _ in range(3):
        trainer.train_step()
    assert trainer.counters.train == 3 * 8 * 4 * rows_per_batch_row
    assert dev.queries == calibration + 3 * 8 * 4 * rows_per_batch_row


def test_transformer_sends_slots_rows_per_token() -> None:
    rng = np.random.default_rng(4)
    dev = board_ring(seed=4)
    ph = PhysicalLayer(dev, slots=3)
    model = ReservoirTransformer(5, 3, ph, rng, token_dim=4, d_model=8, heads=2)
    assert model.rows_per_sample == 15
    assert model.params["ff_in.1.W"].shape == (8, 6) and model.params["ff_out.W"].shape == (9, 8)
    ph.fit_normalisation(rng, 64)
    q0 = dev.queries
    _, g, q = NodePGT(5, sigma=0.02).estimate(model, (rng.normal(size=(7, 5, 4)), rng.integers(0, 3, size=7)))
    assert q == dev.queries - q0 == 7 * 5 * 3 * 2
    assert all(np.all(np.isfinite(v)) for v in g.values())


def test_slots_option_must_agree_with_the_physical_layer() -> None:
    from pgt.models import build_model
    from pgt.tasks import load_task

    ph = PhysicalLayer(board_ring(), slots=4)
    with pytest.raises(UserError, match="slots"):
        build_model("mlp", load_task("digits").info, ph, np.random.default_rng(0), slots=5)


# -- signal-to-noise: per-tap noise/span, ADC averaging within a budget, the header ----------------------
class AveragingBoard:
    """A 2->3 board with a ``configure(n_avg=...)`` like RingClient's; its read noise falls with n_avg or not."""

    def __init__(self, noise: tuple[float, ...], per_read: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_inputs, self.n_outputs = 2, 3
        self.W = rng.normal(size=(2, 3)) * 0.2
        self.noise = np.asarray(noise)
        self.per_read = per_read
        self.drive_low, self.drive_high = np.zeros(2), np.full(2, 10.0)
        self.queries, self.device_seconds, self.n_avg = 0, 0.0, 4
        self.rng = np.random.default_rng(seed + 1)

    @property
    def info(self) -> dict[str, Any]:
        return {"kind": "ring-client", "board": "rp2", "uid": "e6614c311b7e2a35", "n_avg": self.n_avg}

    def configure(self, n_avg: int) -> dict[str, Any]:
        if not 1 <= n_avg <= 1024:
            raise UserError("device refused config: n_avg must be 1..1024")
        self.n_avg = n_avg
        return {"n_avg": n_avg}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        self.device_seconds += len(x) * (100e-6 + 10e-6 * self.n_avg)
        scale = self.noise / np.sqrt(self.n_avg) if self.per_read else self.noise
        return np.tanh(x @ self.W - 1.0) + scale * self.rng.standard_normal((len(x), 3))


def test_noise_span_is_measured_per_tap() -> None:
    board = AveragingBoard((0.0, 0.02, 0.1), per_read=False)
    ph = PhysicalLayer(board)
    queries, _, _ = ph.fit_normalisation(np.random.default_rng(0), 256)
    assert queries == 256 + 64
    assert ph.noise_span[0] == 0.0
    np.testing.assert_allclose(ph.tap_noise[1:], [0.02, 0.1], rtol=0.25)
    np.testing.assert_allclose(ph.noise_span, ph.tap_noise / ph.tap_span)


def test_averaging_is_raised_when_it_lowers_the_noise() -> None:
    board = AveragingBoard((0.01, 0.3, 0.3), per_read=True)
    ph = PhysicalLayer(board)
    rng = np.random.default_rng(1)
    ph.fit_normalisation(rng, 256)
    poor = float(ph.noise_span.max())
    assert poor > 0.3
    notes = ph.tune_averaging(rng, 256)
    assert board.n_avg > 4 and ph.n_avg == board.n_avg
    assert float(ph.noise_span.max()) < poor
    assert ph.seconds_per_query <= 4.0 * (100e-6 + 40e-6) + 1e-12  # within the device-time budget
    assert notes[0].startswith("n_avg 4 -> 16")


def test_averaging_is_left_alone_when_the_noise_is_per_query() -> None:
    board = AveragingBoard((0.01, 0.3, 0.02), per_read=False)
    ph = PhysicalLayer(board)
    rng = np.random.default_rng(2)
    ph.fit_normalisation(rng, 256)
    span_before = ph.noise_span.copy()
    q0 = board.queries
    notes = ph.tune_averaging(rng, 256)
    assert board.n_avg == 4 and board.queries == q0 + ph.probe_queries(256)  # one try, counted, undone
    np.testing.assert_array_equal(ph.noise_span, span_before)
    assert "did not lower the repeat noise" in notes[0] and "per query" in notes[0]
    assert notes[-1].startswith("tap 1 is noisy")


def test_a_hopeless_device_is_refused_with_the_numbers() -> None:
    board = AveragingBoard((5.0, 5.0, 5.0), per_read=False)
    ph = PhysicalLayer(board)
    rng = np.random.default_rng(3)
    ph.fit_normalisation(rng, 256)
    with pytest.raises(DeviceError, match=r"too noisy to train on: repeat noise / response span per tap 0\.9"):
        ph.tune_averaging(rng, 256)


def test_a_run_prints_one_header_before_the_first_step() -> None:
    lines: list[str] = []
    cfg = TrainConfig(estimator="node", steps=1, batch_size=8, eval_every=1, probe=64)
    trainer = Trainer(AveragingBoard((0.001, 0.002, 0.002), per_read=True), cfg, log=lines.append)
    trainer.run()
    assert len(lines) == 2 and lines[1].startswith("final iterate: step ")  # the header, then the final choice
    head = lines[0]
    assert "rp2 uid e6614c311b7e2a35" in head and "k=2 drives, m=3 taps" in head
    assert "8 slots -> ring layer 16 drives / 24 readings" in head and "n_avg 4" in head
    assert f"{8 * 8 * 2} queries per step" in head
    assert "noise/span per tap " + " ".join(f"{v:.2f}" for v in trainer.physical.noise_span) in head


def test_pgt_train_takes_slots(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from pgt.cli import main

    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, from the slots declaration
        main(["train", "--slots", "0", "--steps", "1", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--slots" in err and not list(tmp_path.iterdir())
    assert main(["train", "--slots", "3", "--steps", "1", "--eval-every", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "3 slots -> ring layer" in err and "noise/span per tap" in err


@pytest.mark.parametrize("slots", [0, 4097, True, 2.0, "8"])
def test_the_layer_and_the_config_refuse_slots_in_the_same_words(slots: Any) -> None:
    """One declaration of ``slots`` (pgt.physical.SLOTS): the layer built by hand and a run's model options say
    the same thing about a bad value."""
    from pgt.config import check_field

    with pytest.raises(UserError) as by_layer:
        PhysicalLayer(board_ring(noise_free=True), slots=slots)
    with pytest.raises(UserError) as by_config:
        check_field("model_options", {"slots": slots})
    assert str(by_layer.value) == str(by_config.value)
    assert "slots must be an integer from 1 to 4,096" in str(by_layer.value)
    assert PhysicalLayer(board_ring(), slots=np.int64(4)).slots == 4
