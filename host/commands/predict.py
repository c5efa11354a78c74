"""``pgt predict RUN_DIR --data FILE``: run a trained model on new inputs through the device; predictions as CSV.

Everything is checked before the device is opened (the run's model, the file, the input shape, the output path);
then the device is checked against the model's board (drives, taps and board name must match; another uid gets
a warning, ``--recalibrate`` re-measures the output normalisation with counted rows). Every device row is
counted and shown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

NAME = "predict"
HELP = "run a trained model (a run directory) on new inputs through the device; write predictions as CSV"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The run directory and device options shared by ``pgt predict`` and ``pgt eval``."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's directory (or a directory with model.json)")
    p.add_argument("--device", metavar="URL",
                   help="device URL (serial port, pyserial URL or sim://...; default: the URL the run recorded)")
    p.add_argument("--recalibrate", action="store_true",
                   help="re-measure the output normalisation on this device first (counted device rows)")
    p.add_argument("--batch", type=int, default=512, help="samples per device block (default 512)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="FILE",
                        help="inputs in the run's data format: .npz (x, optional y), .csv (the label column, if "
                             "present, is compared), IDX images[,labels]; raw values (the model scales them)")
    source.add_argument("--split", choices=("train", "val", "test"),
                        help="the run's own split instead (rebuilt from its task or data file)")
    p.add_argument("--label", help="--data CSV: the label column (default: the run's)")
    p.add_argument("--out", metavar="CSV", help="write the predictions here (default: standard output)")


class Inputs:
    """What to run: model inputs (raw unless ``scaled``) and the labels/targets to compare with (or None)."""

    def __init__(self, x: Any, y: Any, scaled: bool, what: str) -> None:
        self.x, self.y, self.scaled, self.what = x, y, scaled, what


class Measured(NamedTuple):
    """What :func:`measure` gives: the device, the model's outputs, and the device rows spent on inference and on
    (re)calibration."""

    device: Any
    out: np.ndarray
    rows: int
    cal_rows: int


def load_model(args: argparse.Namespace) -> Any:
    from pgt.errors import UserError
    from pgt.model_file import load

    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    model = load(args.run_dir)
    url = args.device or model.doc["device"].get("url")
    if not url:
        raise UserError(f"{args.run_dir} recorded no device URL: give --device URL")
    from pgt.device import check_device_url

    check_device_url(url)
    return model, url


def split_inputs(model: Any, split: str) -> Inputs:
    """The run's own split, rebuilt from its config (already in the model's units)."""
    from pgt.config import TrainConfig, check_config

    task = check_config(TrainConfig(**model.doc["config"]))
    return Inputs(getattr(task, f"x_{split}"), getattr(task, f"y_{split}"), True, f"the run's {split} split")


def file_inputs(model: Any, spec: str, label: str | None) -> Inputs:
    from pgt.datasets import LABEL_KEY, read_arrays
    from pgt.errors import UserError

    label = label or model.task.get("label")
    arrays = read_arrays(spec, label if spec.lower().removesuffix(".gz").endswith(".csv") else None,
                         need_label=False)
    arrays.pop(LABEL_KEY, None)
    x, y = arrays["x"], arrays.get("y")
    if len(x) == 0:
        raise UserError(f"{spec}: no inputs")
    if y is not None and len(y) != len(x):
        raise UserError(f"{spec}: x has {len(x)} samples but y has {len(y)}")
    if y is not None and model.loss == "mse" and np.asarray(y).dtype.kind not in "biuf":
        raise UserError(f"{spec}: the targets are not numbers; the model is a regression")
    model.scale_inputs(x[:1])  # the shape and values, before any device
    if not np.all(np.isfinite(np.asarray(x, dtype=np.float64))):
        raise UserError(f"{spec}: x holds NaN or inf")
    return Inputs(x, y, False, spec)


def measure(model: Any, url: str, inputs: Inputs, args: argparse.Namespace, say: Any) -> Measured:
    """Open the device, check it against the model, build the model on it (recalibrating if asked) and run
    ``inputs`` through it in blocks of ``--batch`` samples, with progress; every device row counted."""
    from pgt.device import open_device
    from pgt.model_file import run_through

    device = open_device(url)
    for line in model.check_device(device):
        say(line)
    q0 = device.queries
    built = model.build(device, recalibrate=args.recalibrate)
    q1 = device.queries
    x = inputs.x if inputs.scaled else model.scale_inputs(inputs.x)
    t0 = last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if not args.quiet and now - last > 2.0 and done < total:
            say(f"{done:,}/{total:,} samples, {now - t0:.0f} s")
            last = now

    out, _ = run_through(built, x, args.batch, progress)
    return Measured(device, out, int(device.queries - q1), int(q1 - q0))


def score(model: Any, out: np.ndarray, inputs: Inputs) -> float | None:
    """The figure on these inputs (accuracy, or NMSE), if labels/targets were given."""
    from pgt.progress import nmse

    if inputs.y is None:
        return None
    if inputs.scaled:  # the task's own labels: class indices, or standardised targets
        from pgt.progress import scores

        return scores(out, inputs.y, model.loss)[model.metric]
    pred = model.decode(out)
    if model.loss == "ce":
        return float(np.mean(pred.astype(str) == np.asarray(inputs.y).astype(str)))
    return nmse(pred, np.asarray(inputs.y, dtype=np.float64))


def write_csv(path: str | None, pred: np.ndarray, labels: Any) -> None:
    import csv

    f = open(path, "w", newline="") if path else sys.stdout
    try:
        w = csv.writer(f)
        cols = 1 if pred.ndim == 1 else pred.shape[1]
        head = ["index"] + (["prediction"] if cols == 1 else [f"prediction_{j}" for j in range(cols)])
        w.writerow(head + (["label"] if labels is not None else []))
        for i, p in enumerate(pred):
            row = [i] + ([p] if pred.ndim == 1 else list(p))
            w.writerow(row + ([np.asarray(labels)[i]] if labels is not None else []))
    finally:
        if path:
            f.close()


def run(args: argparse.Namespace) -> int:
    from pgt.commands.train import figure_text
    from pgt.errors import UserError

    model, url = load_model(args)
    inputs = split_inputs(model, args.split) if args.split else file_inputs(model, args.data, args.label)
    if args.out:
        parent = Path(args.out).resolve().parent
        if not parent.is_dir():
            raise UserError(f"--out {args.out}: no such directory {parent}")

    def say(line: str) -> None:
        print(f"pgt predict: {line}", file=sys.stderr, flush=True)

    device, out, rows, cal_rows = measure(model, url, inputs, args, say)
    pred = model.decode(out)
    labels = inputs.y
    if inputs.scaled and labels is not None:
        labels = model.decode(labels) if model.loss == "mse" else np.asarray(model.task["classes"])[labels]
    write_csv(args.out, pred, labels)
    fig = score(model, out, inputs)
    said = "" if fig is None else figure_text(model.metric, fig, "").strip() + "; "
    print(f"{len(pred):,} predictions for {inputs.what}: {said}device rows {rows + cal_rows:,} (inference "
          f"{rows:,}, calibration {cal_rows:,})" + (f"; written to {args.out}" if args.out else ""),
          file=sys.stderr)
    return 0
