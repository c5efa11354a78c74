"""pgt sweep's input, checked before Ray starts: every mistake a user can type is one line on stderr, a
non-zero exit and no traceback, with nothing written (issue 18's sweep rows, run as a user would); the spec
file and random search plan the trials they describe; without Ray the command says how to install it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgt import cli


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "foo"], "estimator must be one of backprop, node, surrogate, param, got 'foo'"),
    (["--set", "lr_rel=a,b"], "lr_rel must be a finite number > 0 or null"),
    (["--set", "nope=1"], "unknown config field 'nope'"),
    (["--seeds", "3-x"], "seeds are like 0-7"),
    (["--rig", "a"], "--rig takes NAME=URL"),
    (["--task", "digits-seq", "--model", "mlp"], "is a sequence task"),
    (["--max-failures", "-1"], "--max-failures must be >= 0"),
    (["missing.toml"], "cannot read missing.toml"),
    (["--resume", "."], "is not a sweep directory"),
])
def test_bad_input_is_one_line_before_ray_starts(argv, message, capsys, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started on bad input"))
    assert cli.main(["sweep", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pgt sweep: error: ") and message in err[0]


def test_spec_file_and_random_search_make_the_planned_trials(tmp_path):
    from pgt.commands.sweep import add_arguments, plan

    spec = tmp_path / "spec.toml"
    spec.write_text('seeds = "0-2"\nsamples = 2\n[base]\nsteps = 40\n[grid]\nlr_rel = [0.01, 0.03, 0.1]\n'
                    'estimator = ["node", "surrogate"]\n[rigs]\nr1 = "sim://"\n')
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    trials, rigs, options = plan(parser.parse_args([str(spec), "--set", "batch_size=8,16"]))
    assert rigs == {"r1": "sim://"} and options == {"asha": False, "grace": None, "max_failures": 2}
    assert len(trials) == 2 * 3  # two random points of the 3 x 2 x 2 grid, three seeds each
    assert {t.config.steps for t in trials} == {40} and {t.rig for t in trials} == {"r1"}
    assert len({(t.config.lr_rel, t.config.estimator, t.config.batch_size) for t in trials}) == 2
    assert [t.config.seed for t in trials] == [0, 1, 2, 0, 1, 2]


def test_without_ray_the_command_says_how_to_install_it(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert cli.main(["sweep", "--seeds", "0-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'pgt[ray]'" in err[0]


# -- issue 18: what a user types is refused in one line before Ray starts (run as a user would) ---------------

# The pgt CLI as a user runs it, except that Ray is a stand-in that ends the process with code 99 when anything
# of it is used (Ray not running is all it may say): a refusal must come before Ray is even imported.
NO_RAY = ("import sys, types, importlib.machinery\n"
          "class NoRay(types.ModuleType):\n"
          "    def is_initialized(self):\n"
          "        return False\n"
          "    def __getattr__(self, name):\n"
          "        print('ray.' + name + ' was used', file=sys.stderr)\n"
          "        raise SystemExit(99)\n"
          "sys.modules['ray'] = NoRay('ray')\n"
          "sys.modules['ray'].__spec__ = importlib.machinery.ModuleSpec('ray', None)\n"
          "from pgt.cli import main\n"
          "sys.exit(main(sys.argv[1:]))\n")


def _refused(argv: list[str], cwd: os.PathLike[str] | str, timeout: float = 30) -> str:
    """Run ``pgt sweep ARGV`` in a subprocess; it must exit 1 with one line on stderr and no traceback."""
    proc = subprocess.run([sys.executable, "-c", NO_RAY, "sweep", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, (proc.returncode, proc.stderr[-2000:])
    assert err[0].startswith("pgt sweep: error: ") and "Traceback" not in proc.stderr
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["--cpus", "0"], "--cpus must be at least 1, got 0"),
    (["--cpus-per-trial", "64"], f"each trial asks for 64 CPUs; the local Ray has {os.cpu_count()}"),
    (["--cpus", "2", "--cpus-per-trial", "3"], "each trial asks for 3 CPUs; the local Ray has 2"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
    (["--out", "afile"], "--out afile is not a directory"),
    (["--name", "n" * 300], "the sweep name is 300 characters long; at most 100"),
    (["--name", "../../escape"], "the sweep name is one directory name"),
    (["--name", "a/b"], "the sweep name is one directory name"),
    (["--rig", "a=sim://", "--rig", "a=sim://?seed=1"], "rig 'a' is given twice"),
    (["--seeds", "0-100000"], "a sweep runs at most 10,000 trials"),
    (["--seeds", "0-99", "--set", "lr_rel=" + ",".join(str(i / 100) for i in range(1, 102))],
     "10,100 trials (101 grid points x 100 seeds)"),
    (["spec.yaml"], "spec.yaml: unsupported spec format '.yaml': use a .toml or .json file"),
    (["--resume", ""], "--resume needs the sweep's directory"),
    (["--resume", "empty"], "empty/sweep.json is not a pgt sweep spec"),
    (["--resume", "empty", "--steps", "5"], "--resume continues the sweep as it was planned: --steps cannot change"),
    (["--resume", "empty", "--estimator", "node"], "--estimator cannot change it"),
])
def test_sweep_input_errors_are_one_line_before_ray_starts(argv, message, tmp_path):
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "spec.yaml").write_text("base:\n  steps: 4\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sweep.json").write_text("{}")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert message in _refused(argv, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, inside --out or outside it
    assert not list((tmp_path / "empty").iterdir())[1:]


def test_an_address_where_no_cluster_answers_fails_within_seconds(tmp_path, dead_port):
    import time

    t0 = time.monotonic()
    line = _refused(["--address", f"127.0.0.1:{dead_port}"], tmp_path)
    assert time.monotonic() - t0 < 20
    assert f"no Ray cluster answers at 127.0.0.1:{dead_port}: Connection refused" in line
    assert "HOST:PORT of a Ray head" in _refused(["--address", "nowhere"], tmp_path)



def test_an_empty_sweep_plot_says_so_on_a_percent_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep whose one trial reported nothing: '1 trial' (not '1 trials'), a 0-100 % axis, and a note."""
    import matplotlib.figure

    from pgt.config import TrainConfig
    from pgt.sweeps.report import plot
    from pgt.sweeps.spec import SweepResult, Trial, TrialResult

    figures: list[matplotlib.figure.Figure] = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k))[1])
    plot(SweepResult([TrialResult(Trial(TrainConfig(steps=1)), "error")], tmp_path / "sweep-x"), tmp_path / "a.png")
    ax = figures[0].axes[0]
    assert ax.get_title() == "sweep sweep-x: 1 trial"
    assert ax.get_ylim() == (0.0, 100.0)
    assert [t.get_text() for t in ax.texts] == ["no trial reported a validation accuracy"]
    assert (tmp_path / "a.png").stat().st_size > 1000
