"""``pgt train`` and ``pgt demo`` end to end (in-process simulated ring): outputs, resume, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgt.cli import main


def _main(argv: list[str]) -> int:
    """``main`` with argparse's usage errors (exit status 2) returned rather than raised."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert _main(argv) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err


def test_train_writes_metrics_checkpoint_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--steps", "20", "--eval-every", "10", "--checkpoint-every", "10", "--out", str(tmp_path)])
    assert rc == 0
    captured = capsys.readouterr()
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("digits-mlp-twin-s0-")  # the default estimator
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 10, 20, 20]  # three validations, then the test
    assert [r["val_acc"] is not None for r in lines[:3]] == [False, False, True]  # through the twin until the end
    assert all(r["twin_val_acc"] is not None and r["phase"] == "in_silico" for r in lines[:3])
    assert lines[-1]["test_step"] == lines[-1]["best_step"] == 20 and lines[-1]["test_acc"] is not None
    assert lines[-1]["training_queries"] == 0  # in silico (drift watch every 50 steps)
    assert "estimator twin: probe -> fit" in captured.err and "[in_silico]" in captured.err
    assert (run_dir / "checkpoint.json").exists() and (run_dir / "accuracy.png").stat().st_size > 1000
    assert json.loads((run_dir / "config.json").read_text())["config"]["seed"] == 0
    assert "queries" in captured.err and "sim://" in captured.err  # progress lines on stderr
    assert "test accuracy at the best-validation step" in captured.out

    # Resuming a finished run changes nothing.
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_train_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, ["train", "--task", "mnist", "--out", str(tmp_path)],
                    "--task: must be one of digits, digits-seq, majority, narma10, mackey_glass, data, got 'mnist'")
    _one_line_error(capsys, ["train", "--estimator", "magic", "--out", str(tmp_path)],
                    "--estimator: must be one of backprop")
    _one_line_error(capsys, ["train", "--model", "cnn", "--out", str(tmp_path)],
                    "--model: must be one of mlp, transformer")
    _one_line_error(capsys, ["train", "--task", "digits-seq", "--model", "mlp", "--out", str(tmp_path)],
                    "sequence task")
    _one_line_error(capsys, ["train", "--resume", str(tmp_path / "missing")], "no checkpoint")
    _one_line_error(capsys, ["train", "--task", "majority", "--d-model", "30", "--heads", "4"], "multiple of")
    _one_line_error(capsys, ["train", "--hidden", "3x"], "--hidden")
    _one_line_error(capsys, ["train", "-E", "colour=red", "--out", str(tmp_path)], "unknown option 'colour'")
    _one_line_error(capsys, ["train", "-E", "sigma"], "KEY=VALUE")
    _one_line_error(capsys, ["train", "--optimizer", "lbfgs", "--steps", "1", "--out", str(tmp_path)],
                    "--optimizer: must be one of sgd, momentum, adam")
    assert main(["train", "--device", "bogus://nowhere", "--steps", "1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pgt train: error:")


def test_demo_prints_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "20", "--estimators", "twin,surrogate", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "backprop" in out and "surrogate" in out and "train queries" in out
    (twin,) = [line.split() for line in out.splitlines() if line.startswith("twin ")]
    assert twin[-4] == "0"  # train queries: none (20 steps in silico, before the first drift watch)
    assert list(tmp_path.glob("demo-*/accuracy.png"))
    _one_line_error(capsys, ["demo", "--estimators", "telepathy"], "--estimators")


def test_resume_reopens_the_recorded_device_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pgt.device import open_device
    from pgt.trainer import TrainConfig, Trainer

    def killer(rec: dict[str, object]) -> None:
        if rec["step"] == 15:
            raise KeyboardInterrupt

    cfg = TrainConfig(steps=20, eval_every=5, checkpoint_every=10)
    with pytest.raises(KeyboardInterrupt):
        Trainer(open_device("sim://?seed=0"), cfg, out_dir=tmp_path, on_eval=killer).run()
    assert main(["train", "--resume", str(tmp_path)]) == 0  # reopens sim://?seed=0 by itself
    assert "resumed from step 15" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 5, 10, 15, 20, 20]


