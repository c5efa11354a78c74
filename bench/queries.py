"""Device queries to reach a target accuracy, per estimator, against backprop — on the board you can build.

Three sections, each over several seeds and the five estimators (twin, surrogate, node, param against backprop):

* ``board`` — the dense net on ``digits`` through a ring of the **default rp2 board's shape** (2 drives, 3 taps),
  time multiplexed (``slots`` rows per sample; the default: 8 slots, a 16-drive / 24-reading ring layer);
* ``mlp`` and ``transformer`` — the dense net and the transformer whose feed-forward sublayer is the ring
  (``digits-seq``), on the wide 16-drive / 32-tap ring (boards with external multi-channel DAC/ADC chips).

Backprop runs on the noise-free model of the same ring (it needs the exact vjp) and counts one query per row
like every other estimator; the PGT estimators run on the noisy ring (same seed: the same ring structure, plus
read and gain noise, drift, hysteresis and ADC quantisation).

**Q** (defined once, as in the README): all device rows (calibration, training and evaluation) an estimator
spends until its accuracy reaches 90 % (95 %) of the backprop reference — the crossing taken where two
consecutive evaluations are at or above the threshold — divided by backprop's all device rows to the same
crossing (mean over seeds). The reference is backprop's test accuracy at its best-validation step, the same
statistic as every estimator's ``best_test_acc``. ``eval_share`` is evaluation rows / all device rows over
every run of the bench. A threshold an estimator does not reach on every seed gives no Q (``reached`` says how
many seeds did).

Every run is one trial of a ``pgt.sweep`` on a local Ray (``--jobs`` CPUs, default all), so the runs share the
cores; ``--sequential`` runs the same trials one after another in this process instead, with identical figures
(each trial is the same code with the same seeds; only the wall times differ).

Usage: ``python bench/queries.py [--quick] [--seeds N] [--jobs J] [--sequential] [--sections board,mlp,transformer]``.
Each estimator's ``vs_reference`` is its test accuracy minus backprop's, seed by seed (the same ring and data),
averaged, with ``vs_reference_se`` its standard error: with 3 seeds a difference of a point or two is within
the seeds' spread. ``best_pgt`` is the PGT estimator that reaches the reference (at most 1 point below it) with
the fewest device rows (lowest Q_90), or the most accurate one if none does. The last line printed is one JSON
object; its ``"board"`` key holds exactly
``{"k", "m", "slots", "reference_best_test_acc", "best_pgt": {"estimator", "best_test_acc", "Q_90"}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

SECTIONS = {
    "board": {"task": "digits", "model": "mlp", "ring": "board"},
    "mlp": {"task": "digits", "model": "mlp", "ring": "wide"},
    "transformer": {"task": "digits-seq", "model": "transformer", "ring": "wide"},
}
ESTIMATORS = ("backprop", "twin", "surrogate", "node", "param")
PGT = tuple(e for e in ESTIMATORS if e != "backprop")
# (steps, eval_every) per section and estimator. The twin's steps between its device checks (every 100 steps
# and at the end) cost no device rows, and its evaluations in between go through the twin (free; they give no
# val_acc and cannot make a crossing).
PLAN = {
    "board": {"backprop": (400, 10), "twin": (300, 20), "surrogate": (400, 10), "node": (600, 10),
              "param": (2500, 50)},
    "mlp": {"backprop": (400, 5), "twin": (600, 20), "surrogate": (400, 5), "node": (600, 5), "param": (1500, 50)},
    "transformer": {"backprop": (300, 15), "twin": (600, 15), "surrogate": (300, 15), "node": (300, 15),
                    "param": (600, 30)},
}
QUICK = {section: {est: (20, 10) for est in ESTIMATORS} for section in PLAN}
"""``--quick``: a check that the bench still runs end to end (1 seed, 20 steps: its figures mean nothing)."""


def make_trial(job: tuple[str, str, int, int, int]) -> Any:
    """The sweep trial of one (section, estimator, seed, steps, eval_every): the default rp2 board (2 drives ->
    3 taps) or the named "wide" board (16 -> 32, external DAC/ADC chips); noisy through the firmware's Core, or
    its noise-free ring for backprop; the ring seeded like the run."""
    from pgt.sweeps import Trial
    from pgt.trainer import TrainConfig

    section, est, seed, steps, eval_every = job
    spec = SECTIONS[section]
    cfg = TrainConfig(task=spec["task"], model=spec["model"], estimator=est, steps=steps, eval_every=eval_every,
                      seed=seed)
    return Trial(cfg, ring_seed=seed, noise_free=est == "backprop", board=None if spec["ring"] == "board" else "wide")


FIGURES = ("best_test_acc", "final_val_acc", "queries", "eval_queries", "k", "m", "slots", "wall_s")


def summary(job: tuple[str, str, int, int, int], history: list[dict[str, Any]], got: dict[str, Any]) -> dict[str, Any]:
    """One run's history and its FIGURES (taken from ``got``)."""
    section, est, seed = job[:3]
    return {"section": section, "estimator": est, "seed": seed, "history": history,
            **{k: got[k] for k in FIGURES}}


