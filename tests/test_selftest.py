"""``pgt selftest`` on simulated boards whose filter is known: the settle time it recommends against the model's
true one, the effective bits against the model's ADC, "settle too short" (and the trainer's memory check) at a
tenth of it, ``--write``; and its analysis on hand-made data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pgt import selftest
from pgt.cli import main as pgt_main
from pgt.sim.adc import ADC
from pgt.sim.boards import board_config, ring_params
from pgt.sim.ring import Ring, RingParams

SLOW = {"board": "rp2", "filter_tau_us": 300.0, "filter_order": 1}


def true_settle_us(cfg: dict, n_avg: int = 4) -> float:
    """The model's settle time: the smallest settle_us after which a row of selftest's step (10 % -> 90 % of
    a channel's range, the others at mid) reads within one noise sigma of its settled value, slowest channel."""
    params = ring_params(cfg, RingParams())
    ring = Ring(params.noise_free(), seed=0)
    adc = ADC(cfg, params.read_noise_V)
    lo, hi = np.array(cfg["limit_lo"]), np.array(cfg["limit_hi"])
    worst = 0.0
    for j in range(len(lo)):
        a, b = (lo + hi) // 2, (lo + hi) // 2
        a[j], b[j] = lo[j] + (hi[j] - lo[j]) // 10, lo[j] + 9 * (hi[j] - lo[j]) // 10
        t_lo, t_hi = 0.0, 50 * cfg["filter_tau_us"]
        for _ in range(60):
            mid = 0.5 * (t_lo + t_hi)
            too_early = step_error(ring, cfg, params, adc, j, a, b, mid, n_avg) > 1.0
            t_lo, t_hi = (mid, t_hi) if too_early else (t_lo, mid)
        worst = max(worst, t_hi)
    return worst


def step_error(ring: Ring, cfg: dict, params: RingParams, adc: ADC, j: int, a: np.ndarray, b: np.ndarray,
               settle_us: float, n_avg: int) -> float:
    """How far (in noise sigmas, worst tap and direction) a row of the a <-> b step of channel j reads from its
    settled value when sampled ``settle_us`` after the writes (first-order filter)."""
    per, off = cfg["dac_mA_per_code"], cfg["dac_mA_offset"]
    k = len(a)
    va, vb = (ring.forward((off + per * c)[None, :].astype(float))[0] for c in (a, b))
    sigma = np.sqrt(np.mean([adc.noise_V**2 / n_avg + (params.gain_noise_rel * (v - params.v_offset)) ** 2
                             for v in (va, vb)], axis=0))
    r = np.exp(-(settle_us + (k - j) * cfg["write_us"]) / cfg["filter_tau_us"])
    up = ring.forward((off + per * (b + (a - b) * r))[None, :])[0] - vb
    down = ring.forward((off + per * (a + (b - a) * r))[None, :])[0] - va
    return float(np.max(np.maximum(np.abs(up), np.abs(down)) / sigma))


def selftest_json(url: str, out: Path, *extra: str) -> dict:
    pgt_main(["selftest", url, "--out", str(out), *extra])
    return json.loads((out / "selftest.json").read_text())


def check(rep: dict, name: str) -> dict:
    return next(c for c in rep["checks"] if c["name"] == name)


def test_selftest_recommends_the_models_settle_time_and_its_effective_bits(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps(SLOW))
    cfg = board_config("rp2", config=str(board))
    rep = selftest_json(f"sim://?config={board}", tmp_path / "st")
    out = capsys.readouterr().out
    truth = true_settle_us(cfg)
    rec = check(rep, "settle")["values"]["recommended_settle_us"]
    assert abs(rec - truth) <= 0.2 * truth, (rec, truth)
    assert 1000 < truth < 3000  # (the board's default 1000 us is too short for this filter)
    assert check(rep, "settle")["verdict"] == "fail" and "FAIL  settle     settle too short" in out
    adc = ADC(cfg, RingParams().read_noise_V)
    sigma_codes = np.hypot(adc.noise_V, adc.lsb_V / np.sqrt(12)) / adc.scale.adc_V_per_code
    model_enob = np.log2(65535 / (np.sqrt(12) * sigma_codes))
    enob = check(rep, "noise")["values"]["enob"]
    assert len(enob) == 3 and np.all(np.abs(np.array(enob) - model_enob) < 0.5), (enob, model_enob)
    assert check(rep, "watchdog")["verdict"] == "pass"
    assert check(rep, "dnl")["verdict"] in ("warn", "pass")
    assert (tmp_path / "st" / "selftest.png").stat().st_size > 10_000


def test_a_tenth_of_the_settle_time_is_too_short_for_selftest_and_the_trainer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    board = tmp_path / "board.json"
    truth = true_settle_us(board_config("rp2", config=dict(SLOW)))
    board.write_text(json.dumps(dict(SLOW, settle_us=int(truth / 10))))
    url = f"sim://?config={board}"
    rep = selftest_json(url, tmp_path / "st", "--write")
    settle = check(rep, "settle")
    assert settle["verdict"] == "fail" and settle["line"].startswith("settle too short")
    assert rep["verdict"] == "fail"
    short = tmp_path / "short.json"
    short.write_text(json.dumps(dict(SLOW, settle_us=int(truth / 10))))
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="pgt"):
        assert pgt_main(["train", "--device", f"sim://?config={short}", "--estimator", "node", "--steps", "1",
                         "--eval-every", "1", "--val-size", "16", "--out", str(tmp_path / "runs")]) == 0
    assert "readings depend on the previous row" in caplog.text + capsys.readouterr().err
    # --write stored the measured settle time; the board then waits long enough
    written = json.loads(board.read_text())
    assert written["settle_us"] == written["settle_min_us"] == settle["values"]["recommended_settle_us"]
    again = selftest_json(url, tmp_path / "st2")
    assert check(again, "settle")["verdict"] == "pass"


