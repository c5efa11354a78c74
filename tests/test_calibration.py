"""Calibration that cannot collapse: readout resolution, slope, memory, and a perturbation size kept usable.

The devices are the small hostile black boxes of ``tests/support/hostile.py`` (4 drives, 8 taps) and the
simulated ring with an 8-bit ADC and no noise. "True" gradients come from the smooth map under the spoiling
(the boxes' ``vjp``, the ring's noise-free mean map).
"""

from __future__ import annotations

import logging
from typing import Any

import hostile
import numpy as np
import pytest
from test_estimators import cosine, flat

from pgt.calibration import measure_response, quantum
from pgt.estimators import Backprop, NodePGT, ParameterPGT, measure_noise
from pgt.models import HybridModel, ReservoirMLP
from pgt.physical import PhysicalLayer
from pgt.sim.reservoirs import reference_ring
from pgt.sim_board import open_sim_board
from pgt.tasks import load_task

DIGITS = load_task("digits")
Batch = tuple[np.ndarray, np.ndarray]


def setup(res: Any, vjp: Any = None, n: int = 64, seed: int = 0) -> tuple[HybridModel, Batch]:
    """A digits MLP in front of ``res``; ``vjp`` (if given) is the true gradient Backprop uses."""
    if vjp is not None:
        res.vjp = vjp
    rng = np.random.default_rng(seed)
    ph = PhysicalLayer(res, slots=1)
    model = ReservoirMLP(64, 10, ph, rng)
    ph.fit_normalisation(rng, 256)
    return model, (DIGITS.x_train[:n], DIGITS.y_train[:n])


def quantised_box() -> tuple[HybridModel, Batch]:
    box = hostile.Quantised(0, bits=8)
    return setup(box.reservoir(), box.vjp)


def mean_cosine(est: NodePGT, model: HybridModel, batch: Batch, n: int = 10) -> float:
    g = flat(Backprop().estimate(model, batch)[1], "front")
    return float(np.mean([cosine(flat(est.estimate(model, batch)[1], "front"), g) for _ in range(n)]))


def test_quantum_finds_the_adc_step_and_nothing_in_a_noisy_readout() -> None:
    rng = np.random.default_rng(0)
    y = rng.uniform(0.1, 0.9, size=(300, 3))
    lsb = 3.3 / 255
    codes = np.round(y * 3.3 / lsb) * lsb
    np.testing.assert_allclose(quantum(codes), lsb, rtol=1e-6)
    # Readings that skip every other code still give one step.
    np.testing.assert_allclose(quantum(np.round(y * 40) * 2 * lsb + lsb * (np.arange(300) % 2)[:, None]), lsb,
                               rtol=1e-6)
    assert np.all(quantum(y) == 0.0)
    assert np.all(quantum(np.ones((10, 2))) == 0.0)


def test_noise_free_quantised_device_gets_a_perturbation_above_its_resolution() -> None:
    model, batch = quantised_box()
    cal = measure_noise(model, batch[0], np.random.default_rng(1))
    assert cal.noise < 1e-12 and cal.resolution > 0.0 and cal.response > 0.0
    est = NodePGT(2)
    est.fit_to_device(model, batch)
    assert est.sigma is not None and est.sigma > 10 * est.sigma_range[0]
    auto = mean_cosine(est, model, batch)
    collapsed = mean_cosine(NodePGT(2, sigma=1e-3), model, batch)  # the old floor, chosen by zero noise
    assert auto > 0.5
    assert auto > collapsed + 0.2


def test_noise_free_ring_with_an_8_bit_adc_does_not_collapse() -> None:
    device = open_sim_board(seed=1, noise_free=True, board="wide", config={"adc_bits": 8, "adc_enob": 8})
    model, batch = setup(device, reference_ring(seed=1, board="wide").vjp)
    est = NodePGT(2, directions=4)
    cal = est.fit_to_device(model, batch)
    assert cal.resolution > 0.0 and cal.noise < 1e-12
    auto = mean_cosine(est, model, batch)
    assert auto > 0.5
    assert auto > mean_cosine(NodePGT(2, sigma=1e-3, directions=4), model, batch) + 0.2  # measured: 0.62, 0.37


def test_zero_differences_enlarge_a_calibrated_sigma(caplog: pytest.LogCaptureFixture) -> None:
    model, batch = quantised_box()
    est = NodePGT(3)
    est.fit_to_device(model, batch)
    chosen = est.sigma
    assert chosen is not None
    est.sigma = 1e-4  # as if calibration had trusted the zero noise
    with caplog.at_level(logging.WARNING, logger="pgt"):
        for _ in range(60):
            est.estimate(model, batch)
    assert est.raised >= 3 and est.sigma >= 0.3 * chosen
    assert "exactly zero" in caplog.text
    assert est.diagnostics()["sigma_raised"] == est.raised


def test_a_hand_set_sigma_is_kept_and_the_user_warned(caplog: pytest.LogCaptureFixture) -> None:
    model, batch = quantised_box()
    est = NodePGT(3, sigma=1e-4)
    with caplog.at_level(logging.WARNING, logger="pgt"):
        est.fit_to_device(model, batch)
        for _ in range(3):
            est.estimate(model, batch)
    assert est.sigma == 1e-4 and est.raised == 0
    assert "resolution floor" in caplog.text and "set by hand" in caplog.text


