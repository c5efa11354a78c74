"""Device queries to reach a target accuracy, per estimator and architecture, against backprop.

For each architecture (dense net on ``digits``, transformer with a ring feed-forward sublayer on
``digits-seq``) and each estimator, trains over several seeds and reports the device queries (calibration +
training; evaluation queries are reported apart, they are the same schedule for every estimator) needed to
reach 90 % and 95 % of the backprop reference's best test accuracy (mean over seeds), the ratio to backprop's
queries (Q), the ratio ParameterPGT / estimator, and the final accuracies.

Backprop runs on the noise-free simulated ring (it needs the exact vjp) and counts one query per forward row,
like every other estimator; the PGT estimators run on the noisy ring (same seed, hence the same ring
structure, plus read/gain noise, drift, hysteresis and ADC quantisation). When ParameterPGT does not reach a
threshold within its budget, the ratio is a lower bound (budget / queries) and is flagged so.

Usage: ``python bench/queries.py [--quick] [--seeds N] [--jobs J]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ARCHS = {
    "mlp": {"task": "digits", "model": "mlp"},
    "transformer": {"task": "digits-seq", "model": "transformer"},
}
ESTIMATORS = ("backprop", "surrogate", "node", "param")
# (steps, eval_every) per architecture and estimator; quick halves the work.
PLAN = {
    "mlp": {"backprop": (400, 5), "surrogate": (400, 5), "node": (600, 5), "param": (2000, 25)},
    "transformer": {"backprop": (300, 15), "surrogate": (300, 15), "node": (300, 15), "param": (600, 30)},
}
QUICK = {
    "mlp": {"backprop": (200, 5), "surrogate": (200, 5), "node": (300, 5), "param": (800, 25)},
    "transformer": {"backprop": (150, 15), "surrogate": (150, 15), "node": (150, 15), "param": (150, 30)},
}


def run_one(job: tuple[str, str, int, int, int]) -> dict[str, Any]:
    """Train one (architecture, estimator, seed); return its history and summary."""
    arch, est, seed, steps, eval_every = job
    from pgt.sim.ring import make_ring_reservoir
    from pgt.trainer import TrainConfig, Trainer

    t0 = time.perf_counter()
    device = make_ring_reservoir(seed=seed, noise_free=est == "backprop")
    cfg = TrainConfig(**ARCHS[arch], estimator=est, steps=steps, eval_every=eval_every, seed=seed)
    result = Trainer(device, cfg).run()
    return {
        "arch": arch, "estimator": est, "seed": seed, "history": result.history,
        "best_test_acc": result.test_acc, "final_test_acc": result.final_val_acc,
        "max_test_acc": result.best_val_acc,
        "training_queries": result.queries, "queries": result.queries,
        "wall_s": time.perf_counter() - t0,
    }


def first_reach(history: list[dict[str, Any]], threshold: float) -> int | None:
    from pgt.trainer import crossing

    return crossing(history, threshold)


def mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs))


def summarise(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    by = {(r["estimator"], r["seed"]): r for r in runs}
    ref = mean([by[("backprop", s)]["max_test_acc"] for s in seeds])
    out: dict[str, Any] = {"reference_best_test_acc": round(ref, 4), "estimators": {}}
    reach: dict[str, dict[str, tuple[float, bool, int]]] = {}
    for est in ESTIMATORS:
        reach[est] = {}
        for frac in (90, 95):
            thr = frac / 100 * ref
            got = [first_reach(by[(est, s)]["history"], thr) for s in seeds]
            n_ok = sum(g is not None for g in got)
            # unreached seeds count with the whole budget: the mean is then a lower bound
            vals = [g if g is not None else by[(est, s)]["training_queries"] for g, s in zip(got, seeds)]
            reach[est][str(frac)] = (mean([float(v) for v in vals]), n_ok == len(seeds), n_ok)
    for est in ESTIMATORS:
        e: dict[str, Any] = {
            "best_test_acc": round(mean([by[(est, s)]["best_test_acc"] for s in seeds]), 4),
            "max_test_acc": round(mean([by[(est, s)]["max_test_acc"] for s in seeds]), 4),
            "final_test_acc": round(mean([by[(est, s)]["final_test_acc"] for s in seeds]), 4),
            "budget_queries": round(mean([by[(est, s)]["training_queries"] for s in seeds])),
        }
        for pct in ("90", "95"):
            q, ok, n_ok = reach[est][pct]
            qb, okb, _ = reach["backprop"][pct]
            qp, okp, _ = reach["param"][pct]
            e[f"queries_{pct}"] = round(q) if ok else None
            e[f"reached_{pct}"] = f"{n_ok}/{len(seeds)}"
            e[f"Q_{pct}"] = round(q / qb, 2) if ok and okb else None
            if ok:
                e[f"param_ratio_{pct}"] = round(qp / q, 1)
                e[f"param_ratio_{pct}_lower_bound"] = not okp
            else:
                e[f"param_ratio_{pct}"] = None
        out["estimators"][est] = e
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 2)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--param-steps", type=int, default=None,
                        help="ParameterPGT steps on the dense net (default 2000, quick 800): its budget")
    args = parser.parse_args()
    plan = {arch: dict(p) for arch, p in (QUICK if args.quick else PLAN).items()}
    if args.param_steps:
        plan["mlp"]["param"] = (args.param_steps, max(25, args.param_steps // 80))
    seeds = list(range(args.seeds if args.seeds else (2 if args.quick else 3)))
    jobs = [(arch, est, s, *plan[arch][est]) for arch in ARCHS for est in ESTIMATORS for s in seeds]
    jobs.sort(key=lambda j: -j[3] * (8 if j[0] == "transformer" else 1))  # longest first
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(run_one, jobs))
    report: dict[str, Any] = {"bench": "queries", "quick": args.quick, "seeds": seeds}
    for arch in ARCHS:
        s = summarise([r for r in runs if r["arch"] == arch], seeds)
        report[arch] = s
        print(f"\n{arch} ({ARCHS[arch]['task']}): backprop reference best test accuracy "
              f"{100 * s['reference_best_test_acc']:.1f}% (mean of {len(seeds)} seeds)")
        print(f"{'estimator':<10} {'q to 90%':>9} {'Q90':>6} {'param/x':>8} {'q to 95%':>9} {'Q95':>6} "
              f"{'best acc':>8} {'final':>6} {'budget':>8}")
        for est, e in s["estimators"].items():
            def fmt(v: Any, spec: str) -> str:
                return "-" if v is None else format(v, spec)
            lb = ">=" if e.get("param_ratio_90_lower_bound") else ""
            print(f"{est:<10} {fmt(e['queries_90'], ',d'):>9} {fmt(e['Q_90'], '.2f'):>6} "
                  f"{lb + fmt(e['param_ratio_90'], '.1f'):>8} {fmt(e['queries_95'], ',d'):>9} "
                  f"{fmt(e['Q_95'], '.2f'):>6} {100 * e['best_test_acc']:7.1f}% {100 * e['final_test_acc']:5.1f}% "
                  f"{e['budget_queries']:>8,}")
    mlp = report["mlp"]["estimators"]
    pgt = [e for e in ESTIMATORS if e != "backprop"]
    best = min((e for e in pgt if mlp[e]["Q_90"] is not None), key=lambda e: mlp[e]["Q_90"], default=None)
    tr = report["transformer"]
    tr_best = max(pgt, key=lambda e: tr["estimators"][e]["best_test_acc"])
    gap = tr["estimators"]["backprop"]["best_test_acc"] - tr["estimators"][tr_best]["best_test_acc"]
    report["targets"] = {
        "mlp_best_estimator": best,
        "mlp_best_Q_90": mlp[best]["Q_90"] if best else None,
        "mlp_Q_90_at_most_3": bool(best and mlp[best]["Q_90"] <= 3),
        "mlp_param_ratio_90": mlp[best]["param_ratio_90"] if best else None,
        "mlp_param_ratio_at_least_20": bool(best and (mlp[best]["param_ratio_90"] or 0) >= 20),
        "transformer_best_pgt": tr_best,
        "transformer_gap_points": round(100 * gap, 2),
        "transformer_within_3_points": bool(gap <= 0.03),
    }
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"\nwall time {report['wall_s']} s with {args.jobs} workers")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