def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert pgt_main(["selftest", "sim://", "--max-settle-us", "5"]) != 0
    assert pgt_main(["selftest", "sim://", "--write"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--max-settle-us" in err[0] and "sim://?config=FILE" in err[1]


def test_settle_time_interpolates_the_exponential_tail() -> None:
    t = np.array([0.0, 100.0, 200.0, 400.0, 800.0])
    r = 50.0 * np.exp(-t / 100.0)  # crosses one sigma at 100 ln 50 = 391 us
    assert selftest.settle_time(t, r) == pytest.approx(100 * np.log(50), rel=1e-6)
    assert selftest.settle_time(t, np.full(5, 0.5)) == 0.0
    assert selftest.settle_time(t, np.full(5, 3.0)) is None
    assert selftest.recommend_settle([391.2, 120.0]) == 400 and selftest.recommend_settle([391.2, None]) is None


def test_effective_bits_and_dnl_on_hand_made_readings() -> None:
    assert selftest.effective_bits(np.array([0.0]), 12)[0] == pytest.approx(np.log2(4095))  # its own step
    assert selftest.effective_bits(np.array([65535 / 2**8 / np.sqrt(12)]), 12)[0] == pytest.approx(8.0)
    rng = np.random.default_rng(0)
    raw = rng.uniform(100, 900, 200_000)
    raw = np.where((raw >= 601) & (raw < 602), 600.5, raw)  # code 601's inputs go to 600: 601 is missing ...
    raw = np.where((raw > 300) & (raw < 306), 300.4, raw)  # ... and 300 is six codes wide (301..305 missing)
    codes = (np.floor(raw).astype(int) << 4) | (np.floor(raw).astype(int) >> 8)
    result = selftest.dnl(codes, 12)
    assert result["missing"] == [301, 302, 303, 304, 305, 601] and result["spikes"] == [300]
    assert selftest.dnl_check(result).verdict == "fail"


def test_the_watchdog_verdict_believes_the_wire_not_the_firmware() -> None:
    hi = 2047 * 65535 / 4095
    ok = selftest.watchdog_check({"watchdog_trips": 0}, {"loopback": hi}, {"watchdog_trips": 1, "loopback": 3},
                                 0, 2047, 12, 1.0)
    assert ok.verdict == "pass"
    stuck = selftest.watchdog_check({"watchdog_trips": 0}, {"loopback": hi}, {"watchdog_trips": 1, "loopback": hi},
                                    0, 2047, 12, 1.0)
    assert stuck.verdict == "fail" and "NOT cut" in stuck.line
    no_wire = selftest.watchdog_check({"watchdog_trips": 0}, {"loopback": 5}, {"watchdog_trips": 1, "loopback": 5},
                                      0, 2047, 12, 1.0)
    assert no_wire.verdict == "fail" and "loopback wire" in no_wire.line
    blind = selftest.watchdog_check({"watchdog_trips": 0}, {}, {"watchdog_trips": 1}, 0, 2047, 12, 1.0)
    assert blind.verdict == "warn" and "firmware's word" in blind.line


def test_the_trainer_says_whose_settle_time_it_uses_and_refuses_one_below_the_floor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"board": "rp2", "settle_us": 4100, "settle_min_us": 4100}))
    args = ["train", "--estimator", "node", "--steps", "0", "--val-size", "16", "--out", str(tmp_path / "runs")]
    assert pgt_main([*args, "--device", f"sim://?config={board}"]) == 0
    assert "settle 4.1 ms (measured)" in capsys.readouterr().err
    assert pgt_main([*args, "--device", "sim://"]) == 0
    assert "settle 1.0 ms (default)" in capsys.readouterr().err
    assert pgt_main([*args, "--device", f"sim://?config={board}", "--settle-us", "100"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pgt train: error: settle_us 100 is below the board's settle_min_us 4100 (its drive has not "
                   "settled by then: rows would mix); use at least that, or run pgt selftest"]


def test_every_check_has_a_help_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        pgt_main(["selftest", "--help"])
    out = capsys.readouterr().out
    for name, line in selftest.CHECKS.items():
        assert f"  {name:10s} {line[:30]}" in out
