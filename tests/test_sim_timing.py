"""Timing that matters in the simulator: the drive filter (a row sampled early reads a mix of the old and the
new drive), the call costs in ``t_us``, and the RP2040 ADC's DNL spikes (the MCP3208 has none)."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from pgt.sim.adc import ADC, RP2040_SPIKES
from pgt.sim.boards import board_config
from pgt.sim.device import make_core
from pgt.sim.drive_filter import DriveFilter, residue_bound, settle_time_us
from pgt.sim.hal import SimHAL
from pgt.sim.ring import Ring, RingParams


def hal_for(**cfg: object) -> SimHAL:
    board = board_config("rp2", config=dict(cfg))
    params = RingParams().noise_free()
    from pgt.sim.boards import ring_params

    return SimHAL(Ring(ring_params(board, params), seed=0), cfg=board)


def run(hal: SimHAL, codes: np.ndarray, settle_us: int, n_avg: int = 1) -> np.ndarray:
    out = hal.apply_and_sample(array("H", codes.astype("<u2").tobytes()), codes.shape[0], settle_us, n_avg)
    return np.frombuffer(out, dtype="<u2").reshape(codes.shape[0], hal.m).astype(float)


def test_a_row_sampled_before_the_drive_settled_reads_a_mix_of_old_and_new() -> None:
    hal = hal_for(filter_tau_us=400.0, filter_order=1, write_us=0.0, read_us=0.0)
    lo, hi = np.array([0, 0]), np.array([2000, 2000])
    settled = {name: run(hal, np.array([c] * 3), 20000)[-1] for name, c in (("lo", lo), ("hi", hi))}
    early = run(hal, np.array([lo, hi]), 400)[1]  # one time constant: 63 % of the way
    assert np.all(np.abs(early - settled["hi"]) > 5 * 16)  # far from the new drive's reading ...
    late = run(hal, np.array([lo, hi]), 8000)[1]
    assert np.abs(late - settled["hi"]).max() <= 16  # ... and a settled row is the drive's own
    # the filter itself: first order, one time constant, 1 - 1/e of the step
    f = DriveFilter(board_config("rp2", config={"filter_tau_us": 400.0, "filter_order": 1, "write_us": 0.0}))
    seen, _ = f.block(np.array([[0, 0], [1000, 1000]]), 400, 1, 3)
    assert seen[1] == pytest.approx(1000 * (1 - np.exp(-1)), rel=1e-6)


def test_second_order_settles_later_and_the_settle_time_is_the_residue_bound() -> None:
    assert settle_time_us(2, 47.0, 1 / 4096) > settle_time_us(1, 47.0, 1 / 4096)
    t = settle_time_us(2, 47.0, 1e-3)
    assert residue_bound(2, t, 47.0) == pytest.approx(1e-3, rel=1e-6)


def test_the_default_board_settles_within_the_default_settle_time_exactly() -> None:
    # the default demo trains as before: with 1000 us the default filter's residue is far below a code
    cfg = board_config("rp2")
    f = DriveFilter(cfg)
    assert residue_bound(f.order, 1000, f.tau) * f.full < 1e-3
    codes = np.random.default_rng(0).integers(0, 2048, (50, 2))
    seen, _ = f.block(codes, 1000, 4, 3)
    assert np.array_equal(seen, codes)


def test_t_us_counts_the_call_costs_and_the_settle_floor() -> None:
    core = make_core(noise_free=True)
    hal = core.hal
    cfg = hal.cfg
    run(hal, np.zeros((10, 2), dtype=int), 500, 4)
    assert hal.elapsed_us == round(10 * (2 * cfg["write_us"] + 500 + 4 * 3 * cfg["read_us"]))
    floor = hal_for(settle_min_us=900)
    run(floor, np.zeros((10, 2), dtype=int), 100, 1)
    assert floor.elapsed_us == round(10 * (2 * 10.0 + 900 + 3 * 10.0))  # the firmware waits at least the floor


def test_the_rp2040_adc_has_its_dnl_spikes_and_the_mcp3208_none() -> None:
    ramp = np.linspace(0.0, 3.3, 400001)
    rng = np.random.default_rng(0)
    rp2 = ADC(board_config("rp2"))
    codes = rp2.read(ramp, 1, rng)[0] >> 4
    hist = np.bincount(codes, minlength=4096)[1:-1].astype(float)
    dnl = hist / np.median(hist) - 1.0
    spikes = sorted(np.argsort(dnl)[-4:] + 1)
    assert spikes == list(RP2040_SPIKES) and np.all(dnl[np.array(spikes) - 1] > 6)
    assert np.all(hist > 0)  # no missing code
    mcp = ADC(board_config("rp2", config={"adc": "mcp3208"}))
    hist = np.bincount(mcp.read(ramp, 1, rng)[0] >> 4, minlength=4096)[1:-1].astype(float)
    assert np.abs(hist / np.median(hist) - 1.0).max() < 0.5  # (read noise only; a spike is +8)


def test_the_loopback_reads_drive_channel_zero_and_goes_to_zero_with_the_drive() -> None:
    core = make_core(noise_free=True)
    hal = core.hal
    run(hal, np.array([[2000, 0]]), 1000)
    high = hal.loopback()
    assert high == pytest.approx(2000 / 4095 * 65535, abs=40)
    hal.zero()
    import time

    time.sleep(0.01)
    assert hal.loopback() < 40
