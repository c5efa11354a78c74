"""Sweeps on Ray Tune: many training runs at once, each a Tune trial, rigs held one trial at a time.

A sweep is an explicit list of :class:`Trial` s (a :class:`~pgt.trainer.TrainConfig` plus the device it runs on),
made by :func:`expand` from a grid (or a random sample of one) over config fields and seeds. :func:`sweep` runs
them as Ray Tune trials and returns one :class:`TrialResult` per trial, in the order given. A trial on the
in-process simulator returns exactly what ``Trainer(open_sim_board(ring_seed, board=board), config).run()``
(``reference_ring`` for a noise-free trial) returns in one process: it is the same code with the same seeds.

- Every evaluation is reported to Tune. The trial runs its trainer in chunks that end where the trainer both
  evaluates and checkpoints (multiples of ``lcm(eval_every, checkpoint_every)``, and the last step), so no
  extra evaluation touches the device; each chunk's pgt checkpoint directory is handed to Tune with that
  report. A trial whose worker dies is restarted by Tune (``max_failures``) from its last checkpoint, through
  ``Trainer.resume``, on any worker.
- Rigs (``{"name": url}``) are Ray custom resources ``rig:<name>`` of capacity 1: trials are assigned to rigs
  round-robin, each holds its rig's resource while it runs, so no two trials ever use one rig. Simulator
  trials need CPUs only. A device error fails only its trial; its message goes into the results.
- Optional ASHA early stopping on the best validation accuracy so far. Ctrl-C stops the sweep with Tune's state saved;
  ``sweep(resume=dir)`` continues it.

Ray is an optional dependency (``pip install 'pgt[ray]'``); it is imported only when a sweep runs.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import check_field
from .errors import UserError
from .tasks import default_model
from .trainer import TrainConfig, check_config

RAY_HINT = "pgt sweep needs Ray Tune: pip install 'pgt[ray]'  (or: pip install 'ray[tune]>=2.44,<3')"
SPEC = "sweep.json"
TUNE_DIR = "tune"
RESULT_KEYS = ("best_val_acc", "best_test_acc", "final_val_acc", "best_step", "queries", "calibration_queries",
               "training_queries", "eval_queries", "device_seconds")


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: its config and its device (in-process simulator unless ``url``)."""

    config: TrainConfig
    ring_seed: int = 0
    """Seed of the in-process simulated ring (ignored on a device URL)."""
    noise_free: bool = False
    """In-process ring without noise (implied by the backprop estimator)."""
    url: str | None = None
    """Device URL (``pgt.client.RingClient.open``), set by :func:`sweep` from the rig."""
    rig: str | None = None
    varied: tuple[str, ...] = ()
    """Config fields that vary across the sweep (they name the trial and its group)."""
    board: str | None = None
    """Shape of the in-process simulated board (``open_sim_board(board=...)``; None: the rp2 board)."""

    @property
    def group(self) -> str:
        """The trial's label without the seed: trials of one group differ by seed only."""
        parts = [f"{k}={getattr(self.config, k)}" for k in self.varied if k != "seed"]
        return " ".join(parts) or self.config.estimator

    @property
    def name(self) -> str:
        return f"{self.group} seed={self.config.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"config": dataclasses.asdict(self.config), "ring_seed": self.ring_seed,
                "noise_free": self.noise_free, "url": self.url, "rig": self.rig, "varied": list(self.varied),
                "board": self.board}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        return cls(TrainConfig(**d["config"]), int(d["ring_seed"]), bool(d["noise_free"]), d.get("url"),
                   d.get("rig"), tuple(d.get("varied", ())), d.get("board"))


@dataclass
class TrialResult:
    """What one trial gave: its status (``done``, ``stopped`` by ASHA, ``error``, ``unfinished``), the
    best/final accuracies and query counts, every evaluation record, and the device error if any."""

    trial: Trial
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.metrics.get(key, default)


