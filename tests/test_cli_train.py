"""``pgt train`` and ``pgt demo`` end to end (in-process simulated ring): outputs, resume, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgt.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err


def test_train_writes_metrics_checkpoint_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--steps", "20", "--eval-every", "10", "--checkpoint-every", "10", "--out", str(tmp_path)])
    assert rc == 0
    captured = capsys.readouterr()
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("digits-mlp-surrogate-s0-")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 10, 20]
    assert lines[-1]["queries"] > lines[-1]["training_queries"] > 20 * 32
    assert (run_dir / "checkpoint.pkl").exists() and (run_dir / "accuracy.png").stat().st_size > 1000
    assert json.loads((run_dir / "config.json").read_text())["config"]["seed"] == 0
    assert "queries" in captured.err and "device" in captured.err  # progress lines on stderr
    assert "best test accuracy" in captured.out

    # Resuming a finished run changes nothing.
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_train_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, ["train", "--task", "mnist", "--out", str(tmp_path)], "unknown task 'mnist'")
    _one_line_error(capsys, ["train", "--estimator", "magic", "--out", str(tmp_path)], "unknown estimator")
    _one_line_error(capsys, ["train", "--model", "cnn", "--out", str(tmp_path)], "unknown model")
    _one_line_error(capsys, ["train", "--task", "digits-seq", "--model", "mlp", "--out", str(tmp_path)],
                    "sequence task")
    _one_line_error(capsys, ["train", "--resume", str(tmp_path / "missing")], "no checkpoint")
    _one_line_error(capsys, ["train", "--task", "majority", "--d-model", "30", "--heads", "4"], "multiple of")
    _one_line_error(capsys, ["train", "--hidden", "3x"], "--hidden")
    _one_line_error(capsys, ["train", "-E", "colour=red", "--out", str(tmp_path)], "bad option for the surrogate")
    _one_line_error(capsys, ["train", "-E", "sigma"], "KEY=VALUE")
    _one_line_error(capsys, ["train", "--optimizer", "lbfgs", "--steps", "1", "--out", str(tmp_path)],
                    "unknown optimizer")
    assert main(["train", "--device", "bogus://nowhere", "--steps", "1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pgt train: error:")


def test_demo_prints_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "20", "--estimators", "surrogate", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "backprop" in out and "surrogate" in out and "train queries" in out
    assert list(tmp_path.glob("demo-*/accuracy.png"))
    _one_line_error(capsys, ["demo", "--estimators", "telepathy"], "--estimators")


def test_resume_reopens_the_recorded_device_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pgt.client as client
    from pgt.trainer import TrainConfig, Trainer

    def killer(rec: dict[str, object]) -> None:
        if rec["step"] == 15:
            raise KeyboardInterrupt

    cfg = TrainConfig(steps=20, eval_every=5, checkpoint_every=10)
    with pytest.raises(KeyboardInterrupt):
        Trainer(client.RingClient.open("sim://?seed=0"), cfg, out_dir=tmp_path, on_eval=killer).run()
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 0  # reopens sim://?seed=0 by itself
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 5, 10, 15, 20]