def run_sweep(jobs: list[tuple[str, str, int, int, int]], cpus: int) -> list[dict[str, Any]]:
    """Every job as a trial of one ``pgt.sweep`` on a local Ray with ``cpus`` CPUs."""
    import tempfile

    from pgt.sweeps import sweep

    def progress(line: str) -> None:  # "[i/n] name: finished (...)": say which section trial i is in
        if "finished" in line or "FAILED" in line:
            section = jobs[int(line[1:line.index("/")]) - 1][0]
            print(f"{section}: {line}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="pgt-bench-queries-") as out:
        swept = sweep([make_trial(j) for j in jobs], num_cpus=cpus, out=out, report=False, progress=progress)
    bad = [r for r in swept.trials if r.status != "done"]
    if bad:
        raise SystemExit(f"queries.py: trial {bad[0].trial.name} ended {bad[0].status}: {bad[0].error or ''}")
    return [summary(j, r.history, r.metrics) for j, r in zip(jobs, swept.trials)]


def run_sequential(jobs: list[tuple[str, str, int, int, int]]) -> list[dict[str, Any]]:
    """The same trials one after another in this process (``Trainer(...).run()``, no Ray)."""
    from pgt.sim.reservoirs import reference_ring
    from pgt.sim_board import open_sim_board
    from pgt.trainer import Trainer

    runs = []
    for i, job in enumerate(jobs):
        trial = make_trial(job)
        t0 = time.perf_counter()
        device = (reference_ring(seed=trial.ring_seed, board=trial.board) if trial.noise_free
                  else open_sim_board(seed=trial.ring_seed, board=trial.board))
        trainer = Trainer(device, trial.config, log=lambda line: None)
        result = trainer.run()
        ph = trainer.physical
        got = {k: getattr(result, k) for k in FIGURES[:4]}
        runs.append(summary(job, result.history, got | {"k": ph.k, "m": ph.m, "slots": ph.slots,
                                                        "wall_s": time.perf_counter() - t0}))
        print(f"[{i + 1}/{len(jobs)}] {' '.join(map(str, job[:3]))}: finished", file=sys.stderr, flush=True)
    return runs


def crossing(history: list[dict[str, Any]], threshold: float) -> int | None:
    """All device rows spent at the first of two consecutive validations at or above ``threshold``."""
    from pgt.trainer import crossing as rows_at_crossing

    return rows_at_crossing(history, threshold)


def mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs))


def standard_error(xs: list[float]) -> float | None:
    """The standard error of the mean of ``xs`` (None for fewer than two)."""
    return round(statistics.stdev(xs) / len(xs) ** 0.5, 4) if len(xs) > 1 else None


