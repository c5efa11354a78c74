"""What a careless user types into ``pgt train`` / ``pgt probe`` (issue 18 rows 1, 2, 3, 8, 9, 10, 13, 15), run as a
user would: a real ``pgt`` process, real files, a bounded timeout. Each ends with one line and a non-zero exit,
or does the right thing; none traces back, writes outside ``--out`` or shares a run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 50
TINY = ["--steps", "2", "--eval-every", "1", "--val-size", "8", "--probe", "32", "--checkpoint-every", "1",
        "--quiet"]


def pgt(*argv: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgt.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=os.environ | {"PYTHONWARNINGS": "ignore"})


def refused(proc: subprocess.CompletedProcess[str], needle: str) -> str:
    """The one line of a refused command (asserted: non-zero exit, one line, no traceback, ``needle`` in it)."""
    err = proc.stderr.strip()
    assert proc.returncode not in (0, None), proc
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


@pytest.fixture()
def cwd(tmp_path: Path) -> Path:
    """An empty working directory; tests assert that nothing but --out appears in it."""
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def only(cwd: Path, *names: str) -> None:
    assert sorted(p.name for p in cwd.iterdir()) == sorted(names)


def run_once(cwd: Path, *extra: str) -> Path:
    proc = pgt("train", *TINY, "--out", "out", *extra, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / proc.stdout.split("; run ")[1].split("; plot")[0]


def steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- row 1: two runs started in the same second --------------------------------------------------------------

@pytest.mark.slow
def test_two_runs_started_together_never_share_a_run_directory(cwd: Path) -> None:
    argv = [sys.executable, "-m", "pgt.cli", "train", *TINY, "--out", "out"]
    procs = [subprocess.Popen([*argv, "--lr-rel", lr], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for lr in ("0.05", "0.2")]
    for p in procs:
        p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0
    dirs = sorted((cwd / "out").iterdir())
    assert len(dirs) == 2
    lrs = sorted(json.loads((d / "config.json").read_text())["config"]["lr_rel"] for d in dirs)
    assert lrs == [0.05, 0.2]
    for d in dirs:
        assert steps(d) == [0, 1, 2, 2]  # one run's records, not two interleaved
    only(cwd, "out")


def test_run_directories_are_claimed_atomically(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pgt.run_dir import new_run_dir

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: new_run_dir(tmp_path, "same"), range(32)))
    assert len(set(made)) == 32 and all(p.is_dir() for p in made)


# -- rows 2 and 3: resuming on another device ----------------------------------------------------------------

@pytest.mark.slow
def test_resume_on_another_simulator_seed_needs_device_changed(cwd: Path) -> None:
    run_dir = run_once(cwd, "--device", "sim://?seed=0")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    err = refused(pgt("train", "--resume", str(run_dir), "--device", "sim://?seed=7", "--steps", "4", cwd=cwd),
                  "not the device the run was trained on (uid ")
    assert "--device-changed" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # the run is untouched

    proc = pgt("train", "--resume", str(run_dir), "--device", "sim://?seed=7", "--steps", "4", "--device-changed",
               cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "device changed (uid " in proc.stderr and "recalibrating" in proc.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    moved = [r for r in records if r.get("device_changed")]
    assert len(moved) == 1 and moved[0]["step"] == 2 and moved[0]["val_acc"] is not None  # evaluated there first
    assert records[-1]["best_step"] >= 2  # the iterate is chosen on the new device
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["device"]["url"] == "sim://?seed=7" and doc["device_changes"][0]["step"] == 2
    only(cwd, "out")


def test_resume_on_a_device_of_another_shape_is_one_line(cwd: Path) -> None:
    run_dir = run_once(cwd)
    before = (run_dir / "checkpoint.json").read_bytes()
    for extra in ([], ["--device-changed"]):
        refused(pgt("train", "--resume", str(run_dir), "--device", "sim://?board=wide", *extra, cwd=cwd),
                "the run was trained on a 2-drive, 3-tap device; sim://?board=wide has 16 drives and 32 taps")
    assert (run_dir / "checkpoint.json").read_bytes() == before


# -- row 8: sizes ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "memory"), [
    (["--hidden", "100000000"], "TB"), (["--hidden", "1000000000000"], "PB"),
    (["--task", "majority", "--d-model", "4000000"], "PB"), (["--hidden", "32,300000000"], "TB"),
])
def test_a_model_too_big_for_memory_is_refused_at_once(cwd: Path, argv: list[str], memory: str) -> None:
    err = refused(pgt("train", *argv, "--out", "out", cwd=cwd, timeout=20), "of memory to train")
    assert f" {memory} of memory" in err and "pgt allows up to 4.29 GB" in err
    only(cwd)  # refused before --out is even made


@pytest.mark.parametrize("estimator", ["twin", "surrogate"])
def test_a_twin_too_big_for_memory_is_refused_before_any_device_row(cwd: Path, estimator: str) -> None:
    """Row 8's `-E features=100000000` (a 1 TB allocation after calibration before): refused at once, with the
    memory its largest allowed value takes."""
    err = refused(pgt("train", "--estimator", estimator, "-E", "features=100000000", "--out", "out", cwd=cwd,
                      timeout=20), "bad option features=100000000")
    assert "GB at 8192" in err
    only(cwd)


# -- row 9: --out that cannot be written ---------------------------------------------------------------------

@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
@pytest.mark.parametrize("command", [["train", *TINY], ["probe", "sim://?seed=0", "--points", "3"]])
def test_out_on_a_read_only_file_system_is_said_before_any_device_work(cwd: Path, command: list[str]) -> None:
    proc = pgt(*command, "--out", "/sys/kernel", cwd=cwd)
    refused(proc, "--out /sys/kernel: cannot write there")
    assert "probe: block" not in proc.stderr
    only(cwd)


def test_out_that_is_a_file_or_too_long(cwd: Path) -> None:
    (cwd / "afile").write_text("x")
    refused(pgt("train", *TINY, "--out", "afile", cwd=cwd), "--out afile: cannot write there")
    refused(pgt("train", *TINY, "--out", "x" * 300, cwd=cwd), "cannot write there (File name too long)")
    refused(pgt("probe", "sim://?seed=0", "--out", "afile", cwd=cwd), "--out afile: cannot write there")
    only(cwd, "afile")


# -- row 10: damaged files on --resume -------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_falls_back_to_the_previous_checkpoint_when_the_newest_is_damaged(cwd: Path) -> None:
    run_dir = run_once(cwd)
    newest = run_dir / json.loads((run_dir / "checkpoint.json").read_text())["arrays"]
    newest.write_bytes(newest.read_bytes()[:100])  # a truncated .npz
    (run_dir / "config.json").write_text("")  # and an empty config.json
    proc = pgt("train", "--resume", str(run_dir), "--steps", "3", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "using the previous checkpoint (step 2)" in proc.stderr and "Traceback" not in proc.stderr
    assert steps(run_dir)[-2:] == [3, 3] or steps(run_dir)[-1] == 3
    assert json.loads((run_dir / "config.json").read_text())["config"]["steps"] == 3  # rewritten whole


def test_resume_with_nothing_readable_is_one_line(cwd: Path) -> None:
    run_dir = run_once(cwd)
    for p in run_dir.glob("checkpoint*.json"):
        p.write_text("")
    refused(pgt("train", "--resume", str(run_dir), cwd=cwd), "the previous checkpoint cannot be read either")
    (cwd / "empty").mkdir()
    refused(pgt("train", "--resume", "empty", cwd=cwd), "no checkpoint in empty")


# -- row 13: empty values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "needle"), [
    (["--resume", ""], "--resume needs a run directory"),
    (["--estimator", ""], "--estimator: must be one of backprop, node, surrogate, param, twin, got ''"),
    (["--hidden", "32,,16"], "--hidden: takes comma-separated widths such as 32,16, got '32,,16'"),
    (["--hidden", ""], "--hidden: takes comma-separated widths"),
    (["--task", ""], "--task: must be one of"),
    (["--out", ""], "--out needs a directory"),
    (["--val-size", "-1"], "--val-size: must be an integer from 1"),
    (["--lr-rel", "0"], "--lr-rel: must be a finite number > 0, got '0'"),
    (["--probe", "1"], "--probe: must be an integer from 2 to 65,536, got '1'"),
    (["--device-changed"], "--device-changed goes with --resume"),
])
def test_empty_and_bad_values_are_refused(cwd: Path, argv: list[str], needle: str) -> None:
    refused(pgt("train", *argv, cwd=cwd, timeout=20), needle)
    only(cwd)


# -- row 15: every field a sweep can vary is a flag --------------------------------------------------------------

def test_train_takes_every_config_field_a_sweep_can_vary() -> None:
    import dataclasses

    from pgt.cli import build_parser
    from pgt.config import TrainConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]  # type: ignore[union-attr]
    flags = {s for a in sub._actions for s in a.option_strings}
    by_flag = {"model_options": "--hidden", "estimator_options": "--estimator-option"}
    missing = [f.name for f in dataclasses.fields(TrainConfig)
               if by_flag.get(f.name, "--" + f.name.replace("_", "-")) not in flags]
    assert missing == []


def test_a_sweeps_best_trial_reruns_with_pgt_train(cwd: Path) -> None:
    run_dir = run_once(cwd, "--lr-rel", "0.07", "--probe", "48", "--optimizer", "momentum")
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    assert (cfg["lr_rel"], cfg["probe"], cfg["optimizer"]) == (0.07, 48, "momentum")


# -- plots and progress ------------------------------------------------------------------------------------------

def test_accuracy_plot_puts_the_test_star_at_the_selected_iterate(tmp_path: Path) -> None:
    """Read the saved plot's data (its artists), not pixels: the star's x is the rows at the best-validation
    step's evaluation, not the rows after the test; a loss curve, the chance level and the validation size."""
    from pgt.plots import accuracy_figure
    from pgt.trainer import TrainConfig, Trainer, default_device

    tr = Trainer(default_device(), TrainConfig(steps=6, eval_every=2, val_size=16, probe=32), out_dir=tmp_path)
    tr.run()
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    fig = accuracy_figure({"surrogate": history}, val_size=16, chance=0.1)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines()}
    (test,) = [r for r in history if r["test_acc"] is not None]
    (selected,) = [r for r in history if r["step"] == test["test_step"] and r["val_acc"] is not None]
    assert list(lines["test:surrogate"].get_xdata()) == [selected["queries"]] != [test["queries"]]
    assert list(lines["test:surrogate"].get_ydata()) == [100 * test["test_acc"]]
    assert list(lines["loss:surrogate"].get_ydata()) == [r["loss"] for r in history if r["loss"] is not None]
    assert list(lines["chance"].get_ydata()) == [10.0, 10.0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("16 samples" in label for label in labels) and any("chance (10%)" in label for label in labels)
    (legend,) = fig.legends
    fig.canvas.draw()  # the legend sits below both panels: it hides no curve
    assert all(legend.get_window_extent().y1 <= ax.get_window_extent().y0 for ax in fig.axes)


def test_progress_lines_say_elapsed_and_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgt.progress import ProgressClock, eta_line
    from pgt.trainer import TrainConfig, Trainer, default_device

    assert eta_line(10, 40, "training", 65.0, 10, 50.0) == "step 10/40 (training): 1:05 elapsed, about 2:30 left"
    assert eta_line(0, 40, "calibration", 3.0, 0, 0.0).endswith("0:03 elapsed, estimating time left")
    tr = Trainer(default_device(), TrainConfig(steps=4, eval_every=2, val_size=8, probe=32))
    tr.clock = ProgressClock(every=0.0)  # (a slow device: every device call is past the interval)
    said: list[str] = []
    tr.on_progress = said.append
    tr.run()
    assert any("(calibration)" in s for s in said) and any("(training)" in s and " left" in s for s in said)
    assert all("elapsed" in s for s in said) and any(s.startswith("step 4/4") for s in said)
