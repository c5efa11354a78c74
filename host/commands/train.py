"""``pgt train``: train a hybrid model through a reservoir (default: the in-process simulated ring)."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "train"
HELP = "train a network with a physical reservoir layer by perturbative gradient training"

TASKS = ("digits", "digits-seq", "majority")
ESTIMATORS = ("surrogate", "node", "param", "backprop")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="digits", help=f"one of {', '.join(TASKS)} (default: digits)")
    p.add_argument("--model", default=None, help="mlp or transformer (default: mlp for digits, else transformer)")
    p.add_argument("--estimator", default="surrogate", help=f"one of {', '.join(ESTIMATORS)}")
    p.add_argument("-E", "--estimator-option", action="append", default=[], metavar="KEY=VALUE",
                   help="estimator option, repeatable: directions=4, sigma=0.05, two_sided=false, dist=gaussian, "
                        "refit_every=5, features=768 ...")
    p.add_argument("--hidden", default="", help="mlp: widths of extra dense layers after the ring, e.g. 32,16")
    p.add_argument("--slots", type=int, default=None,
                   help="device rows per sample (token): the ring layer is slots x k drives wide (default: "
                        "enough for 16 drive units, 8 on the 2-drive rp2 board)")
    p.add_argument("--d-model", type=int, default=32, help="transformer: model width (default 32)")
    p.add_argument("--heads", type=int, default=4, help="transformer: attention heads (default 4)")
    p.add_argument("--device", default=None, metavar="URL",
                   help="device URL for pgt.client.RingClient, e.g. /dev/ttyACM0 or sim://?seed=0 (default: "
                        "the simulated ring model in process)")
    p.add_argument("--noise-free", action="store_true", help="in-process ring without noise (implied by backprop)")
    p.add_argument("--ring-seed", type=int, default=0, help="seed of the in-process ring (default 0)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    p.add_argument("--optimizer", default="adam", help="sgd, momentum or adam")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: chosen at calibration)")
    p.add_argument("--schedule", default="constant", help="constant or cosine")
    p.add_argument("--clip", type=float, default=None, help="clip gradients to this global norm")
    p.add_argument("--eval-every", type=int, default=10,
                   help="steps between unperturbed evaluations on validation and test sets (default 10)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, batches and perturbations (default 0)")
    p.add_argument("--out", default="runs", help="parent directory of run directories (default: runs/)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def open_device(url: str | None, noise_free: bool = False, seed: int = 0) -> Any:
    """The in-process simulated ring (``url`` None), or a RingClient for ``url`` once pgt.client exists."""
    from pgt.errors import UserError

    if url is None:
        from pgt.sim.ring import make_ring_reservoir

        return make_ring_reservoir(seed=seed, noise_free=noise_free)
    try:
        from pgt.client import RingClient  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise UserError("device URLs need pgt.client, which is not available in this installation") from None
    return RingClient.open(url)


def _recorded_url(run_dir: Any) -> str | None:
    """The device URL a run was started with (from its config.json), unless it ran on the in-process ring."""
    import json

    try:
        doc = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    url = doc.get("device", {}).get("url")
    return str(url) if url else None


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    from pgt.errors import UserError
    from pgt.plots import accuracy_vs_queries
    from pgt.trainer import TrainConfig, Trainer, progress_line

    def on_eval(rec: dict[str, Any]) -> None:
        if not args.quiet:
            print(progress_line(rec), file=sys.stderr, flush=True)

    if args.resume:
        run_dir = Path(args.resume)
        url = args.device or _recorded_url(run_dir)
        device = open_device(url, args.noise_free, args.ring_seed) if url else None
        trainer = Trainer.resume(run_dir, device, on_eval=on_eval)
    else:
        if args.task not in TASKS:
            raise UserError(f"unknown task {args.task!r} (choose from {', '.join(TASKS)})")
        if args.estimator not in ESTIMATORS:
            raise UserError(f"unknown estimator {args.estimator!r} (choose from {', '.join(ESTIMATORS)})")
        model = args.model or ("mlp" if args.task == "digits" else "transformer")
        try:
            hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
        except ValueError:
            raise UserError(f"--hidden takes comma-separated widths, got {args.hidden!r}") from None
        if args.d_model % max(args.heads, 1) or args.heads < 1 or min([args.d_model, *hidden]) < 1:
            raise UserError("--d-model must be a positive multiple of --heads, widths positive")
        if args.slots is not None and not 1 <= args.slots <= 4096:
            raise UserError(f"--slots must be from 1 to 4096, got {args.slots}")
        options: dict[str, Any] = (
            {"hidden": tuple(hidden)} if model == "mlp" else {"d_model": args.d_model, "heads": args.heads}
        )
        if args.slots is not None:
            options["slots"] = args.slots
        est_options: dict[str, Any] = {}
        for item in args.estimator_option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UserError(f"--estimator-option takes KEY=VALUE, got {item!r}")
            try:
                est_options[key] = json.loads(value)
            except ValueError:
                est_options[key] = value
        cfg = TrainConfig(
            task=args.task, model=model, estimator=args.estimator, steps=args.steps,
            batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
            clip=args.clip, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed,
            model_options=options, estimator_options=est_options,
        )
        device = open_device(args.device, args.noise_free or args.estimator == "backprop", args.ring_seed)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) / f"{args.task}-{model}-{args.estimator}-s{args.seed}-{stamp}"
        i = 1
        while run_dir.exists():
            i += 1
            run_dir = run_dir.with_name(f"{run_dir.name.rsplit('.', 1)[0]}.{i}")
        trainer = Trainer(device, cfg, out_dir=run_dir, on_eval=on_eval)
        if not args.quiet:
            print(f"run {run_dir}: {cfg.task}/{cfg.model}/{cfg.estimator}, {trainer.model.n_params()} parameters, "
                  f"device {device.info.get('kind', '?')}", file=sys.stderr)
    result = trainer.run()
    png = accuracy_vs_queries({trainer.config.estimator: result.history}, run_dir / "accuracy.png",
                              title=f"{trainer.config.task} / {trainer.config.model}")
    print(
        f"best test accuracy {100 * result.best_test_acc:.1f}% (step {result.best_step}), final "
        f"{100 * result.final_test_acc:.1f}%; device queries {result.queries:,} "
        f"(training {result.training_queries:,}); device time {result.device_seconds:.1f} s; "
        f"run {run_dir}; plot {png}"
    )
    return 0
