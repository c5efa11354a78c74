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

RESUME_FLAGS = ("steps", "device", "quiet")
"""The flags ``--resume`` accepts: they do not change the run (``--steps`` only extends it)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pgt.tasks import TASKS
    from pgt.trainer import ESTIMATORS, TrainConfig

    d = TrainConfig()
    # Defaults are None here and come from TrainConfig, so --resume can tell which flags were given.
    p.add_argument("--task", help=f"one of {', '.join(TASKS)} (default: {d.task})")
    p.add_argument("--data", metavar="FILE",
                   help="your own data instead of --task: an .npz (x, y; optional x_val, y_val, x_test, y_test), a "
                        ".csv with a header (label column: --label, default the last), or IDX files as MNIST ships "
                        "them, images and labels joined by a comma (plain or .gz); README 'Your own data'")
    p.add_argument("--label", help="--data CSV: the label (target) column (default: the last column)")
    p.add_argument("--loss", help="ce (classification) or mse (regression) (default: from the labels: integers "
                                  "or text -> ce, floats -> mse)")
    p.add_argument("--scale", help="--data: input scaling from the training split: global (overall min..max -> "
                                   "0..1, the default), feature (each feature to mean 0, sd 1) or none")
    p.add_argument("--model", help="mlp or transformer (default: the task's: mlp for vectors (digits, narma10, "
                                   "mackey_glass, a 2-d x), transformer for sequences)")
    p.add_argument("--estimator", help=f"one of {', '.join(ESTIMATORS)} (default: {d.estimator})")
    p.add_argument("-E", "--estimator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="estimator option, repeatable, e.g. -E directions=4 (node, param), -E sigma=0.05 (node, "
                        "param), -E refit_every=5 (surrogate); a bad key lists the valid ones")
    p.add_argument("--hidden", help="mlp: widths of extra dense layers after the ring, e.g. 32,16")
    p.add_argument("--slots", type=int,
                   help="device rows per sample (token): the ring layer is slots x k drives wide (default: "
                        "enough for 16 drive units, 8 on the 2-drive rp2 board)")
    p.add_argument("--d-model", type=int, help="transformer: model width (default 32)")
    p.add_argument("--heads", type=int, help="transformer: attention heads (default 4)")
    p.add_argument("--device", metavar="URL",
                   help="device URL: a serial port such as /dev/ttyACM0, a pyserial URL, or sim://?seed=0 "
                        "(default: the simulated board in process, sim://?seed=RING_SEED; backprop uses the "
                        "noise-free differentiable ring of the same shape)")
    p.add_argument("--noise-free", action="store_true", help="simulated board without noise (default device only)")
    p.add_argument("--ring-seed", type=int, help="seed of the default simulated board (default 0)")
    p.add_argument("--steps", type=int, help=f"optimizer steps in all (default {d.steps}; with --resume: extend "
                                             "the run to this many)")
    p.add_argument("--batch-size", type=int, help=f"samples per step (default {d.batch_size})")
    p.add_argument("--optimizer", help=f"sgd, momentum or adam (default {d.optimizer})")
    p.add_argument("--lr", type=float, help="learning rate > 0 (default: chosen at calibration)")
    p.add_argument("--schedule", help=f"constant or cosine (default {d.schedule})")
    p.add_argument("--clip", type=float, help="clip gradients to this global norm > 0 (default: no clipping)")
    p.add_argument("--eval-every", type=int,
                   help=f"steps between validation evaluations (default {d.eval_every})")
    p.add_argument("--val-size", type=int,
                   help=f"validation samples per evaluation, a fixed subsample (default {d.val_size}; 0: all)")
    p.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints (default {d.checkpoint_every})")
    p.add_argument("--seed", type=int, help="seed (>= 0) of the model, batches and perturbations (default 0)")
    p.add_argument("--out", help="parent directory of run directories (default: runs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (accepts --steps, --device)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


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
    task = args.task or d.task
    model = args.model or default_model(task)
    if args.data is not None:
        from pathlib import Path

        from pgt.datasets import load_data

        if args.task is not None:
            raise UserError("--task and --data are alternatives: a built-in task or your own file")
        data = load_data(args.data, args.label, args.loss, args.scale or d.scale)  # checked before any device
        task = Path(args.data.split(",")[0]).name.split(".")[0] or "data"
        model = args.model or ("mlp" if data.info["kind"] == "vector" else "transformer")
    if model == "mlp" and (args.d_model is not None or args.heads is not None):
        raise UserError("--d-model and --heads set up the transformer; the mlp takes --hidden")
    if model != "mlp" and args.hidden is not None:
        raise UserError("--hidden sets up the mlp; the transformer takes --d-model and --heads")
    if model == "mlp":
        try:
            hidden = [int(h) for h in (args.hidden or "").split(",") if h.strip()]
        except ValueError:
            raise UserError(f"--hidden takes comma-separated widths, got {args.hidden!r}") from None
        if min(hidden, default=1) < 1:
            raise UserError(f"--hidden widths must be positive, got {args.hidden!r}")
        options: dict[str, Any] = {"hidden": tuple(hidden)}
    else:
        d_model = 32 if args.d_model is None else args.d_model
        heads = 4 if args.heads is None else args.heads
        if heads < 1 or d_model < 1 or d_model % heads:
            raise UserError(f"--d-model must be a positive multiple of --heads, got {d_model} and {heads}")
        options = {"d_model": d_model, "heads": heads}
    if args.slots is not None:
        if not 1 <= args.slots <= 4096:
            raise UserError(f"--slots must be from 1 to 4096, got {args.slots}")
        options["slots"] = args.slots
    val_size = d.val_size if args.val_size is None else (None if args.val_size == 0 else args.val_size)
    cfg = TrainConfig(
        task=task, model=model, estimator=args.estimator or d.estimator,
        steps=d.steps if args.steps is None else args.steps,
        batch_size=d.batch_size if args.batch_size is None else args.batch_size,
        optimizer=args.optimizer or d.optimizer, lr=args.lr, schedule=args.schedule or d.schedule, clip=args.clip,
        eval_every=d.eval_every if args.eval_every is None else args.eval_every, val_size=val_size,
        checkpoint_every=d.checkpoint_every if args.checkpoint_every is None else args.checkpoint_every,
        seed=d.seed if args.seed is None else args.seed, model_options=options,
        estimator_options=_estimator_options(args.estimator_option),
        data=args.data, label=args.label, loss=args.loss, scale=args.scale or d.scale,
    )
    for flag, value in (("--lr", cfg.lr), ("--clip", cfg.clip)):
        if value is not None and not (value > 0 and value < float("inf")):
            raise UserError(f"{flag} must be a finite number > 0, got {value}")
    if cfg.val_size is not None and cfg.val_size < 0:
        raise UserError(f"--val-size must be >= 0 (0: the whole validation set), got {args.val_size}")
    try:
        check_config(cfg)
    except UserError as exc:
        raise UserError(str(exc).replace("batch_size", "--batch-size").replace("eval_every", "--eval-every")
                        .replace("checkpoint_every", "--checkpoint-every").replace("val_size", "--val-size")
                        .replace("seed must", "--seed must").replace("steps must", "--steps must")) from None
    return cfg


def _check_device_url(url: str | None, args: argparse.Namespace) -> None:
    """Device flags that can be checked without opening the device."""
    from pgt.errors import UserError

    if args.ring_seed is not None and args.ring_seed < 0:
        raise UserError(f"--ring-seed must be >= 0, got {args.ring_seed}")
    if url is None:
        return
    if args.noise_free or args.ring_seed is not None:
        raise UserError("--noise-free and --ring-seed set up the default simulated board; with --device put "
                        "them in the URL (sim://?seed=1&noise_free=1)")
    if args.estimator == "backprop":  # known before any device is opened
        raise UserError("--estimator backprop runs through the noise-free ring model in process (the exact "
                        f"gradient): leave out --device {url}")
    from pgt.link import check_device_url

    check_device_url(url)  # a stopped `pgt sim`'s pty, a file: said before the run directory is made


def _out_dir(out: str) -> Any:
    import os
    from pathlib import Path

    from pgt.errors import UserError

    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the directory ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: the directory is not writable")
    return path


def _resume(args: argparse.Namespace) -> Any:
    """Check a --resume invocation, then open the device and rebuild the trainer."""
    from pathlib import Path

    from pgt import checkpoint
    from pgt.errors import UserError
    from pgt.trainer import Trainer, open_device

    changing = [k for k in _given(args) if k not in RESUME_FLAGS]
    if changing:
        names = ", ".join("-E" if k == "estimator_option" else "--" + k.replace("_", "-") for k in changing)
        raise UserError(f"--resume continues a run as it was configured: {names} would change it (--resume "
                        "accepts only --steps to extend it, --device and --quiet)")
    if args.device is not None:
        from pgt.link import check_device_url

        check_device_url(args.device)
    run_dir = Path(args.resume)
    state = checkpoint.load(run_dir)  # (a clear error before any device is opened)
    if args.steps is not None and args.steps < state["step"]:
        raise UserError(f"--steps {args.steps}: the run is already at step {state['step']}")
    device = open_device(args.device) if args.device else None
    return Trainer.resume(run_dir, device, steps=args.steps, on_eval=_printer(args.quiet)), run_dir, state["step"]


def _printer(quiet: bool) -> Any:
    import sys

    from pgt.trainer import progress_line

    def on_eval(rec: dict[str, Any]) -> None:
        if not quiet:
            print(progress_line(rec), file=sys.stderr, flush=True)

    return on_eval


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from pgt.model_file import load
    from pgt.plots import accuracy_vs_queries
    from pgt.trainer import Trainer, default_device, open_device

    if args.resume:
        trainer, run_dir, at = _resume(args)
        if not args.quiet:
            print(f"resumed from step {at}: {run_dir}", file=sys.stderr)
    else:
        cfg = _new_config(args)
        _check_device_url(args.device, args)
        out = _out_dir(args.out or "runs")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = out / f"{cfg.task}-{cfg.model}-{cfg.estimator}-s{cfg.seed}-{stamp}"
        i = 1
        while run_dir.exists():
            i += 1
            run_dir = run_dir.with_name(f"{run_dir.name.rsplit('.', 1)[0]}.{i}")
        if args.device:
            device = open_device(args.device)
        elif args.noise_free and cfg.estimator != "backprop":
            device = open_device(f"sim://?seed={args.ring_seed or 0}&noise_free=1")
        else:
            device = default_device(cfg.estimator, args.ring_seed or 0)
        trainer = Trainer(device, cfg, out_dir=run_dir, on_eval=_printer(args.quiet))
        if not args.quiet:
            info = device.info
            print(f"run {run_dir}: {cfg.task}/{cfg.model}/{cfg.estimator}, {trainer.model.n_params()} parameters, "
                  f"device {info.get('url', info.get('kind', '?'))} ({device.n_inputs} drives -> "
                  f"{device.n_outputs} taps)", file=sys.stderr)
    result = trainer.run()
    png = accuracy_vs_queries({trainer.config.estimator: result.history}, run_dir / "accuracy.png",
                              title=f"{trainer.config.task} / {trainer.config.model}, device "
                                    f"{trainer.reservoir.n_inputs} drives -> {trainer.reservoir.n_outputs} taps",
                              metric=result.metric)
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
