"""Forward passes per second of the simulated ring: in-process (``Core.handle``), over TCP and over a pty.

Blocks of 1, 64 and 1024 drive vectors (16 in, 32 out). Every path pays the same host-side work (msgpack
encode of the request, decode of the reply); the served paths add framing, the byte transport and a
pyserial client reading the header then the rest of the frame. Paths are measured in interleaved rounds and
the best round of each is kept, so a busy machine disturbs the ratios less. Prints a table, then the ratios
to in-process, and as its last line one JSON object.

    .venv/bin/python bench/sim.py [--seconds 0.4] [--rounds 3] [--quick]   (quick: 0.05 s, 1 round)
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable

import msgpack
import numpy as np
import serial

from pgt.protocol import framing
from pgt.sim.device import make_core
from pgt.sim.serve import PtyServer, TcpServer

BLOCKS = (1, 64, 1024)
MAX_FRAME = 1 << 17  # room for a 1024-vector reply (64 KiB of samples)

Call = Callable[[bytes], bytes]


def over_serial(ser: serial.SerialBase) -> Call:
    def call(payload: bytes) -> bytes:
        ser.write(framing.encode(payload))
        head = ser.read(framing.HEADER_SIZE)
        if len(head) != framing.HEADER_SIZE:
            raise RuntimeError("no reply")
        n = struct.unpack_from("<I", head, 4)[0]
        body = ser.read(n + framing.TRAILER_SIZE)
        return body[:n]

    return call


def measure(call: Call, n: int, drive: bytes, seconds: float, seq0: int) -> tuple[float, int]:
    """Vectors per second of ``call`` over at least ``seconds`` (and 3 calls); returns (rate, next seq)."""
    seq = seq0
    calls = 0
    start = time.perf_counter()
    while True:
        req = msgpack.packb({"op": "run", "seq": seq, "n": n, "k": 16, "drive": drive}, use_bin_type=True)
        reply = msgpack.unpackb(call(req), raw=False)
        if reply.get("op") != "run" or len(reply["samples"]) != 2 * 32 * n:
            raise RuntimeError(f"bad reply: {reply}")
        seq += 1
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return n * calls / elapsed, seq


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--quick", action="store_true", help="0.05 s per measurement, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 0.05, 1

    rng = np.random.default_rng(0)
    pty = PtyServer(make_core(seed=0, max_frame=MAX_FRAME, board="wide"))
    tcp = TcpServer(make_core(seed=0, max_frame=MAX_FRAME, board="wide"))
    path = pty.start()
    port = tcp.start()
    ser_pty = serial.Serial(path, timeout=5)
    ser_tcp = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5)
    paths: dict[str, Call] = {
        "in_process": make_core(seed=0, max_frame=MAX_FRAME, board="wide").handle,
        "tcp": over_serial(ser_tcp),
        "pty": over_serial(ser_pty),
    }
    best: dict[str, dict[int, float]] = {name: {} for name in paths}
    seq = 1
    try:
        for n in BLOCKS:
            drive = rng.integers(0, 4096, size=(n, 16)).astype("<u2").tobytes()
            for _ in range(args.rounds):
                for name, call in paths.items():
                    rate, seq = measure(call, n, drive, args.seconds, seq)
                    best[name][n] = max(best[name].get(n, 0.0), rate)
    finally:
        ser_pty.close()
        ser_tcp.close()
        pty.stop()
        tcp.stop()

    print(f"{'block':>6} {'in-process':>12} {'tcp':>12} {'pty':>12}   vectors/s (ratio to in-process)")
    ratios: dict[str, dict[str, float]] = {"tcp": {}, "pty": {}}
    for n in BLOCKS:
        ref = best["in_process"][n]
        for name in ratios:
            ratios[name][str(n)] = round(best[name][n] / ref, 3)
        print(f"{n:>6} {ref:>12.0f} {best['tcp'][n]:>12.0f} {best['pty'][n]:>12.0f}   "
              f"tcp {ratios['tcp'][str(n)]:.2f}  pty {ratios['pty'][str(n)]:.2f}")
    result = {
        "bench": "sim",
        "unit": "forward passes (vectors) per second",
        "k": 16,
        "m": 32,
        **{name: {str(n): round(rate, 1) for n, rate in best[name].items()} for name in paths},
        "ratio_tcp": ratios["tcp"],
        "ratio_pty": ratios["pty"],
        "target_met_1024": ratios["tcp"]["1024"] >= 0.5 and ratios["pty"]["1024"] >= 0.5,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
