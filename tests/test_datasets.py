"""Your own data: every format trains through ``pgt train --data``; every defect is one line, before any device.

The files are generated here (npz, csv, IDX plain and gzipped as MNIST ships them); the expectations come from
the README ("Your own data") and ``pgt train --help``.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from pgt.cli import main
from pgt.datasets import from_arrays, load_data, read_idx
from pgt.errors import UserError


def _idx(path: Path, a: np.ndarray) -> Path:
    """Write ``a`` (uint8) as an IDX file (big-endian header as in MNIST); ``.gz`` gzips it."""
    raw = bytes([0, 0, 0x08, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def _blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)) + 2.0 * np.eye(3, 6)[y]
    return x, y


@pytest.fixture
def no_device(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any attempt to open a device (a refused invocation must make none)."""
    opened: list[str] = []
    import pgt.device
    import pgt.trainer

    def refuse(*args: object, **kwargs: object) -> None:
        opened.append(str(args))
        raise AssertionError("a device was opened")

    for module in (pgt.device, pgt.trainer):
        monkeypatch.setattr(module, "open_device", refuse)
        monkeypatch.setattr(module, "default_device", refuse)
    return opened


def _train(tmp_path: Path, data: str, *extra: str) -> list[dict[str, object]]:
    out = tmp_path / "runs"
    assert main(["train", "--data", data, "--steps", "4", "--eval-every", "2", "--batch-size", "8", "--out", str(out),
                 "--quiet", *extra]) == 0
    (run,) = out.iterdir()
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _format_files(tmp_path: Path, fmt: str) -> str:
    x, y = _blobs()
    if fmt == "npz":
        np.savez(tmp_path / "blobs.npz", x=x, y=y)
        return str(tmp_path / "blobs.npz")
    if fmt == "csv":
        with open(tmp_path / "blobs.csv", "w") as f:
            f.write("a,b,c,d,e,f,kind\n" + "".join(",".join(map(str, r)) + f",{c}\n" for r, c in zip(x, y)))
        return str(tmp_path / "blobs.csv")
    images = np.random.default_rng(1).integers(0, 256, size=(60, 4, 5))
    labels = (images.reshape(60, -1).mean(axis=1) > 127).astype(np.uint8)
    ext = ".gz" if fmt == "idx.gz" else ""
    return f"{_idx(tmp_path / f'train-images-idx3-ubyte{ext}', images)}," \
           f"{_idx(tmp_path / f'train-labels-idx1-ubyte{ext}', labels)}"


@pytest.mark.parametrize("fmt", ["npz", "csv", "idx", "idx.gz"])
def test_each_format_trains(tmp_path: Path, fmt: str) -> None:
    recs = _train(tmp_path, _format_files(tmp_path, fmt))
    assert recs[-1]["test_acc"] is not None and 0.0 <= recs[-1]["test_acc"] <= 1.0


def test_float_targets_train_a_regression(tmp_path: Path) -> None:
    x, _ = _blobs()
    t = x[:, 0] * x[:, 1] + 0.1
    with open(tmp_path / "reg.csv", "w") as f:
        f.write("target,a,b,c,d,e,f\n" + "".join(f"{v}," + ",".join(map(str, r)) + "\n" for v, r in zip(t, x)))
    recs = _train(tmp_path, str(tmp_path / "reg.csv"), "--label", "target")
    assert recs[-1]["test_nmse"] > 0 and recs[-1]["test_r2"] == pytest.approx(1 - recs[-1]["test_nmse"])
    assert all(r["val_acc"] is None for r in recs)


def test_idx_reads_as_mnist_ships_it(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_idx(tmp_path / "a-idx3-ubyte.gz", a)), a)
    # a 16-bit IDX file is big-endian
    raw = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + struct.pack(">hh", 258, -2)
    (tmp_path / "s.idx").write_bytes(raw)
    assert read_idx(tmp_path / "s.idx").tolist() == [258, -2]


