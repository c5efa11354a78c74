"""N identical simulator trainings through ``pgt.sweep`` on the local Ray against the same trainings one after
another in this process, in one run; then a trial whose worker is killed mid-run must finish from its checkpoint.

- ``speedup``: sequential wall time / the sweep's wall time (Ray already running: a cluster is started once;
  ``ray_init_s`` is reported apart, and ``speedup_incl_ray_start`` counts it too).
- ``per_trial_overhead_s``: worker-seconds a trial costs on Ray beyond its in-process time,
  ``(sweep wall x parallel trials - sequential wall) / N``.
- ``identical_to_sequential``: every trial's history and query counts equal the in-process run's.
- ``cpu_s_per_trial_*``: CPU seconds a trial costs in this process and in a Ray worker — what the speedup
  would follow on an idle machine; ``load_average_1min`` (before, after) says how shared the machine was.
- ``cores_used_*``: CPU seconds spent per wall second in each phase (sequential: this process; Ray: the
  workers during their trials plus this process, which runs Tune's controller). The speedup cannot exceed
  their ratio: on a machine shared with other busy sessions the kernel's fair share per session (Linux
  autogroup) caps what the sweep gets, however many workers it runs.
- ``resumed_after_kill``: the worker of one trial is SIGKILLed after its first checkpoint; the trial must be
  restarted from that checkpoint (not from scratch) in a new process and end with exactly the history and
  query counts of an uninterrupted run — no training step counted twice.

Device: the in-process simulated ring that ``pgt train`` uses by default (its shape is printed).
Each trial is long enough (6000 steps, about 7 CPU seconds) that the sweep's fixed cost — Tune starting two
trial actors, each importing Ray Tune, about 2 s — is small against the work it parallelises.

Usage: ``python bench/sweep.py [--trials N] [--steps S] [--quick]`` (quick: 2 trials of 120 steps, a checkpoint every
40: the plumbing, not a speedup worth quoting). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def same(a: Any, b: Any) -> bool:
    """A sweep trial's result equals an in-process Result (history and counts)."""
    keys = ("step", "val_acc", "test_acc", "training_queries", "queries")
    return (a.status == "done" and a.metrics["queries"] == b.queries
            and a.metrics["training_queries"] == b.training_queries
            and [[h[k] for k in keys] for h in a.history] == [[h[k] for k in keys] for h in b.history])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="identical trials (default 8)")
    parser.add_argument("--steps", type=int, default=6000, help="steps per trial (default 6000)")
    parser.add_argument("--quick", action="store_true",
                        help="2 trials of 120 steps, a checkpoint every 40 (the kill after the first)")
    args = parser.parse_args()
    checkpoint_every, eval_every = (40, 20) if args.quick else (400, 100)
    if args.quick:
        args.trials, args.steps = 2, 120
    if args.trials < 1 or args.steps <= checkpoint_every + eval_every:
        parser.error(f"--trials must be >= 1 and --steps > {checkpoint_every + eval_every} (the kill comes after "
                     f"the step-{checkpoint_every} checkpoint)")

    import ray
    from ray import tune

    from pgt.sim.reservoirs import reference_ring
    from pgt.sim_board import open_sim_board
    from pgt.sweeps import chunk_ends, expand, sweep
    from pgt.trainer import Trainer

    base = {"estimator": "node", "steps": args.steps, "eval_every": eval_every, "checkpoint_every": checkpoint_every}
    trials = expand(base, {}, seeds=list(range(args.trials)))
    device = open_sim_board(seed=0)
    shape = f"{device.info['board']} {device.n_inputs} drives / {device.n_outputs} taps"
    print(f"{args.trials} trials of {args.steps} NodePGT steps on digits, device: {shape}")

    def single(trial: Any) -> Any:
        ring = reference_ring(seed=trial.ring_seed) if trial.noise_free else open_sim_board(seed=trial.ring_seed)
        return Trainer(ring, trial.config, log=lambda line: None).run()

    load_before = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    sequential = [single(t) for t in trials]
    t_seq, cpu_seq = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"sequential: {t_seq:.1f} s ({t_seq / args.trials:.2f} s per trial)")

    out = tempfile.mkdtemp(prefix="pgt-bench-sweep-")
    ray_tmp = tempfile.mkdtemp(prefix="pgtray-", dir="/tmp")
    cpus = os.cpu_count() or 1
    try:
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=ray_tmp, log_to_driver=False,
                 logging_level=logging.ERROR)
        t_init = time.perf_counter() - t0
        t0, cpu0 = time.perf_counter(), time.process_time()
        swept = sweep(trials, out=out, name="speed", progress=lambda line: None, report=False)
        t_ray, cpu_driver = time.perf_counter() - t0, time.process_time() - cpu0
        parallel = min(cpus, args.trials)
        print(f"ray: {t_ray:.1f} s on {cpus} CPUs (+ {t_init:.1f} s to start Ray)")
        identical = all(same(a, b) for a, b in zip(swept.trials, sequential))
        cpu_ray = sum(r.metrics.get("cpu_s", 0.0) for r in swept.trials) / args.trials

        # Kill one trial's worker after its first checkpoint; it must resume from there.
        first_ckpt = chunk_ends(trials[0].config)[0]
        kill_at = first_ckpt + trials[0].config.eval_every
        killed: list[int] = []

        class KillOnce(tune.Callback):  # type: ignore[misc]
            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                if not killed and result.get("step") == kill_at:
                    killed.append(int(result["pid"]))
                    os.kill(int(result["pid"]), signal.SIGKILL)

        victim = trials[:1]
        (got,) = sweep(victim, out=out, name="kill", max_failures=1, callbacks=[KillOnce()],
                       progress=lambda line: None, report=False).trials
        resumed = bool(killed) and got.metrics.get("resumed_from") == first_ckpt \
            and got.metrics.get("pid") != killed[0] and same(got, sequential[0])
        print(f"kill: worker {killed[0] if killed else '-'} killed at step {kill_at}; trial {got.status}, "
              f"resumed from step {got.metrics.get('resumed_from')}, identical to the uninterrupted run: "
              f"{same(got, sequential[0])}")
    finally:
        ray.shutdown()
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    report = {
        "bench": "sweep", "device": shape, "cpus": cpus, "trials": args.trials, "steps": args.steps,
        "sequential_s": round(t_seq, 2), "ray_s": round(t_ray, 2), "ray_init_s": round(t_init, 2),
        "speedup": round(t_seq / t_ray, 2), "speedup_incl_ray_start": round(t_seq / (t_ray + t_init), 2),
        "per_trial_overhead_s": round((t_ray * parallel - t_seq) / args.trials, 2),
        "identical_to_sequential": identical, "resumed_after_kill": resumed,
        # CPU seconds per trial (load-independent): in this process vs in a Ray worker (its Ray threads included)
        "cpu_s_per_trial_sequential": round(cpu_seq / args.trials, 2), "cpu_s_per_trial_ray": round(cpu_ray, 2),
        "cores_used_sequential": round(cpu_seq / t_seq, 2),
        "cores_used_ray": round((cpu_ray * args.trials + cpu_driver) / t_ray, 2),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