@dataclass
class SweepResult:
    """All trials' results in the order given, and where the sweep's files are."""

    trials: list[TrialResult]
    dir: Path
    interrupted: bool = False

    def best(self) -> TrialResult | None:
        done = [t for t in self.trials if t.metrics.get("best_val_acc") is not None]
        return max(done, key=lambda t: t.metrics["best_val_acc"], default=None)


# -- building the list of trials -----------------------------------------------------------------------

def _check_value(key: str, value: Any) -> Any:
    """``value`` checked against TrainConfig field ``key``'s declaration (:data:`pgt.config.CONSTRAINTS`)."""
    return check_field(key, value)


def parse_seeds(text: str | Sequence[int] | int) -> list[int]:
    """``"0-7"``, ``"0,3,5"``, ``"0-3,9"``, a list or an int -> a list of distinct seeds in order."""
    if isinstance(text, bool):
        raise UserError(f"seeds must be integers, got {text!r}")
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        seeds = list(text)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise UserError(f"seeds must be integers, got {seeds!r}")
        return list(dict.fromkeys(seeds))
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise UserError(f"seeds are like 0-7 or 0,3,5, got {text!r}") from None
    if not out:
        raise UserError(f"no seeds in {text!r}")
    return list(dict.fromkeys(out))


def expand(
    base: Mapping[str, Any] | None = None, grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: str | Sequence[int] | int = 0, samples: int | None = None, sample_seed: int = 0,
    ring_seed: int | None = 0, noise_free: bool = False,
) -> list[Trial]:
    """The trials of a sweep: every combination of ``grid`` values (or ``samples`` of them drawn at random,
    without repetition) over ``base`` config fields, times every seed. ``ring_seed`` None: each trial's
    simulated ring is seeded with the trial's seed. Raises UserError on any bad field or value."""
    base = dict(base or {})
    grid = {k: list(v) for k, v in (grid or {}).items()}
    for key, value in base.items():
        base[key] = _check_value(key, value)
    for key, values in grid.items():
        if key == "seed":
            raise UserError("give seeds with seeds=/--seeds, not in the grid")
        if not values:
            raise UserError(f"no values for {key}")
        grid[key] = [_check_value(key, v) for v in values]
    seed_list = parse_seeds(seeds)
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if samples is not None:
        if samples < 1:
            raise UserError("samples must be >= 1")
        import numpy as np

        order = np.random.default_rng(sample_seed).permutation(len(points))
        points = [points[i] for i in order[: min(samples, len(points))]]
    varied = tuple(k for k in grid if len({json.dumps(v, sort_keys=True) for v in grid[k]}) > 1)
    if len(seed_list) > 1:
        varied += ("seed",)
    trials = []
    for point in points:
        for seed in seed_list:
            fields = {**base, **point, "seed": seed}
            if "model" not in fields:
                fields["model"] = default_model(str(fields.get("task", "digits")))
            cfg = TrainConfig(**fields)
            check_config(cfg)
            trials.append(Trial(cfg, seed if ring_seed is None else ring_seed,
                                noise_free or cfg.estimator == "backprop", varied=varied))
    return trials


def parse_rigs(items: Sequence[str] = (), path: str | Path | None = None) -> dict[str, str]:
    """Rigs from ``NAME=URL`` items and/or a rigs file (JSON or TOML: ``{name = "url"}``, or a ``[rigs]``
    table); names are letters, digits, ``-`` and ``_``."""
    rigs: dict[str, str] = {}
    if path is not None:
        doc = load_spec(path)
        table = doc.get("rigs", doc)
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise UserError(f"{path}: a rigs file maps names to device URLs")
        rigs.update(table)
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise UserError(f"--rig takes NAME=URL, got {item!r}")
        rigs[name] = url
    for name in rigs:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"rig names are letters, digits, - and _: {name!r}")
    return rigs


