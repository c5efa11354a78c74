"""``pgt demo``: the main job — the dense network on digits through the simulated board, PGT vs backprop.

The board has the default rp2 board's shape (2 drive channels, 3 taps); the ring layer is time multiplexed
(8 device rows per sample: 16 drive units, 24 readings), so the figures are those of a board someone can wire.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

NAME = "demo"
HELP = ("train the dense network on digits through the simulated rp2-shaped board (2 drives, 3 taps); "
        "compare with the backprop reference")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=400, help="training steps per estimator (default 400)")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs and of the simulated ring (default 0)")
    p.add_argument("--estimators", default="twin,surrogate,node,param",
                   help="PGT estimators to run next to backprop (default: twin,surrogate,node,param)")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="your own data instead of the digits (as pgt train --data: .npz, .csv, IDX; regression "
                        "data reports NMSE)")
    p.add_argument("--label", default=None, help="--data CSV: the label column (default: the last)")
    p.add_argument("--out", default="runs", help="where the demo's run directory goes (default: runs/)")
    p.add_argument("--device", default=None, metavar="URL",
                   help="device for the PGT runs (default: the simulated board served on a pseudo-terminal, "
                        "reached through pyserial like a real one)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def make_device(seed: int, url: str | None = None) -> tuple[Any, Callable[[], None]]:
    """The device the PGT runs train through, and what to call when the run is over.

    PGT runs go through :class:`pgt.client.RingClient` over the real protocol: by default to the simulated
    board (the firmware's Core over the ring model, shaped like the default rp2 board) served on a
    pseudo-terminal, so every query crosses a serial line as frames.
    """
    from pgt.device import open_device

    if url is not None:
        client = open_device(url)
        return client, client.close
    from pgt.device_files import file_hashes
    from pgt.sim.device import make_core
    from pgt.sim.serve import PtyServer

    server = PtyServer(make_core(seed=seed, files=file_hashes()))  # the default board: rp2, 2 drives, 3 taps
    path = server.start()
    try:
        client = open_device(path)
    except BaseException:
        server.stop()
        raise

    def close() -> None:
        client.close()
        server.stop()

    return client, close


def reference_device(seed: int, shape: tuple[int, int] | None) -> Any:
    """The backprop reference's device: the noise-free model of the same ring (same seed; the default board,
    or a board of the given (k, m) shape), in process (it needs the exact vjp)."""
    from pgt.sim.reservoirs import reference_ring

    return reference_ring(seed=seed, channels=shape)


def _config(estimator: str, args: argparse.Namespace) -> Any:
    from pgt.trainer import TrainConfig

    model = "mlp"
    if args.data is not None:
        from pgt.datasets import load_data

        model = "mlp" if load_data(args.data, args.label).info["kind"] == "vector" else "transformer"
    return TrainConfig(task="digits" if args.data is None else "data", model=model, estimator=estimator,
                       steps=args.steps, eval_every=20, seed=args.seed, checkpoint_every=max(args.steps, 1),
                       data=args.data, label=args.label)


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from pgt.errors import UserError
    from pgt.estimators import ESTIMATORS
    from pgt.plots import accuracy_vs_queries
    from pgt.run_dir import check_out, new_run_dir
    from pgt.trainer import Result, Trainer, check_config

    names = [e for e in args.estimators.split(",") if e]
    pgt_estimators = [e for e in ESTIMATORS if e != "backprop"]
    if not names or any(e not in pgt_estimators for e in names):
        raise UserError(f"--estimators takes {', '.join(pgt_estimators)} (comma-separated), got {args.estimators!r}")
    if args.steps < 1:
        raise UserError(f"--steps must be an integer >= 1, got {args.steps}")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    for est in [*names, "backprop"]:  # every run's config checked before any device is opened
        check_config(_config(est, args))
    if args.device is not None:
        from pgt.device import check_device_url

        check_device_url(args.device)
    out = new_run_dir(check_out(args.out), "demo")  # a new directory per demo, never shared
    results: dict[str, tuple[Result, float, str]] = {}
    shape: tuple[int, int, int] | None = None  # k, m, slots of the PGT device
    for est in [*names, "backprop"]:
        noise_free = est == "backprop"
        if noise_free:
            same = None if args.device is None or shape is None else (shape[0], shape[1])
            device, close = reference_device(args.seed, same), (lambda: None)
        else:
            device, close = make_device(args.seed, args.device)
        cfg = _config(est, args)
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"training with {est} ({args.steps} steps) through {device.info.get('kind')} ...",
                  file=sys.stderr, flush=True)
        try:
            trainer = Trainer(device, cfg, out_dir=out / est, log=(lambda line: None) if args.quiet else None)
            result = trainer.run()
        finally:
            close()
        shape = shape or (trainer.physical.k, trainer.physical.m, trainer.physical.slots)
        where = "ring model, exact" if noise_free else ("sim on a pty" if args.device is None else args.device)
        results[est] = (result, time.perf_counter() - t0, where)
    results = {"backprop": results["backprop"]} | {e: results[e] for e in names}

    assert shape is not None
    k, m, slots = shape
    ref = results["backprop"][0]
    if args.data is not None:
        return _own_data_table(args, results, shape, out)
    print(f"digits, dense net 64-{slots * k}-[ring {slots * k}->{slots * m}: a {k}-drive, {m}-tap board, {slots} "
          f"rows per sample]-10, {args.steps} steps of 32 samples, seed {args.seed}")
    print(f"{'estimator':<10} {'device':<17} {'test acc':>8} {'vs BP':>7} {'all queries':>12} "
          f"{'train queries':>14} {'eval queries':>13} {'device s':>9} {'wall s':>7}")
    for est, (r, wall, where) in results.items():
        diff = 100 * ((r.best_test_acc or 0.0) - (ref.best_test_acc or 0.0))
        print(f"{est:<10} {where:<17} {100 * (r.best_test_acc or 0.0):7.1f}% {diff:+6.1f}  {r.queries:>11,} "
              f"{r.training_queries:>13,} {r.eval_queries:>13,} {r.device_seconds:>9.1f} {wall:>7.1f}")
    png = accuracy_vs_queries({e: r.history for e, (r, _, _) in results.items()}, out / "accuracy.png",
                              title="digits: accuracy vs device queries", val_size=len(trainer.val_idx),
                              chance=1.0 / trainer.task.info["n_classes"])
    if names:
        best = max(names, key=lambda e: results[e][0].best_test_acc or 0.0)
        diff = 100 * ((results[best][0].best_test_acc or 0.0) - (ref.best_test_acc or 0.0))
        verdict = "within" if diff >= -2.0 else "NOT within"
        print(f"best PGT estimator: {best}, {verdict} 2 points of the backprop reference ({diff:+.1f} points)")
    print(f"test accuracy at the best-validation step; plot {png}")
    return 0


def _own_data_table(args: argparse.Namespace, results: dict[str, Any], shape: tuple[int, int, int], out: Any) -> int:
    """``--data``: each run's test figure (accuracy, or NMSE for regression) beside the backprop reference's."""
    from pgt.commands.train import value_text
    from pgt.plots import accuracy_vs_queries

    k, m, slots = shape
    metric = results["backprop"][0].metric
    print(f"{args.data}, {args.steps} steps of 32 samples, seed {args.seed}, through a {k}-drive, {m}-tap board "
          f"({slots} rows per sample)")
    name = "test NMSE" if metric == "nmse" else "test acc"
    print(f"{'estimator':<10} {'device':<17} {name:>20} {'all queries':>12} {'device s':>9} {'wall s':>7}")
    for est, (r, wall, where) in results.items():
        print(f"{est:<10} {where:<17} {value_text(metric, r.best_test):>20} {r.queries:>12,} "
              f"{r.device_seconds:>9.1f} {wall:>7.1f}")
    png = accuracy_vs_queries({e: r.history for e, (r, _, _) in results.items()}, out / "accuracy.png",
                              title=f"{args.data}: vs device queries", metric=metric)
    print(f"{name} at the best-validation step; plot {png}")
    return 0
