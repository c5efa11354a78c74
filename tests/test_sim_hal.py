"""SimHAL, its ADC and make_core: the simulated board's DAC/ADC from the firmware's board config, its block
interface, and the Core over it."""

from __future__ import annotations

import dataclasses
from array import array
from typing import Any

import msgpack
import numpy as np
import pytest

from pgt.firmware import board as fw_board
from pgt.firmware.core import Core
from pgt.sim import hal as hal_module
from pgt.sim.adc import ADC
from pgt.sim.boards import BoardConfigError, board_config, ring_params
from pgt.sim.device import make_core
from pgt.sim.hal import SimHAL
from pgt.sim.ring import Ring, RingParams

WIDE = board_config("wide")


def _ask(core: Core, req: dict[str, Any]) -> dict[str, Any]:
    reply: dict[str, Any] = msgpack.unpackb(core.handle(msgpack.packb(req, use_bin_type=True)), raw=False)
    return reply


def _codes(n: int, k: int = 16, seed: int = 0, hi: int = 4096) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, hi, size=(n, k)).astype("<u2")


def _quiet_ring(read_noise_V: float = 0.0, seed: int = 0) -> Ring:
    """The wide ring without gain noise, drift or hysteresis, with the given read noise."""
    return Ring(dataclasses.replace(ring_params(WIDE).noise_free(), read_noise_V=read_noise_V), seed=seed)


def test_info_is_the_board_configs() -> None:
    ring = Ring(seed=0)  # the default: the rp2 board's ring
    hal = SimHAL(ring)
    info = hal.info()
    rp2 = fw_board.resolve({"board": "rp2"})
    assert info["board"] == "sim-rp2-pwm" and int(info["uid"], 16) >= 0
    assert (info["k"], info["m"], info["dac_bits"], info["adc_bits"]) == (2, 3, 12, 12)
    assert info["limit_lo"] == rp2["limit_lo"] == [0, 0] and info["limit_hi"] == rp2["limit_hi"] == [2047, 2047]
    assert info["dac_mA_per_code"] == rp2["dac_mA_per_code"] and info["adc_V_per_code"] == rp2["adc_V_per_code"]
    assert info["dac_mA_offset"] + 2047 * info["dac_mA_per_code"] == pytest.approx(ring.drive_high[0])
    assert info["max_batch"] == 4096
    assert SimHAL(Ring(seed=1)).uid != hal.uid
    with pytest.raises(ValueError, match="the ring 2 and 3"):
        SimHAL(ring, cfg=WIDE)


def test_the_hal_leaves_the_ring_and_its_parameters_alone() -> None:
    ring = Ring(seed=0)
    before = ring.params
    hal = SimHAL(ring)
    assert ring.params is before and ring.params == RingParams()  # nothing replaced, nothing mutated
    assert hal.adc.noise_V > ring.params.read_noise_V > 0  # the detector's noise plus the converter's


def test_the_adc_models_noise_per_read_and_quantisation_once() -> None:
    cfg = board_config()
    adc = ADC(cfg, read_noise_V=0.0)
    # RP2040: 12 bits, 8.7 effective over 3.3 V -> 2.3 mV of noise per read beyond the quantisation step
    assert adc.noise_V == pytest.approx(3.3 / np.sqrt(12) * np.sqrt(2.0**-17.4 - 2.0**-24), rel=1e-9)
    assert 2.2e-3 < adc.noise_V < 2.4e-3
    rng = np.random.default_rng(0)
    reads = adc.read(np.full(3, 1.0), 20000, rng)  # single reads: what the virtual board's machine.ADC gives
    assert reads.shape == (20000, 3) and reads.dtype == np.uint16
    c12 = reads >> 4
    np.testing.assert_array_equal(reads, (c12 << 4) | (c12 >> 8))  # read_u16 of a 12-bit converter
    volts = adc.scale.codes_to_volts(reads)
    assert volts.std(axis=0) == pytest.approx(np.full(3, np.hypot(adc.noise_V, adc.lsb_V / np.sqrt(12))), rel=0.05)
    inl = (adc.transfer(adc._raw(np.array(1.0))) - adc._raw(np.array(1.0))) * adc.lsb_V  # RP2040-E11's bend
    assert volts.mean() == pytest.approx(1.0 + inl, abs=1e-4) and abs(inl) < 3 * adc.lsb_V
    avg = adc.scale.codes_to_volts(adc.average(np.full(20000, 1.0), 16, rng))  # the closed form of 16 averaged reads
    assert avg.std() == pytest.approx(adc.noise_V / 4, rel=0.1)
    quiet = ADC(cfg, read_noise_V=0.005, noise_free=True)
    assert quiet.noise_V == 0 and np.ptp(quiet.average(np.full(100, 1.0), 4, rng)) == 0