def load_spec(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML file as a dict (UserError if unreadable)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UserError("TOML files need Python 3.11 or later; use a JSON file") from None
            return tomllib.loads(text)
        doc = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{p}: {exc}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{p}: expected an object at the top level")
    return doc


def assign_rigs(trials: Sequence[Trial], rigs: Mapping[str, str]) -> list[Trial]:
    """Trials spread over ``rigs`` round-robin (each trial gets its rig's name and URL); unchanged if none."""
    if not rigs:
        return list(trials)
    names = list(rigs)
    return [dataclasses.replace(t, rig=names[i % len(names)], url=rigs[names[i % len(names)]])
            for i, t in enumerate(trials)]


# -- one trial on a worker ----------------------------------------------------------------------------

def chunk_ends(cfg: TrainConfig) -> list[int]:
    """Steps at which a trial reports a checkpoint: where the trainer evaluates and checkpoints anyway."""
    every = math.lcm(cfg.eval_every, cfg.checkpoint_every)
    return [*range(every, cfg.steps, every), cfg.steps]


def _open_device(trial: Trial) -> Any:
    if trial.url is None:
        if trial.noise_free:
            from .sim.reservoirs import reference_ring

            return reference_ring(seed=trial.ring_seed, board=trial.board)
        from .sim_board import open_sim_board

        return open_sim_board(seed=trial.ring_seed, board=trial.board)
    from .client import RingClient

    return RingClient.open(trial.url)


def _metrics(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics record as Tune takes it: scalars only, no None (the final test record has no ``val_acc``)."""
    return {k: v for k, v in rec.items() if isinstance(v, (int, float, str, bool))}


def run_trial(config: Mapping[str, Any]) -> None:
    """The Tune trainable: one training run, resumed from Tune's checkpoint if it has one.

    The trainer runs in its own thread and queues its evaluations (each chunk's last one with a snapshot of
    the run directory); this thread reports them to Tune. A report waits for the driver to ask for the next
    one, so the trainer is allowed to run up to two evaluations ahead rather than wait for that round trip.
    """
    from ray import tune

    trial = Trial.from_dict(config["spec"]["trial"])
    run_dir = Path(tune.get_context().get_trial_dir()) / "run"  # the pgt run directory, next to Tune's files
    shutil.rmtree(run_dir, ignore_errors=True)  # (what a lost worker wrote after its last checkpoint)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(run_dir))
    events: queue.Queue[Any] = queue.Queue(maxsize=2)
    worker = threading.Thread(target=_train, args=(trial, run_dir, checkpoint is not None, events), daemon=True)
    worker.start()
    while (event := events.get()) is not None:
        if isinstance(event, BaseException):
            raise event
        rec, snapshot = event
        tune.report(rec, checkpoint=tune.Checkpoint.from_directory(str(snapshot)) if snapshot else None)
        if snapshot:
            shutil.rmtree(snapshot, ignore_errors=True)
    worker.join()


def _train(trial: Trial, run_dir: Path, resume: bool, events: queue.Queue[Any]) -> None:
    """The trial's training (see :func:`run_trial`): puts ``(metrics, snapshot dir or None)``, then None."""
    from .trainer import Trainer

    target = 0
    pid = {"pid": os.getpid()}
    sent = [0]  # history records handed over so far
    history: list[dict[str, Any]] = []

    def on_eval(rec: dict[str, Any]) -> None:
        if rec["step"] != target:  # a chunk's last evaluation goes with its checkpoint
            events.put((_metrics(rec) | pid, None))
            sent[0] = len(history)

    t_open, cpu0 = time.time(), time.process_time()
    device = None
    try:
        device = _open_device(trial)
        if resume:
            trainer = Trainer.resume(run_dir, device, on_eval=on_eval)
            resumed_from = trainer.step
        else:
            trainer = Trainer(device, trial.config, out_dir=run_dir, on_eval=on_eval, log=lambda line: None)
            resumed_from = -1
        trainer.log = lambda line: None
        history = trainer.history
        sent[0] = len(history)
        ends = [s for s in chunk_ends(trial.config) if s > trainer.step] or [trainer.step]
        for end in ends:
            target = end
            result = trainer.run(steps=end)
            history = trainer.history
            new = history[sent[0]:] or history[-1:]  # the chunk's last evaluation (at the end, and the test)
            for rec in new[:-1]:
                events.put((_metrics(rec) | pid, None))
            sent[0] = len(history)
            last = _metrics(new[-1]) | pid | {"resumed_from": resumed_from}
            if end == ends[-1]:
                _close(device)
                device = None
                ph = trainer.physical
                last |= {k: getattr(result, k) for k in RESULT_KEYS} | {
                    "k": ph.k, "m": ph.m, "slots": ph.slots, "wall_s": time.time() - t_open,
                    "cpu_s": time.process_time() - cpu0,  # (the worker process's, Ray's threads in it included)
                    "finished": True, "rig_open_t": t_open, "rig_close_t": time.time()}
            snapshot = None
            if any(run_dir.glob("checkpoint*")):
                snapshot = run_dir.with_name(f"snapshot-{end}")
                shutil.rmtree(snapshot, ignore_errors=True)
                shutil.copytree(run_dir, snapshot)
            events.put((last, snapshot))
    except BaseException as exc:
        events.put(exc)
    finally:
        _close(device)
        events.put(None)


def _close(device: Any) -> None:
    close = getattr(device, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


def trial_resources(config: dict[str, Any]) -> Any:
    """What a trial holds while it runs: its CPUs, and its rig's resource (capacity 1) if it has a rig."""
    from ray.tune import PlacementGroupFactory

    spec = config["spec"]
    rig = spec["trial"].get("rig")
    return PlacementGroupFactory([{"CPU": float(spec["cpus"])} | ({rig_resource(rig): 1.0} if rig else {})])


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.config['spec']['index']:03d}-{trial.trial_id}"


def rig_resource(name: str) -> str:
    """The Ray custom resource that stands for rig ``name``."""
    return f"rig:{name}"


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


def _read_history(trial_dir: str | None) -> list[dict[str, Any]]:
    """Every evaluation a trial reported (Tune's ``result.json``), once per step: a report repeated after a
    restart from a checkpoint replaces the earlier one."""
    if not trial_dir:
        return []
    path = Path(trial_dir) / "result.json"
    by_step: dict[tuple[int, bool], dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "step" in rec and ("val_acc" in rec or "test_acc" in rec):  # an evaluation, or the final test
            by_step[(int(rec["step"]), "test_step" in rec)] = {"val_acc": None, "test_acc": None} | {
                k: v for k, v in rec.items() if k not in _TUNE_KEYS}
    return [by_step[s] for s in sorted(by_step)]


_TUNE_KEYS = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
              "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
              "iterations_since_restore", "config", "should_checkpoint", "experiment_tag"}


def _start_ray(ray: Any, rigs: Mapping[str, str], address: str | None, num_cpus: int | None) -> bool:
    """Join or start Ray (True if started here) and check that every rig's resource exists."""
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
    if missing:
        if started:
            ray.shutdown()
        raise UserError(
            f"rig {missing[0]!r} is not a resource of this Ray cluster: start the node its USB port is on with "
            f"ray start --address=HEAD:6379 --resources='{{\"{rig_resource(missing[0])}\": 1}}'")
    return started


def _new_dir(out: str | Path, name: str | None) -> Path:
    base = Path(out) / (name or time.strftime("sweep-%Y%m%d-%H%M%S"))
    d, i = base, 1
    while d.exists():
        i += 1
        d = base.with_name(f"{base.name}.{i}")
    d.mkdir(parents=True)
    return d


def sweep(
    trials: Sequence[Trial | TrainConfig] = (), *, rigs: Mapping[str, str] | None = None,
    out: str | Path = "runs", name: str | None = None, address: str | None = None, num_cpus: int | None = None,
    cpus_per_trial: float = 1.0, asha: bool = False, grace: int | None = None, max_failures: int = 2,
    progress: Callable[[str], None] | None = None, callbacks: Sequence[Any] = (), resume: str | Path | None = None,
    report: bool = True,
) -> SweepResult:
    """Run ``trials`` (or resume the sweep in directory ``resume``) as Ray Tune trials; see the module doc.

    ``rigs`` ({name: device URL}) spreads the trials over rigs, one trial per rig at a time; without rigs every
    trial trains on its own in-process simulated ring. Uses the running Ray if there is one, else joins
    ``address`` or starts a local Ray (``num_cpus``: default all). ``asha``: stop trials early on validation
    accuracy (ASHA, ``grace`` steps at least). ``progress`` gets one line per event (default: stderr).
    With ``report`` the sweep's directory gets ``sweep.csv`` and ``accuracy.png``.
    Returns the trials' results in the order given; ``interrupted`` if Ctrl-C stopped it before the end.
    """
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    if resume is not None:
        sweep_dir = Path(resume)
        try:
            doc = json.loads((sweep_dir / SPEC).read_text())
        except (OSError, ValueError):
            raise UserError(f"{sweep_dir} is not a sweep directory (no readable {SPEC})") from None
        todo = [Trial.from_dict(t) for t in doc["trials"]]
        rigs = doc["rigs"]
    else:
        rigs = dict(rigs or {})
        parse_rigs([f"{k}={v}" for k, v in rigs.items()])  # check the names
        todo = [t if isinstance(t, Trial) else Trial(t, noise_free=t.estimator == "backprop") for t in trials]
        if not todo:
            raise UserError("a sweep needs at least one trial")
        for t in todo:
            check_config(t.config)
        if max_failures < 0 or cpus_per_trial <= 0:
            raise UserError("max_failures must be >= 0 and cpus_per_trial > 0")
        todo = assign_rigs(todo, rigs) if rigs else todo
        doc = {"trials": [t.to_dict() for t in todo], "rigs": rigs, "asha": asha, "grace": grace,
               "max_failures": max_failures, "cpus_per_trial": cpus_per_trial}
    ray = _import_ray()
    from ray import tune

    started = _start_ray(ray, rigs, address, num_cpus)
    try:
        if resume is None:
            sweep_dir = _new_dir(out, name)
            (sweep_dir / SPEC).write_text(json.dumps(doc, indent=1) + "\n")
        from ray.tune.logger import JsonLoggerCallback

        # result.json only (what _read_history reads); with Tune's automatic loggers the driver also wrote
        # progress.csv and a TensorBoard file, fsynced at every report: a quarter of its CPU time.
        cbs = [*_progress_callback(len(todo), say, callbacks), JsonLoggerCallback()]
        trainable = tune.with_resources(run_trial, trial_resources)
        storage = str(sweep_dir.resolve())
        if resume is not None and tune.Tuner.can_restore(os.path.join(storage, TUNE_DIR)):
            tuner = tune.Tuner.restore(os.path.join(storage, TUNE_DIR), trainable, resume_errored=True)
        else:
            specs = [{"index": i, "trial": t.to_dict(), "cpus": doc["cpus_per_trial"]} for i, t in enumerate(todo)]
            scheduler = None
            if doc["asha"]:
                from ray.tune.schedulers import ASHAScheduler

                max_t = max(t.config.steps for t in todo)
                g = doc["grace"] or max(1, min(t.config.eval_every for t in todo))
                # best validation accuracy so far: every record carries it (the final test record too)
                scheduler = ASHAScheduler(time_attr="step", metric="best_val_acc", mode="max",
                                          max_t=max(max_t, 1), grace_period=min(g, max(max_t, 1)),
                                          stop_last_trials=False)
            tuner = tune.Tuner(
                trainable, param_space={"spec": tune.grid_search(specs)},
                # (a stopped trial's trainer thread stays parked in its worker: no actor reuse with ASHA)
                tune_config=tune.TuneConfig(scheduler=scheduler, trial_dirname_creator=_trial_dirname,
                                            reuse_actors=not doc["asha"]),
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
        res.history = _read_history(r.path)
        vals = [h for h in res.history if h.get("val_acc") is not None]
        if res.status == "stopped" and vals:  # (the test set is evaluated only when a run ends)
            best = max(vals, key=lambda h: h["val_acc"])
            res.metrics |= {"best_val_acc": best["val_acc"], "best_test_acc": None,
                            "best_step": best["step"], "final_val_acc": vals[-1]["val_acc"]}
        results[index] = res
    return [r if r is not None else TrialResult(todo[i], "unfinished") for i, r in enumerate(results)]


# -- reports ------------------------------------------------------------------------------------------

COLUMNS = ("trial", "estimator", "seed", "rig", "status", "steps", "best_val_acc", "best_test_acc",
           "final_val_acc", "queries", "training_queries", "error")


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """One flat row per trial (the CSV's and the table's)."""
    out = []
    for r in result.trials:
        out.append({
            "trial": r.trial.group, "estimator": r.trial.config.estimator, "seed": r.trial.config.seed,
            "rig": r.trial.rig or "", "status": r.status, "steps": r.get("step", ""),
            **{k: r.get(k, "") for k in COLUMNS[6:11]}, "error": r.error or "",
            **{k: getattr(r.trial.config, k) for k in r.trial.varied if k not in ("seed", "estimator")},
        })
    return out


def write_csv(result: SweepResult, path: str | Path) -> Path:
    table = rows(result)
    keys = list(dict.fromkeys(k for row in table for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(table)
    return Path(path)


def format_table(result: SweepResult) -> str:
    """The results as an aligned text table, best validation accuracy first."""
    def pct(v: Any) -> str:
        return "-" if v in ("", None) else f"{100 * float(v):.1f}%"

    head = ["trial", "seed", "rig", "status", "steps", "best val", "test at best val", "final val", "queries",
            "error"]
    lines = []
    order = sorted(result.trials, key=lambda r: -(r.get("best_val_acc") or -1.0))
    for r in order:
        q = r.get("queries")
        lines.append([r.trial.group, str(r.trial.config.seed), r.trial.rig or "-", r.status,
                      str(r.get("step", "-")), pct(r.get("best_val_acc")), pct(r.get("best_test_acc")),
                      pct(r.get("final_val_acc")), "-" if q is None else f"{q:,}", r.error or ""])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [head, *lines])


def plot(result: SweepResult, path: str | Path) -> Path:
    """Validation accuracy against all device rows: every trial faint, the best trial of each group bold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    groups: dict[str, list[TrialResult]] = {}
    for r in result.trials:
        groups.setdefault(r.trial.group, []).append(r)
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for colour, (group, members) in zip(colours, groups.items()):
        for r in members:
            vals = [h for h in r.history if h.get("val_acc") is not None]
            if vals:
                ax.plot([max(h["queries"], 1) for h in vals], [100 * h["val_acc"] for h in vals],
                        color=colour, alpha=0.25, linewidth=0.8)
        best = max((r for r in members if r.history), key=lambda r: r.get("best_val_acc") or -1.0, default=None)
        if best is not None:
            vals = [h for h in best.history if h.get("val_acc") is not None]
            ax.plot([max(h["queries"], 1) for h in vals],
                    [100 * h["val_acc"] for h in vals], color=colour, linewidth=2.2,
                    label=f"{group} (seed {best.trial.config.seed})")
    ax.set_xscale("log")
    ax.set_xlabel("device rows (calibration + training + evaluation)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"sweep {result.dir.name}: {len(result.trials)} trials")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
