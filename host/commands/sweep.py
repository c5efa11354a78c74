"""``pgt sweep``: many training runs (a grid or a random sample over config fields and seeds) on Ray Tune."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "sweep"
HELP = "run a grid or random sweep of trainings over config fields and seeds on Ray Tune (local or a cluster)"

EPILOG = """\
examples:
  pgt sweep --estimator surrogate,node --seeds 0-7 --set lr_rel=0.03,0.1 --steps 400
  pgt sweep spec.toml --random 6          # 6 random points of the spec's grid, times its seeds
  pgt sweep --rig a=/dev/ttyACM0 --rig b=/dev/ttyACM1 --seeds 0-3   # one trial per rig at a time
  pgt sweep --resume runs/sweep-20260101-120000

spec file (TOML or JSON): base = {steps = 400}, grid = {estimator = ["surrogate", "node"],
lr_rel = [0.03, 0.1]}, seeds = "0-7", and optionally samples, ring_seed, rigs = {a = "/dev/ttyACM0"},
asha, grace, max_failures. Options on the command line add to or override the file.
On a Ray cluster (--address), start the node a rig is plugged into with
  ray start --address=HEAD:6379 --resources='{"rig:a": 1}'
"""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("spec", nargs="?", default=None, help="sweep spec file (.toml or .json), optional")
    p.add_argument("--task", default=None, help="digits, digits-seq or majority (default: digits)")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="your own classification data instead of --task (as pgt train --data: .npz, .csv, IDX)")
    p.add_argument("--label", default=None, help="--data CSV: the label column (default: the last)")
    p.add_argument("--model", default=None, help="mlp or transformer (default: the task's)")
    p.add_argument("--estimator", default=None, help="estimators to sweep, comma-separated (default: surrogate)")
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0-7 or 0,2,5 (default: 0)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per trial (default 300)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                   help="sweep a TrainConfig field over values, repeatable: lr_rel=0.03,0.1  batch_size=16,32  "
                        "(a JSON list for values with commas: estimator_options=[{\"directions\":4}])")
    p.add_argument("--random", type=int, default=None, metavar="N",
                   help="random search: N points drawn from the grid (each run for every seed)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the random search (default 0)")
    p.add_argument("--ring-seed", default=None,
                   help="seed of each trial's simulated ring: an int (default 0), or 'seed' for the trial's seed")
    p.add_argument("--rig", action="append", default=[], metavar="NAME=URL",
                   help="a device to train on, repeatable; each rig runs one trial at a time")
    p.add_argument("--rigs", default=None, metavar="FILE", help="rigs file: {\"name\": \"url\", ...} (JSON or TOML)")
    p.add_argument("--address", default=None, help="join this Ray cluster (default: start Ray on this machine)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each trial holds (default 1)")
    p.add_argument("--asha", action="store_true",
                   help="stop poor trials early (ASHA on the best validation accuracy so far)")
    p.add_argument("--grace", type=int, default=None, help="ASHA: steps before a trial may be stopped")
    p.add_argument("--max-failures", type=int, default=None,
                   help="restarts of a failed trial from its last checkpoint (default 2)")
    p.add_argument("--out", default="runs", help="parent directory of the sweep's directory (default: runs/)")
    p.add_argument("--name", default=None, help="the sweep's directory name (default: sweep-DATE-TIME)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted sweep in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _values(text: str) -> list[Any]:
    """``0.03,0.1`` -> [0.03, 0.1]; a JSON list as is; each item JSON if it parses, else a string."""
    from pgt.errors import UserError

    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise UserError(f"bad JSON list {text!r}: {exc}") from None
        if not isinstance(values, list):
            raise UserError(f"expected a JSON list, got {text!r}")
        return values
    out: list[Any] = []
    for item in text.split(","):
        try:
            out.append(json.loads(item))
        except ValueError:
            out.append(item.strip())
    return out


def plan(args: argparse.Namespace) -> tuple[list[Any], dict[str, str], dict[str, Any]]:
    """The trials, rigs and sweep options that ``args`` describe; UserError on any bad input."""
    from pgt.errors import UserError
    from pgt.sweeps import assign_rigs, expand, load_spec, parse_rigs

    doc: dict[str, Any] = load_spec(args.spec) if args.spec else {}
    known = {"base", "grid", "seeds", "samples", "sample_seed", "ring_seed", "rigs", "asha", "grace", "max_failures"}
    unknown = set(doc) - known
    if unknown:
        raise UserError(f"{args.spec}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    base = dict(doc.get("base", {}))
    grid = dict(doc.get("grid", {}))
    if not isinstance(base, dict) or not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise UserError("a spec's base is a table of fields, its grid a table of lists")
    for key in ("task", "model", "steps", "data", "label"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
            grid.pop(key, None)
    _own_data(base)
    if args.estimator is not None:
        grid["estimator"] = [e.strip() for e in args.estimator.split(",") if e.strip()]
        base.pop("estimator", None)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"--set takes FIELD=V1,V2,..., got {item!r}")
        grid[key] = _values(value)
        base.pop(key, None)
    ring_seed: Any = args.ring_seed if args.ring_seed is not None else doc.get("ring_seed", 0)
    if ring_seed == "seed":
        ring_seed = None
    else:
        try:
            ring_seed = int(ring_seed)
        except (TypeError, ValueError):
            raise UserError(f"--ring-seed takes an int or 'seed', got {ring_seed!r}") from None
    samples = _int("samples", args.random if args.random is not None else doc.get("samples"))
    trials = expand(base, grid, args.seeds if args.seeds is not None else doc.get("seeds", 0), samples=samples,
                    sample_seed=args.sample_seed, ring_seed=ring_seed)
    rigs = parse_rigs(args.rig, args.rigs)
    if not rigs and isinstance(doc.get("rigs"), dict):
        rigs = parse_rigs([f"{k}={v}" for k, v in doc["rigs"].items()])
    grace = _int("grace", args.grace if args.grace is not None else doc.get("grace"))
    max_failures = _int("max_failures", args.max_failures if args.max_failures is not None
                        else doc.get("max_failures", 2))
    if max_failures is None or max_failures < 0:
        raise UserError("--max-failures must be >= 0")
    if grace is not None and grace < 1:
        raise UserError("--grace must be >= 1")
    options = {"asha": bool(args.asha or doc.get("asha", False)), "grace": grace, "max_failures": max_failures}
    return assign_rigs(trials, rigs), rigs, options


def _own_data(base: dict[str, Any]) -> None:
    """``data`` in the base: made absolute (trials run in their own directories), checked now (one line, no
    device), the model taken from its shape; regression data is refused (sweeps select by accuracy)."""
    if base.get("data") is None:
        return
    from pathlib import Path

    from pgt.datasets import load_data
    from pgt.errors import UserError

    if not isinstance(base["data"], str):
        raise UserError(f"data must be a file name, got {base['data']!r}")
    if "task" in base:
        raise UserError("--task and --data are alternatives: a built-in task or your own file")
    base["data"] = ",".join(str(Path(p).resolve()) for p in base["data"].split(",") if p)
    task = load_data(base["data"], base.get("label"), base.get("loss"), base.get("scale", "global"))
    if task.info["loss"] == "mse":
        raise UserError("pgt sweep selects and reports by accuracy: regression data (NMSE) is not swept; train "
                        "each setting with pgt train --data")
    base["task"] = "data"
    base.setdefault("model", "mlp" if task.info["kind"] == "vector" else "transformer")


def _int(name: str, value: Any) -> int | None:
    from pgt.errors import UserError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, got {value!r}")
    return value


# What a sweep's plan is made of: fixed when it starts, so --resume refuses them (it continues the plan).
PLANNED = ("spec", "task", "data", "label", "model", "estimator", "seeds", "steps", "set", "random", "ring_seed",
           "rig", "rigs", "asha", "grace", "max_failures", "name", "cpus_per_trial")


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import sys

    from pgt.errors import UserError
    from pgt.sweeps import RAY_HINT, format_table, sweep

    if importlib.util.find_spec("ray") is None:
        raise UserError(RAY_HINT)
    progress = None if not args.quiet else (lambda line: None)
    if args.resume is not None:
        defaults = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
        given = [k for k in PLANNED if getattr(args, k) != defaults[k]]
        if given:
            flag = given[0] if given[0] == "spec" else "--" + given[0].replace("_", "-")
            raise UserError(f"--resume continues the sweep as it was planned: {flag} cannot change it (start a new "
                            "sweep instead)")
        if not args.resume:
            raise UserError("--resume needs the sweep's directory")
        result = sweep(resume=args.resume, address=args.address, num_cpus=args.cpus, progress=progress)
    else:
        trials, rigs, options = plan(args)
        result = sweep(trials, rigs=rigs, out=args.out, name=args.name, address=args.address, num_cpus=args.cpus,
                       cpus_per_trial=args.cpus_per_trial, progress=progress, **options)
    print(format_table(result))
    best = result.best()
    if best is not None:
        test = best.metrics.get("best_test_acc")
        print(f"best: {best.trial.name}: validation {100 * best.metrics['best_val_acc']:.1f}%, test accuracy at "
              f"the best-validation step {'-' if test is None else format(100 * test, '.1f') + '%'}")
    print(f"sweep {result.dir}: {result.dir / 'sweep.csv'}, {result.dir / 'accuracy.png'}")
    if result.interrupted:
        print(f"pgt sweep: interrupted; continue with pgt sweep --resume {result.dir}", file=sys.stderr)
        return 130
    failed = sum(r.status == "error" for r in result.trials)
    if failed:
        print(f"pgt sweep: {failed} of {len(result.trials)} trials failed (see the error column)", file=sys.stderr)
    return 1 if failed == len(result.trials) else 0
