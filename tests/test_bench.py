"""Benches that cannot rot: every ``bench/*.py`` (found by glob, so a new one is covered too) runs with
``--quick`` in a subprocess, exits 0, and prints as its last line one JSON object naming itself, with the keys
its docstring and the README document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

# The keys each bench documents (its docstring, the README's Benchmarks section); a bench not listed here must
# still print a JSON object whose "bench" is its own name.
KEYS: dict[str, set[str]] = {
    "wire": {"k", "m", "blocks"},
    "sim": {"in_process", "tcp", "pty", "ratio_tcp", "ratio_pty", "target_met_1024"},
    "link": {"device", "forward_per_s", "ratio_vs_inproc", "wire_bytes_per_forward", "training_workload", "ok"},
    "firmware": {"n", "k", "m", "requests", "hot_us_per_sample_navg1", "ratio_navg1", "hot_us_per_sample_navg4",
                 "ratio_navg4", "bare_us_per_sample"},
    "sweep": {"device", "speedup", "per_trial_overhead_s", "identical_to_sequential", "resumed_after_kill",
              "cores_used_sequential", "cores_used_ray"},
    "queries": {"quick", "seeds"},
    "board": {"test_acc", "queries", "steps", "wall_s", "board", "k", "m", "slots"},
    "tasks": {"narma10", "mackey_glass", "digits_from_npz"},
}
# What a bench's quick run must find, not only print (bench/sweep.py: a sweep's trials equal the same trainings in
# one process, and a trial whose worker is SIGKILLed resumes from its checkpoint to the same history).
MUST: dict[str, dict[str, object]] = {"sweep": {"identical_to_sequential": True, "resumed_after_kill": True}}
# Benches whose quick mode still takes more than a few seconds (a Ray cluster, a MicroPython VM training run).
SLOW = {"sweep": [pytest.mark.slow(seconds=13), pytest.mark.ray], "queries": [pytest.mark.slow],
        "board": [pytest.mark.slow(seconds=15), pytest.mark.vm], "firmware": [pytest.mark.vm]}
BENCHES = sorted(p.stem for p in BENCH.glob("*.py"))
# Extra arguments beside --quick where even quick takes minutes (queries.py: one section, one seed, no Ray).
ARGS = {"queries": ["--sequential", "--sections", "board", "--seeds", "1"]}


def test_the_glob_finds_the_benches_the_readme_lists() -> None:
    readme = (BENCH.parent / "README.md").read_text()
    listed = {name for name in BENCHES if f"{name}.py`" in readme}
    assert {"wire", "sim", "link", "firmware", "sweep"} <= listed <= set(BENCHES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=SLOW.get(n, [])) for n in BENCHES])
def test_bench_quick_prints_its_json(name: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", *ARGS.get(name, [])],
                          capture_output=True, text=True, timeout=600, cwd=BENCH.parent)
    assert proc.returncode == 0, f"bench/{name}.py --quick failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"bench/{name}.py printed nothing"
    report = json.loads(lines[-1])
    assert isinstance(report, dict) and report.get("bench") == name
    missing = KEYS.get(name, set()) - set(report)
    assert not missing, f"bench/{name}.py no longer prints {sorted(missing)}"
    for key, want in MUST.get(name, {}).items():
        assert report[key] == want, f"bench/{name}.py --quick: {key} is {report[key]!r}\n{proc.stdout[-2000:]}"