def test_a_block_is_one_vectorised_forward_call_with_the_right_shape() -> None:
    ring = _quiet_ring()
    calls: list[tuple[int, ...]] = []
    forward = ring.forward

    def spy(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return forward(x)

    ring.forward = spy  # type: ignore[method-assign]
    hal = SimHAL(ring, cfg=WIDE)
    codes = _codes(300)
    out = hal.apply_and_sample(array("H", codes.tobytes()), 300, 1000, 4)
    assert calls == [(300, 16)]
    samples = np.frombuffer(out, dtype="<u2")
    assert samples.size == 300 * 32
    assert np.all(hal.applied == codes[-1])
    assert hal.elapsed_us == round(300 * hal.filter.row_us(1000, 4, hal.m))
    hal.zero()
    assert np.all(hal.applied == hal.zero_code)


def test_codes_map_linearly_to_milliamps() -> None:
    hal = SimHAL(_quiet_ring(), cfg=WIDE)
    mA = hal.units.codes_to_mA(np.array([0, 2048, 4095]))
    assert mA[0] == pytest.approx(0.0) and mA[2] == pytest.approx(100.0)
    assert mA[1] == pytest.approx(2048 * 100.0 / 4095)


def test_averaging_lowers_the_read_noise_by_sqrt_n_avg() -> None:
    ring = _quiet_ring(read_noise_V=0.005)
    hal = SimHAL(ring, cfg=WIDE)
    drive = array("H", np.tile(_codes(1), (4000, 1)).tobytes())
    spreads = {}
    for n_avg in (1, 16):
        samples = np.frombuffer(hal.apply_and_sample(drive, 4000, 0, n_avg), dtype="<u2").reshape(4000, 32)
        volts = samples[10:] * hal.units.adc_V_per_code  # (the first rows: the drive filter still settles from zero)
        spreads[n_avg] = float(np.median(volts.std(axis=0)))
    per_read = np.hypot(0.005, ADC(WIDE).noise_V)
    assert spreads[1] == pytest.approx(per_read, rel=0.1)
    assert spreads[1] / spreads[16] == pytest.approx(4.0, rel=0.15)


def test_settle_sleep_waits_the_simulated_device_time(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(hal_module.time, "sleep", slept.append)
    drive = array("H", _codes(10).tobytes())
    SimHAL(_quiet_ring(), settle="skip", cfg=WIDE).apply_and_sample(drive, 10, 500, 2)
    assert slept == []
    hal = SimHAL(_quiet_ring(), settle="sleep", cfg=WIDE)
    hal.apply_and_sample(drive, 10, 500, 2)
    assert slept == [pytest.approx(hal.elapsed_us * 1e-6)]
    assert hal.elapsed_us == round(10 * hal.filter.row_us(500, 2, hal.m))
    with pytest.raises(ValueError):
        SimHAL(_quiet_ring(), settle="nap", cfg=WIDE)


def test_make_core_says_hello_as_the_default_rp2_board() -> None:
    core = make_core(seed=0, files={"pgt/firmware/core.py": "ab" * 32})
    hello = _ask(core, {"op": "hello", "seq": 1})
    rp2 = fw_board.resolve({"board": "rp2"})
    assert hello["op"] == "hello" and hello["board"] == "sim-rp2-pwm"
    assert (hello["k"], hello["m"]) == (len(rp2["drive_pins"]), len(rp2["adc_pins"])) == (2, 3)
    assert hello["limit_lo"] == rp2["limit_lo"] and hello["limit_hi"] == rp2["limit_hi"]
    assert hello["max_frame"] == 1 << 17 and hello["max_batch"] == 4096
    assert hello["files"] == {"pgt/firmware/core.py": "ab" * 32}
    assert _ask(make_core(level="B"), {"op": "hello", "seq": 1})["m"] == 3
    wide = _ask(make_core(board="wide"), {"op": "hello", "seq": 1})
    assert (wide["k"], wide["m"], wide["limit_hi"]) == (16, 32, [4095] * 16)
    esp = _ask(make_core(board="esp32"), {"op": "hello", "seq": 1})
    assert (esp["k"], esp["m"], esp["dac_bits"], esp["limit_hi"]) == (2, 2, 8, [127, 127])
    odd = _ask(make_core(channels=(4, 5)), {"op": "hello", "seq": 1})
    assert (odd["k"], odd["m"], odd["limit_hi"]) == (4, 5, [2047] * 4)


def test_board_configs_from_a_file_and_their_errors(tmp_path: Any) -> None:
    path = tmp_path / "board.json"
    path.write_text('{"adc_pins": [26, 27], "limit_hi": [1000, 3000]}')
    cfg = board_config(config=str(path))
    assert (len(cfg["drive_pins"]), len(cfg["adc_pins"]), cfg["limit_hi"]) == (2, 2, [1000, 3000])
    assert ring_params(cfg).drive_high_mA == pytest.approx(3000 * 100.0 / 4095)
    for kwargs, reason in (({"board": "pico9"}, "unknown board 'pico9'"),
                           ({"config": str(tmp_path / "none.json")}, "no such board config file"),
                           ({"channels": (0, 3)}, "channels 0,3"),
                           ({"board": "esp32", "config": str(path)}, "limit_hi value 1000 outside 0..255")):
        with pytest.raises(BoardConfigError, match=reason):
            board_config(**kwargs)  # type: ignore[arg-type]
    path.write_text('{"board": "rp2", "limit_hi": [5000, 5000]}')
    with pytest.raises(BoardConfigError, match="limit_hi value 5000 outside"):
        board_config(config=str(path))
    with pytest.raises(BoardConfigError, match="is for board 'rp2', not 'esp32'"):
        board_config("esp32", config=str(path))


def test_noise_free_core_matches_ring_forward_within_adc_quantisation() -> None:
    core = make_core(seed=5, noise_free=True, board="wide")
    codes = _codes(200, seed=1)
    reply = _ask(core, {"op": "run", "seq": 2, "n": 200, "k": 16, "drive": codes.tobytes()})
    assert reply["op"] == "run" and reply["clamped"] == 0
    volts = np.frombuffer(reply["samples"], dtype="<u2").reshape(200, 32) * core.info["adc_V_per_code"]
    ring = Ring(ring_params(WIDE).noise_free(), seed=5)
    expected = ring.forward(codes * core.info["dac_mA_per_code"] + core.info["dac_mA_offset"])
    lsb12 = 3.3 / 4095
    assert np.max(np.abs(volts - expected)) <= 0.5 * lsb12 + core.info["adc_V_per_code"]
    assert np.ptp(volts) > 0.1  # not a constant


def test_codes_beyond_the_limits_are_clamped_before_the_ring_sees_them() -> None:
    core = make_core(seed=2, noise_free=True)  # rp2: safe limit 2047
    codes = _codes(8, k=2, seed=3, hi=2048)
    wild = codes.copy()
    wild[:, 0] = 65535
    clamped = codes.copy()
    clamped[:, 0] = 2047
    a = _ask(core, {"op": "run", "seq": 1, "n": 8, "k": 2, "drive": wild.tobytes()})
    b = _ask(core, {"op": "run", "seq": 2, "n": 8, "k": 2, "drive": clamped.tobytes()})
    assert a["clamped"] == 8 and b["clamped"] == 0
    assert a["samples"] == b["samples"]


def test_the_same_seed_gives_the_same_device() -> None:
    codes = _codes(16, k=2, hi=2048).tobytes()
    replies = [_ask(make_core(seed=s), {"op": "run", "seq": 1, "n": 16, "k": 2, "drive": codes})["samples"]
               for s in (3, 3, 4)]
    assert replies[0] == replies[1] != replies[2]
