"""``pgt demo``: the main job — the dense network on digits through the simulated ring, PGT vs backprop."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

NAME = "demo"
HELP = "train the dense network on digits through the simulated ring; compare with the backprop reference"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=400, help="training steps per estimator (default 400)")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs and of the simulated ring (default 0)")
    p.add_argument("--estimators", default="surrogate,node,param",
                   help="PGT estimators to run next to backprop (default: surrogate,node,param)")
    p.add_argument("--out", default="runs", help="where the demo's run directory goes (default: runs/)")
    p.add_argument("--device", default=None, metavar="URL",
                   help="device for the PGT runs (default: the simulated board served on a pseudo-terminal, "
                        "reached through pyserial like a real one)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def make_device(noise_free: bool, seed: int, url: str | None = None) -> tuple[Any, Callable[[], None]]:
    """The device a demo run trains through, and what to call when the run is over.

    PGT runs go through :class:`pgt.client.RingClient` over the real protocol: by default to the simulated
    board (the firmware's Core over the ring model) served on a pseudo-terminal, so every query crosses a
    serial line as frames. The backprop reference needs the exact vjp, so it uses the noise-free ring model
    directly (same seed, same ring).
    """
    from pgt.sim.ring import make_ring_reservoir

    if noise_free:
        return make_ring_reservoir(seed=seed, noise_free=True), lambda: None
    from pgt.client import RingClient

    if url is not None:
        client = RingClient.open(url)
        return client, client.close
    from pgt.sim.device import make_core
    from pgt.sim.serve import PtyServer

    server = PtyServer(make_core(seed=seed))
    path = server.start()
    try:
        client = RingClient.open(path)
    except BaseException:
        server.stop()
        raise

    def close() -> None:
        client.close()
        server.stop()

    return client, close


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    from pgt.errors import UserError
    from pgt.estimators import ESTIMATORS
    from pgt.plots import accuracy_vs_queries
    from pgt.trainer import Result, TrainConfig, Trainer

    names = [e for e in args.estimators.split(",") if e]
    pgt_estimators = [e for e in ESTIMATORS if e != "backprop"]
    if not names or any(e not in pgt_estimators for e in names):
        raise UserError(f"--estimators takes {', '.join(pgt_estimators)} (comma-separated), got {args.estimators!r}")
    out = Path(args.out) / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    results: dict[str, tuple[Result, float, str]] = {}
    for est in ["backprop", *names]:
        noise_free = est == "backprop"
        device, close = make_device(noise_free, args.seed, args.device)
        cfg = TrainConfig(task="digits", model="mlp", estimator=est, steps=args.steps, eval_every=20,
                          seed=args.seed, checkpoint_every=max(args.steps, 1))
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"training with {est} ({args.steps} steps) through {device.info.get('kind')} ...",
                  file=sys.stderr, flush=True)
        try:
            result = Trainer(device, cfg, out_dir=out / est).run()
        finally:
            close()
        where = "ring model, exact" if noise_free else ("sim on a pty" if args.device is None else args.device)
        results[est] = (result, time.perf_counter() - t0, where)

    ref = results["backprop"][0]
    print(f"digits, dense net 64-16-[ring 16->32]-10, {args.steps} steps of 32 samples, seed {args.seed}")
    print(f"{'estimator':<10} {'device':<17} {'test acc':>8} {'vs BP':>7} {'all queries':>12} "
          f"{'train queries':>14} {'eval queries':>13} {'device s':>9} {'wall s':>7}")
    for est, (r, wall, where) in results.items():
        diff = 100 * ((r.test_acc or 0.0) - (ref.test_acc or 0.0))
        print(f"{est:<10} {where:<17} {100 * (r.test_acc or 0.0):7.1f}% {diff:+6.1f}  {r.queries:>11,} "
              f"{r.training_queries:>13,} {r.eval_queries:>13,} {r.device_seconds:>9.1f} {wall:>7.1f}")
    png = accuracy_vs_queries({e: r.history for e, (r, _, _) in results.items()}, out / "accuracy.png",
                              title="digits: accuracy vs device queries")
    if names:
        best = max(names, key=lambda e: results[e][0].test_acc or 0.0)
        diff = 100 * ((results[best][0].test_acc or 0.0) - (ref.test_acc or 0.0))
        verdict = "within" if diff >= -2.0 else "NOT within"
        print(f"best PGT estimator: {best}, {verdict} 2 points of the backprop reference ({diff:+.1f} points)")
    print(f"test accuracy at the best-validation step; plot {png}")
    return 0
