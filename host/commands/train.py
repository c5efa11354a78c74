"""``pgt train``: train a hybrid model through a reservoir (default: the simulated board, in process).

Every flag and every ``-E key=value`` is checked before the device is opened; a bad invocation ends with a
one-line reason and no device query. ``--resume RUN_DIR`` continues a run (``--steps`` extends it; a flag that
would change the run is refused).
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "train"
HELP = "train a network with a physical reservoir layer by perturbative gradient training"

RESUME_FLAGS = ("steps", "device", "device_changed", "quiet")
"""The flags ``--resume`` accepts: they do not change the run (``--steps`` only extends it)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pgt.config import CONSTRAINTS, MODEL_OPTIONS
    from pgt.tasks import TASKS
    from pgt.trainer import ESTIMATORS, TrainConfig

    d = TrainConfig()

    def field(name: str, text: str) -> None:  # a TrainConfig field's flag, parsed and checked by its declaration
        flag = "--" + name.replace("_", "-")
        rule = CONSTRAINTS[name]
        p.add_argument(flag, type=rule.argtype(flag), help=text if rule.choices else
                       f"{text}; {rule.describe(with_none=False)}")

    # Defaults are None here and come from TrainConfig, so --resume can tell which flags were given.
    field("task", f"one of {', '.join(TASKS)} (default: {d.task})")
    p.add_argument("--data", metavar="FILE",
                   help="your own data instead of --task: an .npz (x, y; optional x_val, y_val, x_test, y_test), a "
                        ".csv with a header (label column: --label, default the last), or IDX files as MNIST ships "
                        "them, images and labels joined by a comma (plain or .gz); README 'Your own data'")
    p.add_argument("--label", help="--data CSV: the label (target) column (default: the last column)")
    field("loss", "ce (classification) or mse (regression) (default: from the labels: integers or text -> ce, "
                  "floats -> mse)")
    field("scale", "--data: input scaling from the training split: global (overall min..max -> 0..1, the "
                   "default), feature (each feature to mean 0, sd 1) or none")
    field("model", "mlp or transformer (default: the task's: mlp for vectors (digits, narma10, mackey_glass, a "
                   "2-d x), transformer for sequences)")
    field("estimator", f"one of {', '.join(ESTIMATORS)} (default: {d.estimator})")
    p.add_argument("-E", "--estimator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="estimator option, repeatable, e.g. -E directions=4 (node, param), -E sigma=0.05 (node, "
                        "param), -E refit_every=5 (surrogate); a bad key lists the valid ones")
    p.add_argument("--hidden", type=_widths, help="mlp: widths of extra dense layers after the ring, e.g. 32,16")
    p.add_argument("--slots", type=MODEL_OPTIONS["slots"].argtype("--slots"),
                   help="device rows per sample (token): the ring layer is slots x k drives wide (default: "
                        "enough for 16 drive units, 8 on the 2-drive rp2 board)")
    p.add_argument("--d-model", type=MODEL_OPTIONS["d_model"].argtype("--d-model"),
                   help="transformer: model width (default 32)")
    p.add_argument("--heads", type=MODEL_OPTIONS["heads"].argtype("--heads"),
                   help="transformer: attention heads (default 4)")
    p.add_argument("--device", metavar="URL",
                   help="device URL: a serial port such as /dev/ttyACM0, a pyserial URL, or sim://?seed=0 "
                        "(default: the simulated board in process, sim://?seed=RING_SEED; backprop uses the "
                        "noise-free differentiable ring of the same shape)")
    p.add_argument("--noise-free", action="store_true", help="simulated board without noise (default device only)")
    p.add_argument("--ring-seed", type=CONSTRAINTS["seed"].argtype("--ring-seed"),
                   help="seed of the default simulated board (default 0)")
    field("steps", f"optimizer steps in all (default {d.steps}; with --resume: extend the run to this many)")
    field("batch_size", f"samples per step (default {d.batch_size})")
    field("optimizer", f"sgd, momentum or adam (default {d.optimizer})")
    field("lr", "learning rate > 0 (default: chosen at calibration from --lr-rel)")
    field("lr_rel", "learning rate relative to the RMS of the initial weights, used when --lr is not given "
                    "(default 0.1 for backprop, surrogate and twin, 0.03 for node and param)")
    field("schedule", f"constant or cosine (default {d.schedule})")
    field("clip", "clip gradients to this global norm > 0 (default: no clipping)")
    field("settle_us", "device settle time per row in us (default: the board's, as pgt selftest --write "
                       "measured it; refused below its settle_min_us)")
    field("eval_every", f"steps between validation evaluations (default {d.eval_every})")
    p.add_argument("--val-size", type=_val_size,
                   help=f"validation samples per evaluation, a fixed subsample (default {d.val_size}; 0: all)")
    field("checkpoint_every", f"steps between checkpoints (default {d.checkpoint_every})")
    field("seed", "seed of the model, batches and perturbations (default 0)")
    field("probe", f"device rows of the calibration probe batch (default {d.probe})")
    p.add_argument("--out", help="parent directory of run directories (default: runs/); each run gets a new one")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (accepts --steps, --device, "
                                                       "--device-changed)")
    p.add_argument("--device-changed", action="store_true",
                   help="with --resume: continue on a device other than the run's (same shape; another board, "
                        "uid or simulator seed): recalibrates the readout and the estimator there and picks the "
                        "best iterate anew")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _val_size(text: str) -> int:
    """``--val-size``: 0 (the whole validation set) or what the val_size declaration allows."""
    from pgt.config import CONSTRAINTS

    if text.strip() == "0":
        return 0
    try:
        return int(CONSTRAINTS["val_size"].argtype("--val-size")(text))
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or 0: the whole validation set)") from None


