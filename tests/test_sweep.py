"""pgt sweep on a local Ray: results equal single runs, rigs are never shared, a lost rig fails only its trial,
Ctrl-C stops it and it resumes, a rig given as a relative path opens. (Input refused before Ray starts:
test_sweep_input.py; a killed worker resumes from its checkpoint: bench/sweep.py's quick run in test_bench.py.)"""

from __future__ import annotations

import csv
import logging
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from pgt.sim.reservoirs import reference_ring
from pgt.sim_board import open_sim_board
from pgt.sweeps import expand, format_table, sweep
from pgt.trainer import Trainer

TINY = {"steps": 12, "eval_every": 4, "checkpoint_every": 4, "probe": 64, "batch_size": 16}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (2 CPUs, three fake rigs declared), its files removed afterwards."""
    import ray

    tmp = tempfile.mkdtemp(prefix="pgtray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False, logging_level=logging.ERROR,
             resources={"rig:a": 1, "rig:b": 1, "rig:gone": 1})
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def _single(trial):
    device = reference_ring(seed=trial.ring_seed) if trial.noise_free else open_sim_board(seed=trial.ring_seed)
    return Trainer(device, trial.config).run()


@pytest.mark.slow
def test_sweep_equals_single_runs_with_the_same_seeds(local_ray, tmp_path):
    trials = expand(TINY, {"estimator": ["surrogate", "node"]}, seeds="0-1")
    lines: list[str] = []
    result = sweep(trials, out=tmp_path, name="s", progress=lines.append)
    assert [r.status for r in result.trials] == ["done"] * 4
    for trial, got in zip(trials, result.trials):
        want = _single(trial)
        assert got.trial == trial
        assert got.metrics["best_test_acc"] == want.best_test_acc
        assert got.metrics["final_val_acc"] == want.final_val_acc
        assert got.metrics["queries"] == want.queries
        keys = ("step", "val_acc", "test_acc", "queries")  # every evaluation, then the final test record
        assert [[h[k] for k in keys] for h in got.history] == [[h[k] for k in keys] for h in want.history]
    with open(tmp_path / "s" / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["estimator"], r["seed"], r["status"]) for r in table] == [
        ("surrogate", "0", "done"), ("surrogate", "1", "done"), ("node", "0", "done"), ("node", "1", "done")]
    assert float(table[0]["best_test_acc"]) == result.trials[0].metrics["best_test_acc"]
    assert (tmp_path / "s" / "accuracy.png").stat().st_size > 1000
    assert not list((tmp_path / "s").rglob("events.out.tfevents*"))  # no TensorBoard logger: one fsync per report
    assert "estimator=node" in format_table(result)
    assert any("step 12" in line for line in lines) and any("finished (4/4" in line for line in lines)


@pytest.mark.slow
def test_no_two_trials_hold_one_rig_at_once_and_a_vanished_rig_fails_only_its_trials(local_ray, tmp_path, dead_port):
    # Half a CPU per trial: four could run at once; only the rigs' resources keep a rig's trials apart.
    trials = expand(TINY | {"estimator": "node"}, {}, seeds="0-5")
    rigs = {"a": "sim://?seed=0", "b": "sim://?seed=1", "gone": f"socket://127.0.0.1:{dead_port}"}
    result = sweep(trials, rigs=rigs, out=tmp_path, cpus_per_trial=0.5, max_failures=0, progress=lambda line: None)
    assert [r.trial.rig for r in result.trials] == ["a", "b", "gone"] * 2
    assert [r.status for r in result.trials] == ["done", "done", "error"] * 2
    for rig in ("a", "b"):
        held = sorted((r.metrics["rig_open_t"], r.metrics["rig_close_t"]) for r in result.trials
                      if r.trial.rig == rig)
        assert len(held) == 2
        assert held[0][1] <= held[1][0], f"rig {rig} held by two trials at once: {held}"
    for bad in result.trials[2::3]:
        assert bad.error.startswith(f"DeviceError: cannot open socket://127.0.0.1:{dead_port}")
    assert "DeviceError: cannot open" in format_table(result)


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_cleanly_and_it_resumes(local_ray, tmp_path):
    address = local_ray.get_runtime_context().gcs_address  # the command joins this test module's Ray
    cmd = [sys.executable, "-m", "pgt.cli", "sweep", "--estimator", "node", "--seeds", "0-1", "--steps", "240",
           "--set", "eval_every=20", "--set", "checkpoint_every=40", "--address", address, "--out", str(tmp_path),
           "--name", "c"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first evaluation after the first checkpoint
            if ": step 60 " in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"interrupted; continue with pgt sweep --resume {tmp_path / 'c'}" in err
    assert "unfinished" in out and "Traceback" not in err
    result = sweep(resume=tmp_path / "c", progress=lambda line: None)
    assert [r.status for r in result.trials] == ["done", "done"]
    assert max(r.metrics["resumed_from"] for r in result.trials) >= 40  # from a checkpoint, not from scratch
    for got in result.trials:
        want = _single(got.trial)
        assert got.metrics["queries"] == want.queries
        assert [h["val_acc"] for h in got.history] == [h["val_acc"] for h in want.history]





@pytest.mark.slow
@pytest.mark.ray
def test_a_rig_given_as_a_relative_path_opens_as_pgt_train_would(local_ray, tmp_path):
    """``--rig a=port3`` with ``port3`` in the current directory (here a link to a served simulated board's pty):
    the trial opens that port, though Tune runs it in another directory."""
    from pgt.sim.device import make_core
    from pgt.sim.serve import PtyServer

    address = local_ray.get_runtime_context().gcs_address
    with PtyServer(make_core(seed=0)) as server:
        (tmp_path / "port3").symlink_to(server.start())
        proc = subprocess.run(
            [sys.executable, "-m", "pgt.cli", "sweep", "--rig", "a=port3", "--estimator", "node", "--steps", "4",
             "--set", "eval_every=2", "--set", "probe=64", "--address", address, "--out", "out", "--name", "r",
             "--quiet"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        runs = server.core.counts["runs"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "out" / "r" / "sweep.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["rig"], row["status"], row["error"]) == ("a", "done", "")
    assert runs > 0  # the trial's rows went through the served board


@pytest.mark.slow
def test_asha_stops_poor_trials_and_their_workers_take_the_next_trial(local_ray, tmp_path):
    """ASHA on the class Trainable: poor trials stop at a rung (their best validation so far kept, no test),
    the others finish with their test record; a stopped trial's worker is reset for the next (reuse_actors)."""
    trials = expand(TINY | {"steps": 40, "eval_every": 5, "checkpoint_every": 10}, {"estimator": ["node", "param"]},
                    seeds="0-1")
    result = sweep(trials, out=tmp_path, asha=True, grace=10, progress=lambda line: None)
    statuses = [r.status for r in result.trials]
    assert set(statuses) <= {"done", "stopped"} and "stopped" in statuses and "done" in statuses
    for r in result.trials:
        vals = [h["val_acc"] for h in r.history if h.get("val_acc") is not None]
        if r.status == "stopped":
            assert r.metrics["best_val_acc"] == max(vals)
            assert r.metrics["best_test_acc"] is None and all(h.get("test_acc") is None for h in r.history)
        else:  # finished: best_val_acc is the chosen iterate's on the whole validation set (pgt.selection)
            assert r.metrics["finished"] and r.history[-1]["test_acc"] == r.metrics["best_test_acc"]
            assert 0.0 < r.metrics["best_val_acc"] <= 1.0
    assert result.best().status == "done"
