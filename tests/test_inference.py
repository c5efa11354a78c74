"""A finished run is a model: ``pgt.load``, ``pgt predict``, ``pgt eval``, ``pgt show``; and the regression tasks.

Written from the README ("Using a trained model") and the issue: predict on the run's test split reproduces its
reported test accuracy within 1 point through the same simulated board; another board shape is refused in one
line; show opens no device; a model file from a newer pgt is refused in one line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import pgt
from pgt.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--steps", "40", "--eval-every", "20", "--out", str(out), "--quiet"]) == 0
    (run,) = out.iterdir()
    return run


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reg")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    np.savez(out / "reg.npz", x=x, y=np.sin(x[:, 0]) + x[:, 1] * x[:, 2])
    assert main(["train", "--data", str(out / "reg.npz"), "--steps", "20", "--eval-every", "10",
                 "--out", str(out / "runs"), "--quiet"]) == 0
    (run,) = (out / "runs").iterdir()
    return run


def _reported(run: Path, key: str = "test_acc") -> float:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float([r for r in recs if r.get(key) is not None][-1][key])


def test_predict_reproduces_the_test_accuracy_through_the_same_board(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir), "--device", "sim://?seed=0", "--split", "test", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    acc = np.mean([r["prediction"] == r["label"] for r in rows])
    assert abs(acc - _reported(run_dir)) <= 0.01
    assert f"accuracy {100 * acc:.1f}%" in err and "device rows" in err

    # the same through raw inputs in a file (pixels 0..16, scaled by the model) and the Python API
    from pgt.device import open_device
    from pgt.tasks import load_task

    task = load_task("digits")
    np.savez(tmp_path / "new.npz", x=(task.x_test * 16).astype(np.uint8), y=task.y_test)
    assert main(["predict", str(run_dir), "--data", str(tmp_path / "new.npz"), "--out", str(tmp_path / "b.csv")]) == 0
    assert f"accuracy {100 * acc:.1f}%" in capsys.readouterr().err
    model = pgt.load(run_dir)
    pred = model.predict(task.x_test * 16, open_device("sim://?seed=0"))
    assert abs(np.mean(pred == task.y_test) - _reported(run_dir)) <= 0.01


def test_predict_refuses_another_board_shape_in_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(run_dir), "--device", "sim://?board=wide", "--split", "test"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2 drives and 3 taps" in err and "16 drives and 32 taps" in err


def test_predict_warns_on_another_uid_and_recalibrates_with_counted_rows(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(run_dir), "--device", "sim://?seed=1", "--split", "val", "--recalibrate"]) == 0
    err = capsys.readouterr().err
    assert "warning: this device (uid" in err
    cal = int(err.split("calibration ")[-1].split(")")[0].replace(",", ""))
    assert cal > 0


def test_bad_predict_invocations_touch_no_device(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import pgt.device

    monkeypatch.setattr(pgt.device, "open_device", lambda *a, **k: pytest.fail("a device was opened"))
    np.savez(tmp_path / "wide.npz", x=np.zeros((5, 10)))
    (tmp_path / "model.json").write_text(json.dumps({"format": 99, "pgt_version": "9.0"}))
    for args, reason in [
        ([str(run_dir), "--data", str(tmp_path / "wide.npz")], "the model takes (64,)"),
        ([str(tmp_path / "nowhere"), "--split", "test"], "no such run directory"),
        ([str(tmp_path), "--split", "test"], "model format 99 (written by pgt 9.0)"),
        ([str(run_dir), "--split", "test", "--out", str(tmp_path / "no" / "p.csv")], "no such directory"),
        ([str(run_dir), "--split", "test", "--batch", "0"], "--batch must be >= 1"),
    ]:
        assert main(["predict", *args]) == 1
        err = capsys.readouterr().err.strip()
        assert reason in err and err.count("\n") == 0, err


def test_eval_and_show(run_dir: Path, regression_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(run_dir)]) == 0  # the URL the run recorded (sim://?seed=0)
    out = capsys.readouterr().out
    assert "test accuracy" in out and "at selection: test accuracy" in out and "change" in out
    assert main(["eval", str(regression_run)]) == 0
    out = capsys.readouterr().out
    now = float(out.split("test NMSE ")[1].split()[0])
    assert abs(now - _reported(regression_run, "test_nmse")) < 0.05 * _reported(regression_run, "test_nmse") + 0.01

    import pgt.device

    monkeypatch.setattr(pgt.device, "open_device", lambda *a, **k: pytest.fail("show opened a device"))
    png = tmp_path / "both.png"
    assert main(["show", str(run_dir), str(run_dir), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.count("  digits  ") == 2 and "sim-rp2-pwm (2x3)" in out and png.stat().st_size > 1000
    assert main(["show", str(regression_run)]) == 0
    assert "NMSE" in capsys.readouterr().out
    assert main(["show", str(run_dir), str(regression_run), "--plot", str(png)]) == 1
    assert "mix classification" in capsys.readouterr().err


def test_a_model_file_round_trips_and_describes_itself(run_dir: Path, tmp_path: Path) -> None:
    from pgt.device import open_device

    model = pgt.load(run_dir)
    text = model.describe()
    for part in ("digits", "board sim-rp2-pwm", "k=2 drives", "m=3 taps", "8 slots", "n_avg", "input scaling",
                 "pgt 0.1.0"):
        assert part in text, part
    d = model.description
    assert d["calibration"]["mu"] and d["task"]["x_scale"] == [1 / 16] and d["selection"]["test"] is not None
    model.save(tmp_path / "m")
    copy = pgt.load(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    x = np.random.default_rng(0).integers(0, 17, size=(20, 64))
    assert np.array_equal(copy.predict(x, open_device("sim://?seed=0")), model.predict(x, open_device("sim://?seed=0")))


def test_regression_predictions_are_in_the_targets_units(regression_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = regression_run.parent.parent / "reg.npz"
    assert main(["predict", str(regression_run), "--data", str(data), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    pred = np.array([float(r["prediction"]) for r in rows])
    y = np.array([float(r["label"]) for r in rows])
    e = np.mean((pred - y) ** 2) / np.var(y)
    assert f"NMSE {e:.4g}" in capsys.readouterr().err and e < 1.0


# -- the regression tasks and their figures ------------------------------------------------------------------
def test_narma10_is_the_textbook_system() -> None:
    from pgt.tasks import narma10_series

    u, y = narma10_series(500)
    assert 0.0 <= u.min() and u.max() <= 0.5
    t = np.arange(20, 499)
    want = 0.3 * y[t] + 0.05 * y[t] * np.array([y[i - 9 : i + 1].sum() for i in t]) + 1.5 * u[t - 9] * u[t] + 0.1
    assert np.allclose(y[t + 1], want)


def test_mackey_glass_is_the_chaotic_series() -> None:
    from pgt.tasks import mackey_glass_series

    s = mackey_glass_series(500)
    assert 0.2 < s.min() < 0.6 and 1.1 < s.max() < 1.5  # the familiar tau = 17 attractor range
    assert np.std(s[250:]) > 0.15  # not settled to a fixed point or a small cycle


def test_nmse_r2_and_the_regression_crossing() -> None:
    from pgt.progress import crossing, scores

    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    s = scores(y + 0.5, y, "mse")
    assert s["nmse"] == pytest.approx(0.25 / 1.25) and s["r2"] == pytest.approx(1 - 0.25 / 1.25)
    hist = [{"val_nmse": v, "queries": q} for v, q in ((0.9, 10), (0.3, 20), (0.5, 30), (0.2, 40), (0.1, 50))]
    assert crossing(hist, 0.3, key="val_nmse") == 40  # two consecutive evaluations at or below the threshold


@pytest.mark.slow
def test_bench_tasks_quick_prints_its_keys() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "tasks.py"), "--quick"], capture_output=True,
                          text=True, timeout=300, check=True)
    fig = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("narma10", "mackey_glass"):
        assert set(fig[name]) == {"ring_nmse", "linear_nmse", "random_tanh_nmse", "queries"}
        assert fig[name]["queries"] > 0 and all(fig[name][k] > 0 for k in ("ring_nmse", "linear_nmse"))
    assert fig["digits_from_npz"]["builtin_test_acc"] == fig["digits_from_npz"]["npz_test_acc"]
    assert "k=2 drives, m=3 taps, 8 slots" in proc.stderr


def test_hostile_predict_files_are_one_line(regression_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3)))
    (tmp_path / "text.csv").write_text("a,b,c,y\n1,2,3,big\n")
    np.savez(tmp_path / "nan.npz", x=np.array([[1.0, np.nan, 0.0]]))
    np.savez(tmp_path / "cube.npz", x=np.zeros((4, 3, 2)))
    for name, reason in (("empty.npz", "no inputs"), ("text.csv", "column 'y' is not numeric (value 'big')"),
                         ("nan.npz", "NaN"), ("cube.npz", "the model takes (3,)")):
        assert main(["predict", str(regression_run), "--data", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err.strip()
        assert reason in err and err.count("\n") == 0, err