def _widths(text: str) -> tuple[int, ...]:
    """``--hidden 32,16`` -> (32, 16); every width checked by the model-option declaration."""
    from pgt.config import MODEL_OPTIONS

    parts = text.split(",")
    try:
        if not text or not all(p.strip() for p in parts):
            raise ValueError
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated widths such as 32,16, got {text[:60]!r}") from None
    check = MODEL_OPTIONS["hidden"].argtype("--hidden")
    return tuple(check(str(w)) for w in widths)


def _given(args: argparse.Namespace) -> list[str]:
    """The flags given on the command line (not at their defaults), as their option names."""
    skip = {"resume", "command"}
    out = []
    for key, value in vars(args).items():
        if key in skip or key.startswith("_") or value is None or value is False or value == []:
            continue
        out.append(key)
    return out


def _estimator_options(items: list[str]) -> dict[str, Any]:
    import json

    from pgt.errors import UserError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"-E/--estimator-option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _new_config(args: argparse.Namespace) -> Any:
    """The run's TrainConfig from the flags, checked in full (no device touched)."""
    from pgt.errors import UserError
    from pgt.tasks import default_model
    from pgt.trainer import TrainConfig, check_config

    d = TrainConfig()
    task = d.task if args.task is None else args.task
    model = default_model(task) if args.model is None else args.model
    if args.data is not None:
        from pgt.datasets import load_data

        if args.task is not None:
            raise UserError("--task and --data are alternatives: a built-in task or your own file")
        data = load_data(args.data, args.label, args.loss, args.scale or d.scale)  # checked before any device
        task = "data"
        model = args.model or ("mlp" if data.info["kind"] == "vector" else "transformer")
    if model == "mlp" and (args.d_model is not None or args.heads is not None):
        raise UserError("--d-model and --heads set up the transformer; the mlp takes --hidden")
    if model != "mlp" and args.hidden is not None:
        raise UserError("--hidden sets up the mlp; the transformer takes --d-model and --heads")
    options: dict[str, Any] = {"hidden": args.hidden or ()} if model == "mlp" else {
        "d_model": 32 if args.d_model is None else args.d_model, "heads": 4 if args.heads is None else args.heads}
    if args.slots is not None:
        options["slots"] = args.slots
    given = {k: getattr(args, k) for k in ("estimator", "steps", "batch_size", "optimizer", "lr", "lr_rel",
                                           "schedule", "clip", "eval_every", "checkpoint_every", "seed", "probe",
                                           "settle_us")
             if getattr(args, k) is not None}
    val_size = {} if args.val_size is None else {"val_size": args.val_size or None}
    own = {"data": args.data, "label": args.label, "loss": args.loss, "scale": args.scale or d.scale}
    try:
        cfg = TrainConfig(task=task, model=model, model_options=options, **given, **val_size, **own,
                          estimator_options=_estimator_options(args.estimator_option))
        check_config(cfg)
    except UserError as exc:  # name the flags as typed
        text = str(exc)
        for key in ("batch_size", "eval_every", "checkpoint_every", "val_size", "d_model", "lr_rel", "(hidden"):
            text = text.replace(key, key.replace("(", "(--").replace("_", "-") if "(" in key else
                                "--" + key.replace("_", "-"))
        raise UserError(text) from None
    return cfg


def _check_device_url(url: str | None, args: argparse.Namespace) -> None:
    """Device flags that can be checked without opening the device."""
    from pgt.errors import UserError

    if args.device_changed:
        raise UserError("--device-changed goes with --resume (a new run has no device to change)")
    if url is None:
        return
    if args.noise_free or args.ring_seed is not None:
        raise UserError("--noise-free and --ring-seed set up the default simulated board; with --device put "
                        "them in the URL (sim://?seed=1&noise_free=1)")
    if args.estimator == "backprop":  # known before any device is opened
        raise UserError("--estimator backprop runs through the noise-free ring model in process (the exact "
                        f"gradient): leave out --device {url}")
    from pgt.device import check_device_url

    check_device_url(url)  # a stopped `pgt sim`'s pty, a file: said before the run directory is made


