"""Running a sweep: Ray started or joined, the trials handed to Tune as :class:`SweepTrainable` s, the results
collected in the order given (see the package doc)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import TrainConfig, check_config
from ..errors import UserError
from ..run_dir import unique_dir
from .report import plot, read_history, write_csv
from .spec import (
    RAY_HINT,
    SPEC,
    TUNE_DIR,
    SweepResult,
    Trial,
    TrialResult,
    assign_rigs,
    check_name,
    load_sweep,
    parse_rigs,
    rig_resource,
)

# -- the driver -----------------------------------------------------------------------------------------

def _import_ray() -> Any:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter: silent at verbose=0
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise UserError(RAY_HINT) from None
    return ray


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Environment variable ``name`` set to ``value`` for the duration of the block."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _error_text(err: BaseException | None) -> str:
    """A device error's one line, from whatever Ray wrapped it in."""
    while err is not None and getattr(err, "cause", None) is not None and err.cause is not err:  # type: ignore[attr-defined]
        err = err.cause  # type: ignore[attr-defined]
    if err is None:
        return ""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"[:300]


def _progress_callback(total: int, say: Callable[[str], None], extra: Sequence[Any]) -> list[Any]:
    from ray import tune

    class Progress(tune.Callback):
        """One line per evaluation, completion and failure."""

        def _name(self, trial: Any) -> str:
            spec = trial.config["spec"]
            return f"[{spec['index'] + 1}/{total}] {Trial.from_dict(spec['trial']).name}"

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if result.get("val_acc") is not None:
                rig = trial.config["spec"]["trial"].get("rig")
                say(f"{self._name(trial)}: step {result['step']}  val {100 * result['val_acc']:.1f}%  "
                    f"queries {result['queries']:,}"
                    + (f"  rig {rig}" if rig else ""))

        def _ended(self, trials: list, trial: Any) -> str:
            n = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
            return f"{n}/{total} trials ended"

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            say(f"{self._name(trial)}: finished ({self._ended(trials, trial)})")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            say(f"{self._name(trial)}: FAILED ({self._ended(trials, trial)})")

    return [Progress(), *extra]


def _check_address(address: str) -> None:
    """UserError within seconds unless something answers at ``address`` (HOST:PORT or ray://HOST:PORT; ``auto``
    and ``local`` are left to Ray): Ray itself waits minutes for a cluster that is not there."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address is HOST:PORT of a Ray head (or auto), got {address[:80]!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3.0).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address}: {exc.strerror or exc}") from None


def _start_ray(ray: Any, rigs: Mapping[str, str], address: str | None, num_cpus: int | None,
               cpus_per_trial: float) -> bool:
    """Join or start Ray (True if started here); check that every rig's resource exists and a trial's CPUs fit."""
    import logging

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, resources={rig_resource(n): 1 for n in rigs}, include_dashboard=False,
                     logging_level=logging.ERROR, log_to_driver=False)
        started = True
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    have = ray.cluster_resources()
    missing = [n for n in rigs if have.get(rig_resource(n), 0) < 1]
    problem = None
    if missing:
        problem = (f"rig {missing[0]!r} is not a resource of this Ray cluster: start the node its USB port is on "
                   f"with ray start --address=HEAD:6379 --resources='{{\"{rig_resource(missing[0])}\": 1}}'")
    elif have.get("CPU", 0) < cpus_per_trial:
        problem = (f"each trial asks for {cpus_per_trial:g} CPUs; this Ray cluster has {have.get('CPU', 0):g} "
                   "(--cpus-per-trial)")
    if problem:
        if started:
            ray.shutdown()
        raise UserError(problem)
    return started


def _new_dir(out: str | Path, name: str | None) -> Path:
    """A new directory for the sweep in ``out`` (``name``, or ``name.2`` ... if taken), made atomically."""
    parent = Path(out)
    if parent.exists() and not parent.is_dir():
        raise UserError(f"--out {str(out)[:200]} is not a directory")
    base = check_name(name) if name is not None else time.strftime("sweep-%Y%m%d-%H%M%S")
    return unique_dir(parent, base, "sweep directory")


def _ray_running() -> bool:
    """Whether this process already runs or joined Ray (a sweep then uses it), without importing Ray."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def _check_cpus(num_cpus: int | None, cpus_per_trial: float, local: bool) -> None:
    if num_cpus is not None and num_cpus < 1:
        raise UserError(f"--cpus must be at least 1, got {num_cpus}")
    if not cpus_per_trial > 0:
        raise UserError(f"--cpus-per-trial must be positive, got {cpus_per_trial:g}")
    have = num_cpus or os.cpu_count() or 1
    if local and cpus_per_trial > have:
        raise UserError(f"each trial asks for {cpus_per_trial:g} CPUs; the local Ray has {have} (--cpus, default "
                        "this machine's): no trial could start")