def test_memory_is_detected_and_sized(caplog: pytest.LogCaptureFixture) -> None:
    m = 0.3
    box = hostile.Memory(0, m=m)
    model, batch = setup(box.reservoir())
    with caplog.at_level(logging.WARNING, logger="pgt"):
        cal = measure_noise(model, batch[0], np.random.default_rng(1))
    # (1 - m) y_t + m y_{t-1}: the predecessor's own reading carries (1 - m) of its change.
    assert cal.memory_detected and cal.memory == pytest.approx(m / (1 - m), rel=0.3)
    assert "previous row" in caplog.text and cal.notes
    for kind in ("clean", "quantised", "drifting", "saturating"):
        model, batch = setup(hostile.BOXES[kind](0).reservoir())
        cal = measure_noise(model, batch[0], np.random.default_rng(1))
        assert not cal.memory_detected, kind
        assert cal.memory < 0.05, kind


def test_the_default_ring_shows_its_adc_and_no_memory() -> None:
    model, batch = setup(open_sim_board(seed=0))
    cal = measure_response(model.physical, model.pre(batch[0])[0][:24], np.random.default_rng(0))
    lsb = 3.3 / 65535  # the mean of n_avg = 4 noisy 12-bit reads on the read_u16 scale: one 16-bit code
    assert cal.resolution == pytest.approx(lsb * np.sqrt(np.mean(model.physical.sd**-2.0)), rel=0.05)
    assert cal.noise > cal.resolution and not cal.memory_detected


def test_memory_sends_perturbed_rows_in_separate_blocks() -> None:
    m = 0.4
    box = hostile.Memory(0, m=m)
    # The gradient of the current reading with respect to the current drive: (1 - m) J.
    model, batch = setup(box.reservoir(), lambda u, gy: (1 - m) * box.vjp(u, gy))
    g = flat(Backprop().estimate(model, batch)[1], "front")

    def averaged(est: NodePGT) -> tuple[float, float]:
        total = sum(flat(est.estimate(model, batch)[1], "front") for _ in range(150)) / 150
        return cosine(total, g), float(np.linalg.norm(total) / np.linalg.norm(g))

    auto = NodePGT(4)
    auto.fit_to_device(model, batch)
    assert auto.blocks and auto.diagnostics()["order"] == "blocks"
    interleaved = NodePGT(4, sigma=auto.sigma, order="interleaved")
    cos_b, ratio_b = averaged(auto)
    cos_i, ratio_i = averaged(interleaved)
    assert cos_b > 0.97 and ratio_b == pytest.approx(1.0, abs=0.1)
    assert 1.0 - cos_b < (1.0 - cos_i) / 3.0
    param = ParameterPGT(5)
    param.fit_to_device(model, batch)
    assert param.blocks


def test_param_sigma_respects_the_resolution_floor_and_is_chosen_again_in_the_noise() -> None:
    model, batch = quantised_box()
    est = ParameterPGT(6, window=5)
    cal = est.fit_to_device(model, batch)
    from pgt.calibration import sigma_floor
    from pgt.estimators.param import relative_floor

    assert cal is est.calibration
    floor = relative_floor(model, batch[0], est._names(model, batch[0]), sigma_floor(cal), np.random.default_rng(0),
                           est.dist)
    assert est.sigma is not None and est.sigma >= floor > 0.0
    assert cal.queries > 24 * 11  # the loss-noise repeats are counted with the calibration
    # A noisy device, and a sigma far too small for it: after `window` steps it is chosen again.
    box = hostile.Box(0, noise=0.02)
    model, batch = setup(box.reservoir())
    est = ParameterPGT(7, window=20)
    est.fit_to_device(model, batch)
    good = est.sigma
    assert good is not None
    est.sigma = good / 100
    spent = [est.estimate(model, batch)[2] for _ in range(20)]
    assert est.raised == 1 and est.sigma > good / 5
    assert spent[-1] > spent[0]  # the re-calibration's queries are counted in that step


def test_param_sigma_grows_to_where_the_loss_stops_being_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    import pgt.estimators.param as estimators

    box = hostile.Box(0, noise=0.02)
    model, batch = setup(box.reservoir(), box.vjp)
    wide = (1e-3, 4.0)
    auto = ParameterPGT(1, sigma_range=wide)
    cal = auto.fit_to_device(model, batch)
    assert auto.sigma is not None and cal.sigma == auto.sigma
    monkeypatch.setattr(estimators, "LINEAR", 9.0)  # no size counts as linear: the noise-limited size
    noisy = ParameterPGT(1, sigma_range=wide)
    noisy.fit_to_device(model, batch)
    assert noisy.sigma is not None
    # Above the size the noise asks for, below the top of the range: stopped by the curvature of the loss.
    assert 2 * noisy.sigma < auto.sigma < wide[1] / 2
    monkeypatch.undo()
    # The top of sigma_range still bounds it.
    capped = ParameterPGT(1, sigma_range=(1e-3, 0.1))
    capped.fit_to_device(model, batch)
    assert capped.sigma is not None and capped.sigma <= 0.1