@pytest.fixture()
def no_device(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way `pgt train` opens a device records the call and fails instead."""
    import pgt.device

    opened: list[str] = []

    def refuse(*args: object, **kw: object) -> None:
        opened.append(repr(args))
        raise AssertionError("a device was opened")

    monkeypatch.setattr(pgt.device, "open_device", refuse)
    monkeypatch.setattr(pgt.device, "default_device", refuse)
    return opened


BAD = [
    (["--seed", "-1"], "--seed: must be an integer from 0 to 4,294,967,295"),
    (["--batch-size", "2000"], "--batch-size must be between 1 and 1258"),
    (["--batch-size", "0"], "--batch-size: must be an integer from 1"),
    (["--out", "/proc/nope"], "--out /proc/nope"),
    (["--device", "sim://?model=Z"], "bad value for model"),
    (["--device", "sim://?colour=red"], "unknown simulator option 'colour'"),
    (["-E", "sigma=abc"], "unknown option 'sigma' for the twin"),
    (["-E", "sigma=0.1"], "valid -E keys for twin: probe_rows"),
    (["-E", "check_every=0"], "bad option check_every=0"),
    (["--estimator", "node", "-E", "sigma=abc"], "want number>0"),
    (["--estimator", "node", "-E", "sigma=nan"], "want number>0"),
    (["--estimator", "node", "-E", "sigma=-1"], "want number>0"),
    (["--estimator", "node", "-E", "dist=foo"], "rademacher|gaussian"),
    (["-E", "features=-1"], "bad option features=-1"),
    (["--lr", "-0.1"], "--lr: must be a finite number > 0"),
    (["--lr", "nan"], "--lr: must be a finite number > 0"),
    (["--lr", "inf"], "--lr: must be a finite number > 0"),
    (["--clip", "-1"], "--clip: must be a finite number > 0"),
    (["--clip", "nan"], "--clip: must be a finite number > 0"),
    (["--eval-every", "0"], "--eval-every"),
    (["--schedule", "warp"], "--schedule: must be one of constant, cosine"),
    (["--ring-seed", "-2"], "--ring-seed"),
    (["--heads", "2"], "--d-model and --heads set up the transformer"),
    (["--task", "majority", "--hidden", "8"], "--hidden sets up the mlp"),
    (["--steps", "-1"], "--steps: must be an integer from 0"),
    (["--device", "sim://", "--noise-free"], "put them in the URL"),
    (["--estimator", "param", "-E", "params=[]"], "bad option params=[]"),
    (["--slots", "0"], "--slots: must be an integer from 1 to 4,096, got '0'"),
    (["--slots", "10000"], "--slots: must be an integer from 1 to 4,096, got '10000'"),
    (["--task", "nope"], "--task: must be one of digits, digits-seq, majority, narma10, mackey_glass, data, got "
                         "'nope'"),
    (["--estimator", "backprop", "--device", "socket://127.0.0.1:1"], "leave out --device socket://127.0.0.1:1"),
    (["--estimator", "backprop", "--device", "sim://?noise_free=1"], "runs through the noise-free ring model"),
    (["--device", "/dev/pgt-stopped-sim-pty"], "no such port: /dev/pgt-stopped-sim-pty"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_invocations_fail_before_any_device_query(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_device: list[str],
) -> None:
    out = [] if "--out" in argv else ["--out", str(tmp_path)]
    assert _main(["train", *argv, *out]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) <= 2 and "Traceback" not in err and needle in err, err
    assert no_device == []


def test_resume_refuses_flags_that_would_change_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--steps", "4", "--eval-every", "2", "--val-size", "8", "--out", str(tmp_path),
                 "--quiet"]) == 0
    (run_dir,) = tmp_path.iterdir()
    capsys.readouterr()
    argv = ["train", "--resume", str(run_dir), "--steps", "710", "--lr", "5", "--estimator", "node"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--estimator, --lr would change it" in err, err
    assert main(["train", "--resume", str(run_dir), "--steps", "2"]) == 1
    assert "already at step 4" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--steps", "6", "--quiet"]) == 0
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[:5] == [0, 2, 4, 4, 6]  # (then a test record if the best-validation step moved)


def test_ctrl_c_writes_a_checkpoint_and_the_run_resumes_without_losing_a_step(tmp_path: Path) -> None:
    """A real SIGINT to a real `pgt train` process; the resumed run ends exactly as an uninterrupted one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "pgt.cli", "train", "--steps", "300", "--eval-every", "10", "--val-size", "8",
            "--checkpoint-every", "1000", "--seed", "2", "--estimator", "node"]
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "a")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        metrics = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "a").glob("*/metrics.jsonl"))
            if found and len(found[0].read_text().splitlines()) >= 3:  # past step 20, mid-run
                metrics = found[0]
                break
            time.sleep(0.05)
        assert metrics is not None and proc.poll() is None, "the run did not get going"
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    run_dir = metrics.parent
    stopped = json.loads((run_dir / "checkpoint.json").read_text())["state"]["step"]
    last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert 20 <= last_logged <= stopped < 300  # the checkpoint is the last completed step, not step 0
    assert f"resume with: pgt train --resume {run_dir}" in err and "Traceback" not in err
    assert f"stopping after step {stopped} " in err  # the notice named the step the checkpoint holds

    resumed = subprocess.run([sys.executable, "-m", "pgt.cli", "train", "--resume", str(run_dir)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {stopped}" in resumed.stderr
    full = subprocess.run([*argv, "--out", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 0, full.stderr
    (full_metrics,) = (tmp_path / "b").glob("*/metrics.jsonl")
    assert metrics.read_bytes() == full_metrics.read_bytes()  # no step lost, none repeated, bit-identical
