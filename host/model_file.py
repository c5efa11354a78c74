"""A trained hybrid model you can load and run: ``pgt.load(RUN_DIR)`` -> :class:`Model`; nothing pickled.

A model is the run's best-validation parameters plus what it needs to run on new raw inputs through a device:
the task description (input scaling from the training split, classes or target scaling), the architecture
(``model``, ``model_options``, slots), and the physical layer's calibration (output normalisation, per-tap noise,
the device's ADC averaging ``n_avg``), with the board it was measured on (name, uid, drives k, taps m).
:meth:`Model.predict` restores that calibration on the device it is given and refuses a device of another shape
or board. It is read from a run directory's checkpoint, or from an exported ``model.json`` + ``model.npz``
(:meth:`Model.save`; ``pgt train`` writes them at the end of a run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, checkpoint
from .errors import UserError

Array = np.ndarray
MODEL_JSON, MODEL_NPZ = "model.json", "model.npz"
FORMAT = 1
"""The model file format this pgt reads and writes."""


class Model:
    """A trained model: ``predict(x, device)`` on raw inputs, ``description`` (a dict) and :meth:`describe`."""

    def __init__(self, doc: dict[str, Any], params: dict[str, Array], source: Path) -> None:
        self.doc = doc
        self.params = params
        self.source = source

    # -- what it is -----------------------------------------------------------------------------------
    @property
    def task(self) -> dict[str, Any]:
        return dict(self.doc["task"])

    @property
    def loss(self) -> str:
        return str(self.doc["task"].get("loss", "ce"))

    @property
    def metric(self) -> str:
        return "nmse" if self.loss == "mse" else "acc"

    @property
    def description(self) -> dict[str, Any]:
        """Task, input scaling, architecture, board, uid, k/m/slots, calibration, figures at selection, date,
        pgt version (plain data)."""
        return dict(self.doc)

    def describe(self) -> str:
        """A few lines for a person."""
        d, t, dev, cal = self.doc, self.doc["task"], self.doc["device"], self.doc["calibration"]
        sel = d["selection"]
        fig = (lambda v: "-" if v is None else f"NMSE {v:.4g}") if self.metric == "nmse" else \
            (lambda v: "-" if v is None else f"{100 * v:.1f}%")
        arch = d["config"]["model"] + "".join(f" {k}={v}" for k, v in d["config"]["model_options"].items())
        return "\n".join([
            f"model {self.source}: {t.get('name')} ({'regression' if self.loss == 'mse' else 'classification'}, "
            f"{t.get('kind')} inputs), {arch}, estimator {d['config']['estimator']}",
            f"  input scaling {t.get('scale', 'none')} (shift {_short(t.get('x_shift'))}, scale "
            f"{_short(t.get('x_scale'))})" + (f"; classes {_short(t.get('classes'))}" if self.loss == "ce" else ""),
            f"  board {dev.get('board', dev.get('kind', '?'))} uid {dev.get('uid', '-')}: k={dev['k']} drives, "
            f"m={dev['m']} taps, {cal['slots']} slots, n_avg {cal.get('device_n_avg', '-')}",
            f"  at selection (step {sel['step']}): validation {fig(sel['val'])}, test {fig(sel['test'])}; "
            f"{sel['queries']:,} device rows",
            f"  saved {d['date']} by pgt {d['pgt_version']}",
        ])

    # -- running it ------------------------------------------------------------------------------------
    def check_device(self, device: Any) -> list[str]:
        """UserError if ``device`` is not of the model's shape and board; warnings (a different uid) as lines."""
        dev = self.doc["device"]
        info = dict(getattr(device, "info", {}) or {})
        k, m = int(device.n_inputs), int(device.n_outputs)
        if (k, m) != (dev["k"], dev["m"]):
            raise UserError(f"the model was trained on a device with {dev['k']} drives and {dev['m']} taps; this "
                            f"one has {k} drives and {m} taps")
        if dev.get("board") and info.get("board") and dev["board"] != info["board"]:
            raise UserError(f"the model was trained on board {dev['board']!r}; this device is {info['board']!r}")
        if dev.get("uid") and info.get("uid") and dev["uid"] != info["uid"]:
            return [f"warning: this device (uid {info['uid']}) is not the one the model was calibrated on (uid "
                    f"{dev['uid']}); --recalibrate re-measures the normalisation (counted device rows)"]
        return []

    def build(self, device: Any, recalibrate: bool = False, probe: int | None = None) -> Any:
        """The hybrid model on ``device`` with the recorded calibration (or a fresh one: ``recalibrate``)."""
        from .models import build_model
        from .physical import PhysicalLayer

        cfg = self.doc["config"]
        physical = PhysicalLayer(device, slots=int(self.doc["calibration"]["slots"]))
        model = build_model(cfg["model"], self.task, physical, np.random.default_rng(0), **cfg["model_options"])
        model.load_state({"params": self.params})
        physical.load_state(_arrays(self.doc["calibration"]))
        if recalibrate:
            physical.fit_normalisation(np.random.default_rng(0), int(probe or cfg.get("probe", 256)))
        return model

    def scale_inputs(self, x: Any) -> Array:
        """Raw inputs -> the model's inputs (the training split's scaling); UserError on a wrong shape."""
        t = self.task
        x = np.asarray(x)
        want = (t["n_in"],) if t["kind"] == "vector" else (t["seq_len"], t.get("token_dim") or 0)
        if t["kind"] == "sequence" and t.get("vocab"):
            want = (t["seq_len"],)
        if x.ndim == 1 and len(want) == 1:
            x = x[None, :]
        if x.shape[1:] != want or x.dtype.kind not in "biuf":
            raise UserError(f"inputs of shape {x.shape[1:]} ({x.dtype}); the model takes {want} numbers per sample")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise UserError("the inputs hold NaN or inf")
        if "x_shift" not in t:
            return x
        return (x.astype(np.float64) - np.asarray(t["x_shift"])) * np.asarray(t["x_scale"])

    def outputs(self, x: Any, device: Any, batch: int = 512, progress: Callable[[int, int], None] | None = None,
                scaled: bool = False) -> tuple[Array, int]:
        """Raw model outputs (logits, or standardised predictions) for inputs ``x`` through ``device``, and the
        device rows spent. ``scaled``: ``x`` is already in the model's units (a task split)."""
        model = self.build(device)
        return run_through(model, x if scaled else self.scale_inputs(x), batch, progress)

    def decode(self, out: Array) -> Array:
        """Raw outputs -> class labels (as given at training) or regression values in the targets' units."""
        t = self.task
        if self.loss == "ce":
            classes = t.get("classes")
            idx = np.argmax(out, axis=1)
            return np.asarray(classes)[idx] if classes is not None else idx
        y = out / np.asarray(t["y_scale"]) + np.asarray(t["y_shift"])
        return y[:, 0] if t.get("y_shape") == [] else y

    def predict(self, x: Any, device: Any, batch: int = 512) -> Array:
        """Predictions for raw inputs ``x`` through ``device`` (checked against the model's board first):
        class labels, or regression values."""
        self.check_device(device)
        out, _ = self.outputs(x, device, batch)
        return self.decode(out)

    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` + ``model.npz`` into the directory ``path``; returns the JSON's path."""
        import io

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.params)  # type: ignore[arg-type]
        checkpoint.atomic_write(out / MODEL_NPZ, buf.getvalue())
        checkpoint.atomic_write(out / MODEL_JSON, (json.dumps(_plain(self.doc), indent=1) + "\n").encode())
        return out / MODEL_JSON


def run_through(model: Any, x: Array, batch: int = 512,
                progress: Callable[[int, int], None] | None = None) -> tuple[Array, int]:
    """Unperturbed forward of ``model`` (built on a device) over ``x`` in blocks; (outputs, device rows)."""
    ph = model.physical
    q0 = ph.reservoir.queries
    out = []
    for i in range(0, len(x), batch):
        a, pc = model.pre(x[i : i + batch])
        u, _ = ph.drive(a)
        out.append(model.post(ph.normalise(ph.query(u)), pc)[0])
        if progress is not None:
            progress(min(i + batch, len(x)), len(x))
    return np.concatenate(out), int(ph.reservoir.queries - q0)


def _short(v: Any, n: int = 4) -> str:
    if v is None:
        return "-"
    v = list(np.ravel(v))
    text = ", ".join(f"{e:.4g}" if isinstance(e, float) else str(e) for e in v[:n])
    return f"[{text}{', ...' if len(v) > n else ''}]"


def _plain(tree: Any) -> Any:
    if isinstance(tree, np.ndarray):
        return tree.tolist()
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_plain(v) for v in tree]
    return tree


def _arrays(cal: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v, dtype=np.float64) if isinstance(v, list) else v for k, v in cal.items()}


def from_state(state: dict[str, Any], source: Path, date: str) -> Model:
    """A :class:`Model` from a trainer checkpoint's state."""
    from .config import TrainConfig, check_config

    cfg = state["config"]
    task = state.get("task") or check_config(TrainConfig(**cfg)).info
    metric = "nmse" if task.get("loss") == "mse" else "acc"
    best = state["best"]
    params = best["params"] if best.get("params") is not None else state["model"]["params"]
    history = state.get("history", [])
    tests = [r[f"test_{metric}"] for r in history
             if r.get(f"test_{metric}") is not None and r.get("test_step") == best["step"]]
    info = state["device"]["info"]
    physical = {k: v for k, v in state["physical"].items()}
    physical["slots"] = int(physical.get("slots") or cfg["model_options"].get("slots") or 1)
    device = {key: info.get(key) for key in ("board", "uid", "kind", "url") if info.get(key) is not None}
    device |= {"k": int(info.get("n_inputs", info.get("k", 0))), "m": int(info.get("n_outputs", info.get("m", 0)))}
    doc = {
        "format": FORMAT, "pgt_version": __version__, "date": date, "config": cfg, "task": task,
        "device": device, "calibration": physical,
        "selection": {"step": best["step"], "metric": metric, "val": best.get(f"val_{metric}"),
                      "test": tests[-1] if tests else None, "queries": state["counters"]["calibration"]
                      + state["counters"]["train"] + state["counters"]["eval"]},
        "history": history,
    }
    return Model(_plain(doc), {k: np.asarray(v) for k, v in params.items()}, source)


def load(path: str | Path) -> Model:
    """A trained model from a run directory (its checkpoint) or from exported ``model.json`` + ``model.npz``
    (a directory holding them, or the JSON file). UserError in one line if there is none, or it was written by
    a newer, incompatible pgt."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such run directory or model file: {p}")
    json_path = p if p.is_file() else p / MODEL_JSON
    if json_path.exists():
        try:
            doc = json.loads(json_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {json_path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            fmt = doc.get("format") if isinstance(doc, dict) else None
            by = doc.get("pgt_version", "?") if isinstance(doc, dict) else "?"
            raise UserError(f"{json_path} is model format {fmt!r} (written by pgt {by}); this pgt {__version__} "
                            f"reads format {FORMAT}" + ("; upgrade pgt" if isinstance(fmt, int) and fmt > FORMAT
                                                        else ""))
        try:
            with np.load(json_path.parent / MODEL_NPZ, allow_pickle=False) as f:
                params = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {json_path.parent / MODEL_NPZ}: {exc}") from None
        return Model(doc, params, json_path.parent)
    if p.is_file():
        raise UserError(f"{p}: a model is a run directory or a model.json")
    state = checkpoint.load(p)
    try:
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((p / checkpoint.CHECKPOINT).stat().st_mtime))
        return from_state(state, p, date)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{p}: the checkpoint is from another pgt version ({exc})") from None