def summarise(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per estimator: accuracies, queries to 90 / 95 % of the reference, Q; the reference itself."""
    by = {(r["estimator"], r["seed"]): r for r in runs}
    ref = mean([by[("backprop", s)]["best_test_acc"] for s in seeds])
    out: dict[str, Any] = {"reference_best_test_acc": round(ref, 4), "estimators": {}}
    reach: dict[str, dict[str, tuple[float, int]]] = {}
    for est in ESTIMATORS:
        reach[est] = {}
        for pct in ("90", "95"):
            got = [crossing(by[(est, s)]["history"], int(pct) / 100 * ref) for s in seeds]
            ok = [g for g in got if g is not None]
            reach[est][pct] = (mean([float(g) for g in ok]) if len(ok) == len(seeds) else float("nan"), len(ok))
    for est in ESTIMATORS:
        e: dict[str, Any] = {
            "best_test_acc": round(mean([by[(est, s)]["best_test_acc"] for s in seeds]), 4),
            "final_val_acc": round(mean([by[(est, s)]["final_val_acc"] for s in seeds]), 4),
            "queries": round(mean([by[(est, s)]["queries"] for s in seeds])),
            "wall_s": round(mean([by[(est, s)]["wall_s"] for s in seeds]), 1),
        }
        diff = [by[(est, s)]["best_test_acc"] - by[("backprop", s)]["best_test_acc"] for s in seeds]
        e["vs_reference"], e["vs_reference_se"] = round(mean(diff), 4), standard_error(diff)
        for pct in ("90", "95"):
            q, n_ok = reach[est][pct]
            qb, nb = reach["backprop"][pct]
            full = n_ok == len(seeds)
            e[f"queries_{pct}"] = round(q) if full else None
            e[f"reached_{pct}"] = f"{n_ok}/{len(seeds)}"
            e[f"Q_{pct}"] = round(q / qb, 2) if full and nb == len(seeds) else None
        out["estimators"][est] = e
    return out


WITHIN = 0.01
"""How close to the reference's test accuracy an estimator must come to count as reaching it."""


def best_pgt(summary: dict[str, Any]) -> str:
    """The PGT estimator that reaches the reference (test accuracy at most :data:`WITHIN` below it) with the
    fewest device rows to 90 % (lowest Q_90; ties: higher accuracy); if none reaches it, the most accurate."""
    ests, ref = summary["estimators"], summary["reference_best_test_acc"]
    reach = [e for e in PGT if ests[e]["best_test_acc"] >= ref - WITHIN and ests[e]["Q_90"] is not None]
    if reach:
        return min(reach, key=lambda e: (ests[e]["Q_90"], -ests[e]["best_test_acc"]))
    return max(PGT, key=lambda e: ests[e]["best_test_acc"])


def print_table(name: str, spec: dict[str, str], s: dict[str, Any], seeds: list[int], shape: str) -> None:
    print(f"\n{name}: {spec['model']} on {spec['task']}, {shape}; backprop reference (test accuracy at the "
          f"best-validation step) {100 * s['reference_best_test_acc']:.1f}% (mean of {len(seeds)} seeds)")
    print(f"{'estimator':<10} {'rows to 90%':>11} {'Q90':>5} {'rows to 95%':>11} {'Q95':>5} "
          f"{'best acc':>8} {'vs ref':>11} {'final val':>9} {'all rows':>10}")

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for est, e in s["estimators"].items():
        print(f"{est:<10} {fmt(e['queries_90'], ',d'):>11} {fmt(e['Q_90'], '.2f'):>5} "
              f"{fmt(e['queries_95'], ',d'):>11} {fmt(e['Q_95'], '.2f'):>5} {100 * e['best_test_acc']:7.1f}% "
              f"{vs_ref(e):>11} {100 * e['final_val_acc']:8.1f}% {e['queries']:>10,}")
    print("vs ref: test accuracy minus the reference's, seed by seed (same ring, same data), in points: the mean "
          "± its standard error")


def vs_ref(e: dict[str, Any]) -> str:
    """``+0.3±0.6``: the mean paired difference from the reference in points, ± its standard error."""
    se = "" if e["vs_reference_se"] is None else f"±{100 * e['vs_reference_se']:.1f}"
    return f"{100 * e['vs_reference']:+.1f}{se}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 20 steps: a check that the bench runs")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="CPUs of the local Ray the trials share (default: all cores)")
    parser.add_argument("--sequential", action="store_true",
                        help="run the same trials one after another in this process, without Ray")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    if not sections or any(s not in SECTIONS for s in sections):
        parser.error(f"--sections takes some of {', '.join(SECTIONS)}")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    plan = QUICK if args.quick else PLAN
    seeds = list(range(args.seeds if args.seeds else (1 if args.quick else 3)))
    jobs = [(sec, est, s, *plan[sec][est]) for sec in sections for est in ESTIMATORS for s in seeds]
    jobs.sort(key=lambda j: -j[3] * (6 if j[0] == "transformer" else 1))  # longest first
    t0 = time.perf_counter()
    runs = run_sequential(jobs) if args.sequential else run_sweep(jobs, args.jobs)
    report: dict[str, Any] = {"bench": "queries", "quick": args.quick, "seeds": seeds}
    for sec in sections:
        mine = [r for r in runs if r["section"] == sec]
        k, m, slots = mine[0]["k"], mine[0]["m"], mine[0]["slots"]
        s = summarise(mine, seeds)
        shape = f"device {k} drives -> {m} taps, {slots} slots (ring layer {slots * k} -> {slots * m})"
        print_table(sec, SECTIONS[sec], s, seeds, shape)
        if sec == "board":
            best = best_pgt(s)
            b = s["estimators"][best]
            report["board"] = {
                "k": k, "m": m, "slots": slots, "reference_best_test_acc": s["reference_best_test_acc"],
                "best_pgt": {"estimator": best, "best_test_acc": b["best_test_acc"], "Q_90": b["Q_90"]},
            }
            report["board_estimators"] = s["estimators"]
            gap = 100 * (s["reference_best_test_acc"] - b["best_test_acc"])
            print(f"best PGT estimator on the board shape: {best}, {-gap:+.1f} points against the reference, "
                  f"Q_90 {b['Q_90']}")
        else:
            report[sec] = s
    rows = sum(r["queries"] for r in runs)
    report["eval_share"] = round(sum(r["eval_queries"] for r in runs) / rows, 4) if rows else None
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"\nevaluation rows are {100 * report['eval_share']:.1f}% of all device rows; "
          f"wall time {report['wall_s']} s " + ("in one process" if args.sequential else f"on {args.jobs} CPUs"))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
