"""Wire efficiency and host encode+decode speed of `run` blocks: binary blocks versus msgpack arrays of numbers.

For blocks of 1, 16, 256 and 4096 drive vectors (16 channels in, 32 samples out) it builds the request the
host sends and the reply the device sends, both ways: the protocol's way (uint16 little-endian `bin` fields)
and the naive way (msgpack arrays of ints). It prints, per block size: wire efficiency (block bytes / bytes on
the wire, request and reply together) and the host's encode-request + decode-reply time, naive over binary.
Last line: one JSON object with the figures.

Run: .venv/bin/python bench/wire.py [--quick]   (quick: each timing round 10x shorter)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import msgpack
import numpy as np

from pgt.protocol import decoder, framing

K, M = 16, 32


def _frame_binary_request(drive: np.ndarray, seq: int) -> bytes:
    n, k = drive.shape
    return framing.encode(msgpack.packb({"op": "run", "seq": seq, "n": n, "k": k,
                                         "drive": drive.astype("<u2").tobytes()}))


def _frame_naive_request(drive: np.ndarray, seq: int) -> bytes:
    n, k = drive.shape
    return framing.encode(msgpack.packb({"op": "run", "seq": seq, "n": n, "k": k, "drive": drive.ravel().tolist()}))


def _decode_binary_reply(frame: bytes) -> np.ndarray:
    dec = decoder.Decoder(1 << 24)
    dec.feed(frame)
    rep = msgpack.unpackb(dec.next_payload())
    return np.frombuffer(rep["samples"], dtype="<u2").reshape(rep["n"], rep["m"])


def _decode_naive_reply(frame: bytes) -> np.ndarray:
    dec = decoder.Decoder(1 << 24)
    dec.feed(frame)
    rep = msgpack.unpackb(dec.next_payload())
    return np.asarray(rep["samples"], dtype=np.uint16).reshape(rep["n"], rep["m"])


def _reply(samples: np.ndarray, naive: bool) -> bytes:
    n, m = samples.shape
    block = samples.ravel().tolist() if naive else samples.astype("<u2").tobytes()
    return framing.encode(msgpack.packb({"op": "run", "seq": 1, "n": n, "m": m, "samples": block,
                                         "t_us": 1000 * n, "clamped": 0}))


def _seconds(fn: Callable[[], object], min_time: float) -> float:
    """Best-of-5 time per call, each round repeated until it lasts min_time."""
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / 5:
            break
        reps *= 4
    best = dt / reps
    for _ in range(4):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="timing rounds of 0.02 s instead of 0.2 s")
    min_time = 0.02 if parser.parse_args().quick else 0.2
    rng = np.random.default_rng(0)
    rows = []
    for n in (1, 16, 256, 4096):
        drive = rng.integers(0, 4096, size=(n, K))
        samples = rng.integers(0, 65536, size=(n, M))
        req_b, rep_b = _frame_binary_request(drive, 1), _reply(samples, naive=False)
        req_n, rep_n = _frame_naive_request(drive, 1), _reply(samples, naive=True)
        assert np.array_equal(_decode_binary_reply(rep_b), samples)
        assert np.array_equal(_decode_naive_reply(rep_n), samples)
        block_bytes = 2 * n * (K + M)
        eff_b = block_bytes / (len(req_b) + len(rep_b))
        eff_n = block_bytes / (len(req_n) + len(rep_n))
        t_b = _seconds(lambda: (_frame_binary_request(drive, 2), _decode_binary_reply(rep_b)), min_time)  # noqa: B023
        t_n = _seconds(lambda: (_frame_naive_request(drive, 2), _decode_naive_reply(rep_n)), min_time)  # noqa: B023
        rows.append({"n": n, "efficiency_binary": round(eff_b, 4), "efficiency_naive": round(eff_n, 4),
                     "wire_bytes_binary": len(req_b) + len(rep_b), "wire_bytes_naive": len(req_n) + len(rep_n),
                     "host_vectors_per_s_binary": round(n / t_b), "speedup_binary_over_naive": round(t_n / t_b, 2)})
        print(f"n={n:5d}  efficiency binary {eff_b:.4f}  naive {eff_n:.4f}   "
              f"host encode+decode: binary {n / t_b:12.0f} vec/s, {t_n / t_b:6.1f}x faster than naive")
    print(json.dumps({"bench": "wire", "k": K, "m": M, "blocks": rows}))


if __name__ == "__main__":
    main()