def sweep(
    trials: Sequence[Trial | TrainConfig] = (), *, rigs: Mapping[str, str] | None = None,
    out: str | Path = "runs", name: str | None = None, address: str | None = None, num_cpus: int | None = None,
    cpus_per_trial: float = 1.0, asha: bool = False, grace: int | None = None, max_failures: int = 2,
    progress: Callable[[str], None] | None = None, callbacks: Sequence[Any] = (), resume: str | Path | None = None,
    report: bool = True,
) -> SweepResult:
    """Run ``trials`` (or resume the sweep in directory ``resume``) as Ray Tune trials; see the package doc.

    ``rigs`` ({name: device URL}) spreads the trials over rigs, one trial per rig at a time; without rigs every
    trial trains on its own in-process simulated ring. Uses the running Ray if there is one, else joins
    ``address`` or starts a local Ray (``num_cpus``: default all). ``asha``: stop trials early on validation
    accuracy (ASHA, ``grace`` steps at least). ``progress`` gets one line per event (default: stderr).
    With ``report`` the sweep's directory gets ``sweep.csv`` and ``accuracy.png``.
    Every input error is a UserError before Ray starts. Returns the trials' results in the order given;
    ``interrupted`` if Ctrl-C stopped it before the end.
    """
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    if resume is not None:
        sweep_dir = Path(resume)
        todo, doc = load_sweep(sweep_dir)
        rigs = doc["rigs"]
    else:
        rigs = parse_rigs([f"{k}={v}" for k, v in (rigs or {}).items()])
        todo = [t if isinstance(t, Trial) else Trial(t, noise_free=t.estimator == "backprop") for t in trials]
        if not todo:
            raise UserError("a sweep needs at least one trial")
        for t in todo:
            check_config(t.config)
        if max_failures < 0:
            raise UserError("max_failures must be >= 0")
        todo = assign_rigs(todo, rigs) if rigs else todo
        doc = {"trials": [t.to_dict() for t in todo], "rigs": rigs, "asha": asha, "grace": grace,
               "max_failures": max_failures, "cpus_per_trial": cpus_per_trial}
    running = _ray_running()
    _check_cpus(num_cpus, doc["cpus_per_trial"], local=not running and not address)
    if address and not running:
        _check_address(address)
    if resume is None:
        sweep_dir = _new_dir(out, name)
        (sweep_dir / SPEC).write_text(json.dumps(doc, indent=1) + "\n")
    ray = _import_ray()  # (only now: every input error above comes before Ray is imported, let alone started)
    from ray import tune

    from .trainable import SweepTrainable, trial_dirname, trial_resources

    say(f"sweep of {len(todo)} trials in {sweep_dir} " + (f"on rigs {', '.join(rigs)}" if rigs else "on the simulator"))
    started = _start_ray(ray, rigs, address, num_cpus, doc["cpus_per_trial"])
    try:
        from ray.tune.logger import JsonLoggerCallback

        # result.json only (what read_history reads); with Tune's automatic loggers the driver also wrote
        # progress.csv and a TensorBoard file, fsynced at every report: a quarter of its CPU time.
        cbs = [*_progress_callback(len(todo), say, callbacks), JsonLoggerCallback()]
        trainable = tune.with_resources(SweepTrainable, trial_resources)
        storage = str(sweep_dir.resolve())
        if resume is not None and tune.Tuner.can_restore(os.path.join(storage, TUNE_DIR)):
            tuner = tune.Tuner.restore(os.path.join(storage, TUNE_DIR), trainable, resume_errored=True)
        else:
            specs = [{"index": i, "trial": t.to_dict(), "cpus": doc["cpus_per_trial"]} for i, t in enumerate(todo)]
            scheduler = None
            if doc["asha"]:
                from ray.tune.schedulers import ASHAScheduler

                # one past the last step: ASHA stops a trial that reaches max_t, and a trial's final evaluation
                # (at its last step) is followed by its test record, which must still be reported
                max_t = max(t.config.steps for t in todo) + 1
                g = doc["grace"] or max(1, min(t.config.eval_every for t in todo))
                # best validation accuracy so far: every record carries it (the final test record too)
                scheduler = ASHAScheduler(time_attr="step", metric="best_val_acc", mode="max",
                                          max_t=max(max_t, 1), grace_period=min(g, max(max_t, 1)),
                                          stop_last_trials=False)
            tuner = tune.Tuner(
                trainable, param_space={"spec": tune.grid_search(specs)},
                tune_config=tune.TuneConfig(scheduler=scheduler, trial_dirname_creator=trial_dirname,
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=storage, verbose=0, callbacks=cbs,
                    failure_config=tune.FailureConfig(max_failures=doc["max_failures"]),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
            )
        with _env("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"):
            grid = tuner.fit()
        results = _collect(grid, todo, stopping=bool(doc["asha"]))
    finally:
        if started:
            ray.shutdown()
    out_result = SweepResult(results, sweep_dir, interrupted=any(r.status == "unfinished" for r in results))
    if report:
        write_csv(out_result, sweep_dir / "sweep.csv")
        plot(out_result, sweep_dir / "accuracy.png")
    return out_result


def _collect(grid: Any, todo: Sequence[Trial], stopping: bool) -> list[TrialResult]:
    statuses = {}
    analysis = getattr(grid, "_experiment_analysis", None)
    for t in getattr(analysis, "trials", None) or []:
        statuses[t.config["spec"]["index"]] = t.status
    results: list[TrialResult | None] = [None] * len(todo)
    for r in grid:
        if not r.config:  # a trial that never started (the sweep was interrupted)
            continue
        index = r.config["spec"]["index"]
        metrics = dict(r.metrics or {})
        status = statuses.get(index, "TERMINATED")
        if r.error is not None or status == "ERROR":
            res = TrialResult(todo[index], "error", metrics, error=_error_text(r.error) or "failed")
        elif metrics.get("finished"):
            res = TrialResult(todo[index], "done", metrics)
        else:
            stopped = stopping and status == "TERMINATED"  # by the scheduler; else by Ctrl-C
            res = TrialResult(todo[index], "stopped" if stopped else "unfinished", metrics)
        res.history = read_history(r.path)
        vals = [h for h in res.history if h.get("val_acc") is not None]
        if res.status == "stopped" and vals:  # (the test set is evaluated only when a run ends)
            best = max(vals, key=lambda h: h["val_acc"])
            res.metrics |= {"best_val_acc": best["val_acc"], "best_test_acc": None,
                            "best_step": best["step"], "final_val_acc": vals[-1]["val_acc"]}
        results[index] = res
    return [r if r is not None else TrialResult(todo[i], "unfinished") for i, r in enumerate(results)]


