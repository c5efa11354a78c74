"""What a sweep is, before anything runs: its trials (a config and a device each), rigs, spec files, results.

Everything here is plain data and checks; nothing imports Ray. Every input error is a one-line UserError.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainConfig, check_config, check_field
from ..errors import UserError
from ..tasks import default_model

RAY_HINT = "pgt sweep needs Ray Tune: pip install 'pgt[ray]'  (or: pip install 'ray[tune]>=2.44,<3')"
SPEC = "sweep.json"
TUNE_DIR = "tune"
RESULT_KEYS = ("best_val_acc", "best_test_acc", "final_val_acc", "best_step", "queries", "calibration_queries",
               "training_queries", "eval_queries", "device_seconds")
MAX_TRIALS = 10_000
"""The most trials one sweep plans (each is a Tune trial with its own directory)."""
MAX_NAME = 100
"""The longest sweep or rig name (a directory name, with room for Tune's files beneath it)."""
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
    """``"0-7"``, ``"0,3,5"``, ``"0-3,9"``, a list or an int -> a list of distinct seeds in order (at most
    :data:`MAX_TRIALS`)."""
    if isinstance(text, bool):
        raise UserError(f"seeds must be integers, got {text!r}")
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        seeds = list(text)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise UserError(f"seeds must be integers, got {seeds!r}")
        out = list(dict.fromkeys(seeds))
    else:
        out = []
        try:
            for part in text.split(","):
                lo, sep, hi = part.strip().partition("-")
                span = range(int(lo), int(hi) + 1) if sep else range(int(lo), int(lo) + 1)
                if len(out) + len(span) > MAX_TRIALS:
                    raise UserError(f"seeds {text[:40]!r} give more than {MAX_TRIALS:,} seeds (a sweep runs at "
                                    f"most {MAX_TRIALS:,} trials)")
                out.extend(span)
        except ValueError:
            raise UserError(f"seeds are like 0-7 or 0,3,5, got {text[:40]!r}") from None
        out = list(dict.fromkeys(out))
    if not out:
        raise UserError(f"no seeds in {str(text)[:40]!r}")
    if len(out) > MAX_TRIALS:
        raise UserError(f"{len(out):,} seeds: a sweep runs at most {MAX_TRIALS:,} trials")
    return out


def expand(
    base: Mapping[str, Any] | None = None, grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: str | Sequence[int] | int = 0, samples: int | None = None, sample_seed: int = 0,
    ring_seed: int | None = 0, noise_free: bool = False,
) -> list[Trial]:
    """The trials of a sweep: every combination of ``grid`` values (or ``samples`` of them drawn at random,
    without repetition) over ``base`` config fields, times every seed. ``ring_seed`` None: each trial's
    simulated ring is seeded with the trial's seed. Raises UserError on any bad field or value, or a sweep of
    more than :data:`MAX_TRIALS` trials."""
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
    if samples is not None and samples < 1:
        raise UserError("samples must be >= 1")
    n_points = math.prod(len(v) for v in grid.values())
    n_trials = min(n_points, samples or n_points) * len(seed_list)
    if n_trials > MAX_TRIALS:
        raise UserError(f"{n_trials:,} trials ({n_points:,} grid points x {len(seed_list):,} seeds): a sweep runs "
                        f"at most {MAX_TRIALS:,}")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if samples is not None:
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


def check_name(name: str, what: str = "sweep name") -> str:
    """``name`` if it is one plain directory name (letters, digits, ``. - _``; no path, at most
    :data:`MAX_NAME` characters), else UserError."""
    if len(name) > MAX_NAME:
        raise UserError(f"the {what} is {len(name)} characters long; at most {MAX_NAME}")
    if not _NAME.fullmatch(name):
        raise UserError(f"the {what} is one directory name of letters, digits, '.', '-' and '_' (not starting "
                        f"with '.' or '-'), got {name!r}")
    return name


def parse_rigs(items: Sequence[str] = (), path: str | Path | None = None) -> dict[str, str]:
    """Rigs from ``NAME=URL`` items and/or a rigs file (JSON or TOML: ``{name = "url"}``, or a ``[rigs]``
    table); names are letters, digits, ``-`` and ``_``, each given once. A URL that is a relative path to an
    existing file (``port3``) is made absolute, as ``pgt train --device port3`` would open it here (a trial's
    worker runs in its own directory)."""
    rigs: dict[str, str] = {}
    if path is not None:
        doc = load_spec(path)
        table = doc.get("rigs", doc)
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise UserError(f"{path}: a rigs file maps names to device URLs")
        rigs.update(table)
    given: set[str] = set()
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise UserError(f"--rig takes NAME=URL, got {item[:80]!r}")
        if name in given:
            raise UserError(f"rig {name[:40]!r} is given twice (each rig is one device: give it once)")
        given.add(name)
        rigs[name] = url
    for name, url in rigs.items():
        check_name(name, "rig name")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"rig names are letters, digits, - and _: {name!r}")
        rigs[name] = _absolute(url)
    return rigs


def _absolute(url: str) -> str:
    if url.startswith("sim:") or "://" in url or Path(url).is_absolute() or not Path(url).exists():
        return url
    return str(Path(url).absolute())


def load_spec(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML file as a dict (UserError if unreadable or another format)."""
    p = Path(path)
    if p.suffix not in (".json", ".toml"):
        raise UserError(f"{p}: unsupported spec format {p.suffix or '(no suffix)'!r}: use a .toml or .json file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {p}: {getattr(exc, 'strerror', None) or exc}") from None
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


def load_sweep(sweep_dir: str | Path) -> tuple[list[Trial], dict[str, Any]]:
    """The trials and options a sweep directory's ``sweep.json`` planned (UserError if it is not one)."""
    path = Path(sweep_dir) / SPEC
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise UserError(f"{sweep_dir} is not a sweep directory (no readable {SPEC})") from None
    try:
        trials = [Trial.from_dict(t) for t in doc["trials"]]
        rigs = doc["rigs"]
        ok = (trials and isinstance(rigs, dict) and all(isinstance(v, str) for v in rigs.values())
              and all(t.rig is None or t.rig in rigs for t in trials))
        options = {k: doc[k] for k in ("asha", "grace", "max_failures", "cpus_per_trial")}
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise UserError(f"{path} is not a pgt sweep spec (it needs its trials, rigs and options, as pgt sweep "
                        "wrote them)")
    for t in trials:
        check_config(t.config)
    return trials, {"rigs": rigs, **options}


def assign_rigs(trials: Sequence[Trial], rigs: Mapping[str, str]) -> list[Trial]:
    """Trials spread over ``rigs`` round-robin (each trial gets its rig's name and URL); unchanged if none."""
    if not rigs:
        return list(trials)
    names = list(rigs)
    return [dataclasses.replace(t, rig=names[i % len(names)], url=rigs[names[i % len(names)]])
            for i, t in enumerate(trials)]


def chunk_ends(cfg: TrainConfig) -> list[int]:
    """Steps at which a trial reports a checkpoint: where the trainer evaluates and checkpoints anyway."""
    every = math.lcm(cfg.eval_every, cfg.checkpoint_every)
    return [*range(every, cfg.steps, every), cfg.steps]


def rig_resource(name: str) -> str:
    """The Ray custom resource that stands for rig ``name``."""
    return f"rig:{name}"
