"""SimHAL and make_core: the simulated board's DAC/ADC, its block interface, and the Core over it."""

from __future__ import annotations

import dataclasses
from array import array
from typing import Any

import msgpack
import numpy as np
import pytest

from pgt.firmware.core import Core
from pgt.sim import hal as hal_module
from pgt.sim.device import make_core
from pgt.sim.hal import SimHAL
from pgt.sim.ring import Ring, RingParams


def _ask(core: Core, req: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = msgpack.unpackb(core.handle(msgpack.packb(req, use_bin_type=True)), raw=False)
    return reply


def _codes(n: int, k: int = 16, seed: int = 0, hi: int = 4096) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, hi, size=(n, k)).astype("<u2")


def _quiet_ring(read_noise_V: float = 0.0, seed: int = 0) -> Ring:
    """A ring without gain noise, drift or hysteresis, with the given read noise."""
    return Ring(dataclasses.replace(RingParams().noise_free(), read_noise_V=read_noise_V), seed=seed)


def test_info_describes_a_12_bit_board_over_the_ring_ranges() -> None:
    ring = Ring(seed=0)
    hal = SimHAL(ring)
    info = hal.info()
    assert info["board"] == "sim" and int(info["uid"], 16) >= 0
    assert (info["k"], info["m"], info["dac_bits"], info["adc_bits"]) == (16, 32, 12, 12)
    assert info["dac_mA_offset"] == pytest.approx(ring.drive_low[0])
    assert info["dac_mA_offset"] + 4095 * info["dac_mA_per_code"] == pytest.approx(ring.drive_high[0])
    assert info["adc_V_offset"] + 65535 * info["adc_V_per_code"] == pytest.approx(ring.volts_high)
    assert info["limit_lo"] == [0] * 16 and info["limit_hi"] == [4095] * 16
    assert info["max_batch"] == 4096
    assert SimHAL(Ring(seed=1)).uid != hal.uid


def test_the_hal_owns_read_noise_and_quantisation() -> None:
    ring = Ring(seed=0)
    noise = ring.params.read_noise_V
    hal = SimHAL(ring)
    assert hal.read_noise_V == noise > 0
    assert ring.params.read_noise_V == 0.0 and ring.params.adc_bits == 0  # not applied twice


def test_a_block_is_one_vectorised_forward_call_with_the_right_shape() -> None:
    ring = _quiet_ring()
    calls: list[tuple[int, ...]] = []
    forward = ring.forward

    def spy(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return forward(x)

    ring.forward = spy
    hal = SimHAL(ring)
    codes = _codes(300)
    out = hal.apply_and_sample(array("H", codes.tobytes()), 300, 1000, 4)
    assert calls == [(300, 16)]
    samples = np.frombuffer(out, dtype="<u2")
    assert samples.size == 300 * 32
    assert np.all(hal.applied == codes[-1])
    assert hal.elapsed_us == round(300 * (1000 + 4 * hal.read_us))
    hal.zero()
    assert np.all(hal.applied == hal.zero_code)


def test_codes_map_linearly_to_milliamps() -> None:
    hal = SimHAL(_quiet_ring())
    mA = hal.codes_to_mA(np.array([0, 2048, 4095]))
    assert mA[0] == pytest.approx(0.0) and mA[2] == pytest.approx(100.0)
    assert mA[1] == pytest.approx(2048 * 100.0 / 4095)


def test_averaging_lowers_the_read_noise_by_sqrt_n_avg() -> None:
    ring = _quiet_ring(read_noise_V=0.005)
    hal = SimHAL(ring)
    drive = array("H", np.tile(_codes(1), (4000, 1)).tobytes())
    spreads = {}
    for n_avg in (1, 16):
        samples = np.frombuffer(hal.apply_and_sample(drive, 4000, 0, n_avg), dtype="<u2").reshape(4000, 32)
        volts = samples * hal.adc_V_per_code
        spreads[n_avg] = float(np.median(volts.std(axis=0)))
    assert spreads[1] == pytest.approx(0.005, rel=0.1)
    assert spreads[1] / spreads[16] == pytest.approx(4.0, rel=0.15)


def test_settle_sleep_waits_the_simulated_device_time(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(hal_module.time, "sleep", slept.append)
    drive = array("H", _codes(10).tobytes())
    SimHAL(_quiet_ring(), settle="skip").apply_and_sample(drive, 10, 500, 2)
    assert slept == []
    hal = SimHAL(_quiet_ring(), settle="sleep")
    hal.apply_and_sample(drive, 10, 500, 2)
    assert slept == [pytest.approx(hal.elapsed_us * 1e-6)] and hal.elapsed_us == round(10 * (500 + 2 * hal.read_us))
    with pytest.raises(ValueError):
        SimHAL(_quiet_ring(), settle="nap")


def test_make_core_says_hello_as_a_sim_board() -> None:
    core = make_core(seed=0)
    hello = _ask(core, {"op": "hello", "seq": 1})
    assert hello["op"] == "hello" and hello["board"] == "sim" and (hello["k"], hello["m"]) == (16, 32)
    assert hello["max_frame"] == 1 << 17 and hello["max_batch"] == ((1 << 17) - 256) // 64
    assert "pgt/firmware/core.py" in hello["files"] and len(hello["files"]["pgt/firmware/core.py"]) == 64
    assert _ask(make_core(level="B"), {"op": "hello", "seq": 1})["m"] == RingParams().b_nodes


def test_noise_free_core_matches_ring_forward_within_adc_quantisation() -> None:
    core = make_core(seed=5, noise_free=True)
    codes = _codes(200, seed=1)
    reply = _ask(core, {"op": "run", "seq": 2, "n": 200, "k": 16, "drive": codes.tobytes()})
    assert reply["op"] == "run" and reply["clamped"] == 0
    volts = np.frombuffer(reply["samples"], dtype="<u2").reshape(200, 32) * core.info["adc_V_per_code"]
    ring = Ring(RingParams().noise_free(), seed=5)
    expected = ring.forward(codes * core.info["dac_mA_per_code"] + core.info["dac_mA_offset"])
    lsb12 = 3.3 / 4095
    assert np.max(np.abs(volts - expected)) <= 0.5 * lsb12 + core.info["adc_V_per_code"]
    assert np.ptp(volts) > 0.1  # not a constant


def test_codes_beyond_the_limits_are_clamped_before_the_ring_sees_them() -> None:
    core = make_core(seed=2, noise_free=True)
    codes = _codes(8, seed=3, hi=4096)
    wild = codes.copy()
    wild[:, 0] = 65535
    clamped = codes.copy()
    clamped[:, 0] = 4095
    a = _ask(core, {"op": "run", "seq": 1, "n": 8, "k": 16, "drive": wild.tobytes()})
    b = _ask(core, {"op": "run", "seq": 2, "n": 8, "k": 16, "drive": clamped.tobytes()})
    assert a["clamped"] == 8 and b["clamped"] == 0
    assert a["samples"] == b["samples"]


def test_the_same_seed_gives_the_same_device() -> None:
    codes = _codes(16).tobytes()
    replies = [_ask(make_core(seed=s), {"op": "run", "seq": 1, "n": 16, "k": 16, "drive": codes})["samples"]
               for s in (3, 3, 4)]
    assert replies[0] == replies[1] != replies[2]
