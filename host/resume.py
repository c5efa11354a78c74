"""What ``--resume`` checks before a run continues: a readable checkpoint (the previous one if the newest is
damaged), a config this pgt accepts, and the device: the same shape always, and the same board, uid and
simulator seed unless the caller says the device changed.

With ``device_changed`` a run continues on another device of the same shape: the model and the optimizer are
kept, the readout calibration and the estimator are measured anew on the new device (calibration rows), and
the best iterate is chosen afresh from an evaluation there (:meth:`pgt.trainer.Trainer.remeasure_device`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import checkpoint
from .config import TrainConfig, check_field
from .errors import UserError

IDENTITY = ("board", "uid", "seed", "level", "noise_free")
"""Device info keys that tell one device from another of the same shape."""


def load(run_dir: Path, steps: int | None, log: Callable[[str], None] | None = None) -> tuple[dict[str, Any],
                                                                                             TrainConfig]:
    """The checkpoint's state and its config (extended to ``steps``); UserError for anything unreadable."""
    state = checkpoint.load(run_dir, log)
    try:
        config = TrainConfig(**state["config"])
        at = int(state["step"])
        state["device"]["info"]  # noqa: B018 (present in every checkpoint this pgt writes)
    except (TypeError, KeyError, ValueError) as exc:
        raise UserError(f"the checkpoint in {run_dir} is from another pgt version or damaged: {exc!r}") from None
    except UserError as exc:
        raise UserError(f"the checkpoint in {run_dir} holds a config this pgt refuses: {exc}") from None
    if steps is not None:
        steps = check_field("steps", steps)
        if steps < at:
            raise UserError(f"--steps {steps}: the run is already at step {at}")
        config.steps = steps
        state["config"]["steps"] = steps
    return state, config


def _shape(info: dict[str, Any]) -> tuple[Any, Any]:
    return info.get("n_inputs", info.get("k")), info.get("n_outputs", info.get("m"))


def _name(info: dict[str, Any]) -> str:
    return str(info.get("url") or info.get("board") or info.get("kind") or "?")


def check_device(saved: dict[str, Any], now: dict[str, Any], device_changed: bool) -> str | None:
    """None if ``now`` is the device ``saved`` describes; else a note of what differs, if ``device_changed``
    allows it. UserError for another shape, or another device without ``device_changed``."""
    (k0, m0), (k1, m1) = _shape(saved), _shape(now)
    if None not in (k0, m0, k1, m1) and (k0, m0) != (k1, m1):
        raise UserError(f"the run was trained on a {k0}-drive, {m0}-tap device; {_name(now)} has {k1} drives and "
                        f"{m1} taps, which its model does not fit (resume on a device of the run's shape)")
    diff = [f"{key} {saved.get(key)} -> {now.get(key)}" for key in IDENTITY
            if key in saved and saved.get(key) != now.get(key)]
    if not diff:
        return None
    if not device_changed:
        raise UserError(f"this is not the device the run was trained on ({', '.join(diff)}); resume on it, or give "
                        "--device-changed to continue here (recalibrates the readout and the estimator on this "
                        "device and picks the best iterate anew)")
    return "; ".join(diff)


def write_files(run_dir: Path, history: list[dict[str, Any]], config_doc: dict[str, Any], note: str | None) -> None:
    """The metrics file as it was at the checkpoint (later lines dropped) and ``config.json`` rewritten from the
    checkpoint (steps as extended; a device change recorded)."""
    from .run_dir import CONFIG, METRICS, write_config

    checkpoint.atomic_write(run_dir / METRICS, b"".join((json.dumps(r) + "\n").encode() for r in history))
    try:
        old = json.loads((run_dir / CONFIG).read_text())
        changes = list(old.get("device_changes", [])) if isinstance(old, dict) else []
    except (OSError, ValueError):
        changes = []
    if note:
        changes.append({"step": history[-1]["step"] if history else 0, "change": note})
    write_config(run_dir, config_doc | ({"device_changes": changes} if changes else {}))