def _defects(tmp: Path) -> list[tuple[list[str], str]]:
    x, y = _blobs()
    cases: list[tuple[list[str], str]] = []

    def npz(name: str, **arrays: object) -> str:
        np.savez(tmp / name, **arrays)  # type: ignore[arg-type]
        return str(tmp / name)

    xn = x.copy()
    xn[5, 2] = np.nan
    cases.append(([npz("nan.npz", x=xn, y=y)], "NaN or inf (first at sample 5)"))
    xi = x.copy()
    xi[7, 0] = np.inf
    cases.append(([npz("inf.npz", x=xi, y=y)], "NaN or inf"))
    cases.append(([npz("len.npz", x=x, y=y[:-3])], "x has 120 samples but y has 117"))
    cases.append(([npz("one.npz", x=x, y=np.zeros(120, int))], "fewer than two classes"))
    cases.append(([npz("float.npz", x=x, y=y + 0.5), "--loss", "ce"], "labels are not integers"))
    cases.append(([npz("small.npz", x=x[:20], y=y[:20]), "--batch-size", "32"], "batch-size must be between 1 and 14"))
    cases.append(([npz("tiny.npz", x=x[:4], y=y[:4])], "too few"))
    cases.append(([npz("nox.npz", inputs=x, y=y)], "no array 'x'"))
    (tmp / "text.npz").write_text("a,b\n1,2\n")
    cases.append(([str(tmp / "text.npz")], "not an .npz file"))
    (tmp / "fake.csv.gz").write_text("a,b\n1,2\n")
    cases.append(([str(tmp / "fake.csv.gz")], "not a gzip file"))
    (tmp / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    cases.append(([str(tmp / "bin.csv")], "not a CSV text file"))
    (tmp / "ragged.csv").write_text("a,b,c\n1,2,0\n3,4\n5,6,1\n")
    cases.append(([str(tmp / "ragged.csv")], "ragged rows: line 3 has 2 fields"))
    (tmp / "ok.csv").write_text("a,b,c\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    cases.append(([str(tmp / "ok.csv"), "--label", "colour"], "no column 'colour'"))
    (tmp / "word.csv").write_text("a,b,c\n" + "".join(f"{i},x{i},{i % 2}\n" for i in range(40)))
    cases.append(([str(tmp / "word.csv")], "column 'b' is not numeric"))
    _idx(tmp / "i-idx3-ubyte", np.zeros((10, 2, 2)))
    (tmp / "l-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x0a" + bytes(7))
    cases.append(([f"{tmp / 'i-idx3-ubyte'},{tmp / 'l-idx1-ubyte'}"], "the file holds 7"))
    (tmp / "bad-idx1-ubyte").write_bytes(b"PK\x03\x04junk")
    cases.append(([f"{tmp / 'i-idx3-ubyte'},{tmp / 'bad-idx1-ubyte'}"], "not an IDX file"))
    cases.append(([str(tmp / "i-idx3-ubyte")], "images and labels together"))
    cases.append(([str(tmp / "missing.npz")], "no such file"))
    cases.append(([npz("seq.npz", x=x.reshape(120, 2, 3), y=y), "--model", "mlp"], "use --model transformer"))
    cases.append(([npz("obj.npz", x=np.array([[1.0, 2.0], [3.0]], dtype=object), y=[0, 1])], "Python objects"))
    return cases


def test_every_defect_is_one_line_before_any_device(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    no_device: list[str]) -> None:
    for args, reason in _defects(tmp_path):
        out = tmp_path / "runs"
        code = main(["train", "--data", *args, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and reason in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert not out.exists() or not any(out.iterdir())
    assert no_device == []


def test_split_rule_and_scaling_use_the_training_split_only() -> None:
    x, y = _blobs(200)
    x[:, 0] *= 1000.0
    a = from_arrays(x, y, scale="feature")
    b = from_arrays(x, y, scale="feature")
    assert np.array_equal(a.x_test, b.x_test)  # fixed by the split seed, not the run
    assert len(a.y_test) == 40 and len(a.y_val) == 20 and len(a.y_train) == 140
    assert np.allclose(a.x_train.mean(axis=0), 0.0) and np.allclose(a.x_train.std(axis=0), 1.0)
    assert not np.allclose(a.x_test.mean(axis=0), 0.0)  # test statistics were not used
    g = from_arrays(x, y)  # global: the training inputs' min..max -> 0..1
    assert g.x_train.min() == 0.0 and g.x_train.max() == 1.0
    other = from_arrays(x, y, split_seed=1)
    assert not np.array_equal(other.x_test, g.x_test)
    # ready-made validation/test sets are used as given
    t = from_arrays(x[:150], y[:150], x_test=x[150:], y_test=y[150:])
    assert len(t.y_test) == 50 and len(t.y_val) == 15


def test_labels_choose_the_loss_and_are_mapped_back() -> None:
    x, y = _blobs()
    names = np.array(["ant", "bee", "cat"])[y]
    t = from_arrays(x, names)
    assert t.info["loss"] == "ce" and t.info["classes"] == ["ant", "bee", "cat"] and t.y_train.dtype.kind == "i"
    r = from_arrays(x, x[:, 0] * 3.0 + 7.0)
    assert r.info["loss"] == "mse" and r.y_train.shape[1] == 1
    assert abs(r.y_train.mean()) < 1e-9 and r.y_train.std() == pytest.approx(1.0)  # standardised on train
    with pytest.raises(UserError, match="constant"):
        from_arrays(x, np.ones(len(x)))
    with pytest.raises(UserError, match="text"):
        from_arrays(x, names, loss="mse")


def test_digits_from_a_file_are_the_builtin_task(tmp_path: Path) -> None:
    from pgt.tasks import load_task

    with np.load(Path(__file__).resolve().parents[1] / "host" / "data" / "digits.npz") as d:
        np.savez(tmp_path / "d.npz", x=d["images"], y=d["labels"])
    a, b = load_task("digits"), load_data(str(tmp_path / "d.npz"))
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(a, part), getattr(b, part)), part


def test_a_data_run_resumes_from_its_file(tmp_path: Path) -> None:
    x, y = _blobs()
    np.savez(tmp_path / "b.npz", x=x, y=y)
    out = tmp_path / "runs"
    assert main(["train", "--data", str(tmp_path / "b.npz"), "--steps", "4", "--eval-every", "2", "--out", str(out),
                 "--quiet"]) == 0
    (run,) = out.iterdir()
    assert run.name.startswith("b-mlp-")
    assert main(["train", "--resume", str(run), "--steps", "6", "--quiet"]) == 0
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["step"] == 6 and any(r["test_acc"] is not None for r in recs)
    assert main(["train", "--resume", str(run), "--data", str(tmp_path / "b.npz")]) == 1


def test_sweep_plans_trials_on_your_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``pgt sweep --data``: every trial trains on the file (absolute path: trials run in their own
    directories); regression data and bad files are refused in one line before Ray or any device."""
    from pgt.cli import build_parser
    from pgt.commands.sweep import plan

    x, y = _blobs()
    np.savez(tmp_path / "b.npz", x=x, y=y)
    np.savez(tmp_path / "r.npz", x=x, y=x[:, 0] * 2.0)
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["sweep", "--data", "b.npz", "--seeds", "0-1", "--steps", "4"])
    trials, _, _ = plan(args)
    assert len(trials) == 2 and all(t.config.data == str(tmp_path / "b.npz") for t in trials)
    assert trials[0].config.task == "data" and trials[0].config.model == "mlp"
    for argv, reason in ((["--data", "r.npz"], "regression data (NMSE) is not swept"),
                         (["--data", "b.npz", "--task", "digits"], "alternatives"),
                         (["--data", "nope.csv"], "no such file")):
        assert main(["sweep", *argv]) == 1
        err = capsys.readouterr().err.strip()
        assert reason in err and err.count("\n") == 0, err


def test_demo_on_your_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs()
    np.savez(tmp_path / "b.npz", x=x, y=y)
    np.savez(tmp_path / "bad.npz", x=x, y=y[:5])
    assert main(["demo", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "d")]) == 1
    assert "x has 120 samples but y has 5" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main(["demo", "--data", str(tmp_path / "b.npz"), "--steps", "4", "--estimators", "surrogate", "--quiet",
                 "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "b.npz" in out and "backprop" in out and "surrogate" in out and "%" in out