def _resume(args: argparse.Namespace) -> Any:
    """Check a --resume invocation, then open the device and rebuild the trainer."""
    from pathlib import Path

    from pgt import resume
    from pgt.device import open_device
    from pgt.errors import UserError
    from pgt.trainer import Trainer

    changing = [k for k in _given(args) if k not in RESUME_FLAGS]
    if changing:
        names = ", ".join("-E" if k == "estimator_option" else "--" + k.replace("_", "-") for k in changing)
        raise UserError(f"--resume continues a run as it was configured: {names} would change it (--resume "
                        "accepts only --steps to extend it, --device, --device-changed and --quiet)")
    if not args.resume:
        raise UserError("--resume needs a run directory, got ''")
    if args.device is not None:
        from pgt.device import check_device_url

        check_device_url(args.device)
    run_dir = Path(args.resume)
    state, _ = resume.load(run_dir, args.steps)  # (a clear error before any device is opened)
    device = open_device(args.device) if args.device else None
    trainer = Trainer.resume(run_dir, device, steps=args.steps, on_eval=_printer(args.quiet),
                             device_changed=args.device_changed, log=_log(args.quiet))
    return trainer, run_dir, state["step"]


def _log(quiet: bool) -> Any:
    from pgt.trainer import log_to_stderr

    return (lambda line: None) if quiet else log_to_stderr


def _printer(quiet: bool) -> Any:
    import sys

    from pgt.trainer import progress_line

    def on_eval(rec: dict[str, Any]) -> None:
        if not quiet:
            print(progress_line(rec), file=sys.stderr, flush=True)

    return on_eval


def run(args: argparse.Namespace) -> int:
    import sys

    from pgt.device import default_device, open_device
    from pgt.model_file import load
    from pgt.plots import accuracy_vs_queries
    from pgt.run_dir import check_out, new_run_dir
    from pgt.trainer import Trainer

    if args.resume is not None:
        trainer, run_dir, at = _resume(args)
        if not args.quiet:
            print(f"resumed from step {at}: {run_dir}", file=sys.stderr)
    else:
        cfg = _new_config(args)
        _check_device_url(args.device, args)
        out = check_out("runs" if args.out is None else args.out)
        if args.device:
            device = open_device(args.device)
        elif args.noise_free and cfg.estimator != "backprop":
            device = open_device(f"sim://?seed={args.ring_seed or 0}&noise_free=1")
        else:
            device = default_device(cfg.estimator, args.ring_seed or 0)
        name = (cfg.data.split(",")[0].replace("\\", "/").rsplit("/", 1)[-1].split(".")[0] or "data") \
            if cfg.data else cfg.task
        run_dir = new_run_dir(out, f"{name}-{cfg.model}-{cfg.estimator}-s{cfg.seed}")
        trainer = Trainer(device, cfg, out_dir=run_dir, on_eval=_printer(args.quiet), log=_log(args.quiet))
        if not args.quiet:
            info = device.info
            print(f"run {run_dir}: {trainer.task.name}/{cfg.model}/{cfg.estimator}, {trainer.model.n_params()} "
                  "parameters, "
                  f"device {info.get('url', info.get('kind', '?'))} ({device.n_inputs} drives -> "
                  f"{device.n_outputs} taps)", file=sys.stderr)
    trainer.on_progress = None if args.quiet else _log(False)
    result = trainer.run()
    png = accuracy_vs_queries({trainer.config.estimator: result.history}, run_dir / "accuracy.png",
                              title=f"{trainer.task.name} / {trainer.config.model}, device "
                                    f"{trainer.reservoir.n_inputs} drives -> {trainer.reservoir.n_outputs} taps",
                              val_size=len(trainer.val_idx), metric=result.metric,
                              chance=None if result.metric == "nmse" else 1.0 / trainer.task.info["n_classes"])
    load(run_dir).save(run_dir)  # model.json + model.npz: pgt.load, pgt predict
    print(
        f"test {'NMSE' if result.metric == 'nmse' else 'accuracy'} at the best-validation step "
        f"{value_text(result.metric, result.best_test)} (step {result.best_step}, validation "
        f"{value_text(result.metric, result.best_val)}); device queries {result.queries:,} (calibration "
        f"{result.calibration_queries:,}, training {result.training_queries:,}, evaluation "
        f"{result.eval_queries:,}); device time {result.device_seconds:.1f} s; run {run_dir}; plot {png}"
    )
    return 0


def value_text(metric: str, value: float | None) -> str:
    """``93.1%`` (accuracy) or ``0.0123 (R² 0.988)`` (NMSE); ``-`` for a figure not measured."""
    if value is None:
        return "-"
    return f"{value:.4g} (R² {1 - value:.3f})" if metric == "nmse" else f"{100 * value:.1f}%"


def figure_text(metric: str, value: float | None, part: str) -> str:
    """``test accuracy 93.1%`` or ``test NMSE 0.0123 (R² 0.988)``."""
    return f"{part} {'NMSE' if metric == 'nmse' else 'accuracy'} {value_text(metric, value)}".strip()
