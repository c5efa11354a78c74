"""Through the virtual board end to end: flash the unmodified firmware, then train on digits through it.

Starts ``pgt sim --board`` (the real firmware's files in a MicroPython VM behind a pty, the ring model behind
its fake pins, shaped like the default rp2 board: 2 drives, 3 taps), flashes it with ``pgt flash --board rp2``
(mpremote, soft reset, handshake check), and trains the dense net on digits through a ``RingClient`` on that
pty — every query a real frame through the firmware's serve loop, Core and HAL. The ring layer is time
multiplexed (the default slots: 8 device rows per sample).

Usage: ``python bench/board.py [--steps N] [--estimator NAME] [--seed S] [--eval-every N] [--quick]`` (quick: 4
steps, 64 probe rows, 32 validation samples: the flash and the path through the firmware, not an accuracy).
Progress and the run's header on stderr; the last line printed is one JSON object with ``test_acc`` (test
accuracy at the best-validation step), ``queries`` (all device rows), ``steps`` and ``wall_s`` (training, after
flashing), plus the board's shape, slots, n_avg and per-tap noise/span as calibration measured them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

CLI = "import sys; from pgt.cli import main; sys.exit(main(sys.argv[1:]))"


def start_board(seed: int) -> tuple[subprocess.Popen[str], str]:
    """``pgt sim --board`` in a subprocess; returns it and the pty path it announced."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", CLI, "sim", "--board", "--seed", str(seed)],
                            stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    port = next((line[6:].strip() for line in proc.stdout if line.startswith("port: ")), "")
    if not port:
        proc.kill()
        raise SystemExit("bench/board.py: the virtual board did not start (pgt sim --board printed no port)")
    return proc, port


def stop_board(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)  # serve() stops the board and removes its temporary directories
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--estimator", default="surrogate", help="PGT estimator (default surrogate)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the board's ring and of the run (default 0)")
    parser.add_argument("--eval-every", type=int, default=20, help="steps between evaluations (default 20)")
    parser.add_argument("--quick", action="store_true", help="4 steps, 64 probe rows, 32 validation samples")
    args = parser.parse_args()
    small = {"probe": 64, "val_size": 32} if args.quick else {}
    if args.quick:
        args.steps, args.eval_every = 4, 4
    if args.steps < 1 or args.eval_every < 1 or args.seed < 0:
        parser.error("--steps and --eval-every must be positive, --seed non-negative")

    from pgt.cli import main as pgt_main
    from pgt.device import open_device
    from pgt.trainer import TrainConfig, Trainer, progress_line

    proc, port = start_board(args.seed)
    try:
        t0 = time.perf_counter()
        if pgt_main(["flash", port, "--board", "rp2"]) != 0:
            raise SystemExit("bench/board.py: pgt flash failed")
        flash_s = time.perf_counter() - t0
        with open_device(port, timeout=5.0) as client:
            cfg = TrainConfig(task="digits", model="mlp", estimator=args.estimator, steps=args.steps,
                              eval_every=args.eval_every, seed=args.seed, checkpoint_every=args.steps, **small)
            t1 = time.perf_counter()
            trainer = Trainer(client, cfg, on_eval=lambda rec: print(progress_line(rec), file=sys.stderr,
                                                                      flush=True))
            result = trainer.run()
            wall = time.perf_counter() - t1
            info: dict[str, Any] = client.info
            ph = trainer.physical
    finally:
        stop_board(proc)
    print(f"{args.estimator} through the virtual board ({info.get('board')}, {ph.k} drives -> {ph.m} taps, "
          f"{ph.slots} slots): test accuracy {100 * result.best_test_acc:.1f}% at the best-validation step, "
          f"{result.queries:,} device rows, {args.steps} steps, {wall:.0f} s (flash {flash_s:.0f} s)")
    print(json.dumps({
        "bench": "board", "test_acc": round(result.best_test_acc, 4), "queries": result.queries,
        "steps": args.steps, "wall_s": round(wall, 1), "estimator": args.estimator, "seed": args.seed,
        "board": info.get("board"), "k": ph.k, "m": ph.m, "slots": ph.slots, "n_avg": ph.n_avg,
        "noise_span": [round(float(v), 3) for v in ph.noise_span],
        "device_seconds": round(result.device_seconds, 1), "flash_s": round(flash_s, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
