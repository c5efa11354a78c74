"""Forward passes per second through ``RingClient``: over a pty and over TCP versus the in-process simulator;
bytes on the wire per forward pass; and the training-sized workload under fault injection.

All on the named wide simulated board (``board="wide"``: 16 drives, 32 taps), whose shape the client takes from
``hello``.

1. Throughput: the simulated board (noise-free level-A ring, settling skipped) served on a pty and on TCP
   (``pgt.sim.serve``), and called in process (``sim://``); blocks of 1, 16 and 256 drive vectors for about
   ``--seconds`` each. Printed: forward passes/s, the ratio to in process, and bytes on the wire
   per forward pass (request + reply frames, from the link's counters).
2. Training-sized workload: ``--forward`` (10^5) forward passes in blocks of ``--block`` (256) over the pty
   with fault injection on (by default 1 % of frames lost and 1 % corrupted each way, plus 0.5 % duplicated,
   0.5 % delayed and 0.5 % preceded by garbage). Every block is compared with the noise-free in-process
   simulator's answer for the same input: corrupted blocks delivered must be 0. Also reported: retries,
   timeouts, the device's own count of runs (a run applied twice would show as more runs than blocks) and of
   resends answered from its cache.

Run: ``.venv/bin/python bench/link.py [--quick]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from pgt.client import RingClient  # noqa: E402
from pgt.device import open_device  # noqa: E402
from pgt.faults import FaultPlan, faulty  # noqa: E402
from pgt.sim.device import make_core  # noqa: E402
from pgt.sim.serve import PtyServer, TcpServer  # noqa: E402

BOARD = "wide"  # 16 drives, 32 taps: the width a training-sized workload needs
SIM = f"sim://?noise_free=1&board={BOARD}"
BLOCKS = (1, 16, 256)


@contextmanager
def served(kind: str, **client_options: Any) -> Iterator[tuple[RingClient, Any]]:
    """A RingClient on a fresh simulated board: ``inproc``, ``pty`` or ``tcp``; yields (client, server)."""
    if kind == "inproc":
        with open_device(SIM, **client_options) as c:
            yield c, None
        return
    core = make_core(noise_free=True, board=BOARD)
    srv: PtyServer | TcpServer = PtyServer(core) if kind == "pty" else TcpServer(core)
    with srv:
        addr = srv.start()
        url = str(addr) if kind == "pty" else f"socket://127.0.0.1:{addr}"
        with open_device(url, **client_options) as c:
            yield c, srv


def throughput(kind: str, block: int, seconds: float) -> dict[str, float]:
    """Forward passes/s and wire bytes per forward pass for ``block``-sized runs over ``kind``."""
    rng = np.random.default_rng(0)
    with served(kind, link_rate=1e6) as (c, _):
        xs = [rng.uniform(c.drive_low, c.drive_high, (block, c.n_inputs)) for _ in range(8)]
        c.run(xs[0])  # warm up
        before = c.link.counters()
        q0 = c.queries
        t0 = time.perf_counter()
        i = 0
        while True:
            c.run(xs[i % len(xs)])
            i += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and i >= 3:
                break
        after = c.link.counters()
        queries = c.queries - q0
    wire = (after["bytes_out"] + after["bytes_in"] - before["bytes_out"] - before["bytes_in"]) / queries
    return {"forward_per_s": queries / elapsed, "wire_bytes_per_forward": wire}


def training_workload(forward: int, block: int, plan: FaultPlan, timeout: float) -> dict[str, Any]:
    """``forward`` passes in blocks of ``block`` over a faulty pty, each block checked against in process."""
    wrap = faulty(plan)
    rng = np.random.default_rng(plan.seed + 100)
    corrupted = 0
    blocks = 0
    in_run = 0.0  # seconds inside RingClient.run (the reference check excluded)
    t0 = time.perf_counter()
    with open_device(SIM) as ref, served("pty", wrap=wrap, timeout=timeout, link_rate=1e6) as (c, srv):
        done = 0
        while done < forward:
            n = min(block, forward - done)
            x = rng.uniform(c.drive_low, c.drive_high, (n, c.n_inputs))
            t = time.perf_counter()
            y = c.run(x)
            in_run += time.perf_counter() - t
            corrupted += not np.array_equal(y, ref.run(x))
            blocks += 1
            done += n
            if blocks % 50 == 0:
                counters = c.link.counters()
                print(f"  {done:7d}/{forward} forward passes, {counters['retries']} retries so far", file=sys.stderr)
        wall = time.perf_counter() - t0
        counters = c.link.counters()
        status = c.status()
        resets = c.device_resets
        queries = c.queries
    return {
        "forward_passes": queries, "block": block, "blocks": blocks, "wall_s": round(wall, 2),
        "run_s": round(in_run, 2), "forward_per_s": round(queries / in_run, 1),
        "corrupted_blocks_delivered": corrupted,
        "retries": counters["retries"], "timeouts": counters["timeouts"], "fast_retries": counters["fast_retries"],
        "dropped_frames_host": counters["dropped"], "stale_replies": counters["stale_replies"],
        "device_runs": status["runs"], "device_cached_resends": status["duplicates"],
        "device_dropped": {k: v for k, v in status["link"].items() if v and k not in ("frames",)},
        "runs_applied_twice": max(0, status["runs"] - blocks) if resets == 0 else None,
        "device_resets_seen": resets,
        "faults_injected": dict(sorted(wrap.stats.items())),
        "fault_plan": {"drop": plan.drop, "corrupt": plan.corrupt, "duplicate": plan.duplicate,
                       "delay": plan.delay, "delay_s": plan.delay_s, "garbage": plan.garbage, "seed": plan.seed},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="shorter: 0.3 s per throughput point, 2*10^4 passes")
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds per throughput point (default 1.5)")
    ap.add_argument("--forward", type=int, default=100_000, help="forward passes of the workload (default 1e5)")
    ap.add_argument("--block", type=int, default=256, help="block size of the workload (default 256)")
    ap.add_argument("--drop", type=float, default=0.01, help="frames lost, each way (default 0.01)")
    ap.add_argument("--corrupt", type=float, default=0.01, help="frames corrupted, each way (default 0.01)")
    ap.add_argument("--timeout", type=float, default=0.1, help="base reply timeout in s (default 0.1)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.forward = 0.3, 20_000
    t0 = time.perf_counter()

    with open_device(SIM) as c:
        shape = {"board": BOARD, "k": c.n_inputs, "m": c.n_outputs}
    print(f"throughput, noise-free simulated {BOARD} board ({shape['k']} drives, {shape['m']} taps), settling skipped "
          f"({os.cpu_count()} CPUs)")
    print(f"{'block':>6} {'transport':>9} {'fwd/s':>10} {'vs inproc':>9} {'wire B/fwd':>10}")
    tp: dict[str, dict[str, float]] = {}
    ratio: dict[str, dict[str, float]] = {}
    wire: dict[str, float] = {}
    for block in BLOCKS:
        for kind in ("inproc", "pty", "tcp"):
            r = throughput(kind, block, args.seconds)
            tp.setdefault(kind, {})[str(block)] = round(r["forward_per_s"], 1)
            rel = r["forward_per_s"] / tp["inproc"][str(block)]
            if kind != "inproc":
                ratio.setdefault(kind, {})[str(block)] = round(rel, 3)
            if kind == "pty":
                wire[str(block)] = round(r["wire_bytes_per_forward"], 1)
            print(f"{block:>6} {kind:>9} {r['forward_per_s']:>10.0f} {rel:>9.2f} {r['wire_bytes_per_forward']:>10.1f}")

    plan = FaultPlan(drop=args.drop, corrupt=args.corrupt, duplicate=0.005, delay=0.005, delay_s=0.02,
                     garbage=0.005, seed=args.seed)
    print(f"\ntraining-sized workload: {args.forward} forward passes in blocks of {args.block} over the pty, "
          f"faults: {args.drop:.1%} lost, {args.corrupt:.1%} corrupted (each way), plus duplicates, delays, garbage")
    work = training_workload(args.forward, args.block, plan, args.timeout)
    print(f"  {work['blocks']} blocks in {work['wall_s']} s, {work['run_s']} s of it in RingClient.run "
          f"({work['forward_per_s']:.0f} fwd/s); "
          f"corrupted blocks delivered: {work['corrupted_blocks_delivered']}; retries {work['retries']} "
          f"({work['timeouts']} after a timeout, {work['fast_retries']} at once after a bad frame)")
    print(f"  device: {work['device_runs']} runs for {work['blocks']} blocks, {work['device_cached_resends']} resends "
          f"answered from its cache; faults injected {work['faults_injected']}")
    report = {
        "bench": "link",
        "device": shape,
        "forward_per_s": tp,
        "ratio_vs_inproc": ratio,
        "wire_bytes_per_forward": wire,
        "training_workload": work,
        "ok": bool(work["corrupted_blocks_delivered"] == 0 and work["runs_applied_twice"] == 0),
        "cpus": os.cpu_count(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
