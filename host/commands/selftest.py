"""``pgt selftest URL [--out DIR] [--write]``: first light on a board — wiring, noise, settling, watchdog.

Runs the checks of ``pgt.selftest.CHECKS`` through the firmware's own ops (``run``, ``config``, ``status``),
prints one verdict line per check, and writes ``selftest.json`` and ``selftest.png`` (one page) to ``--out``.
``--write`` stores the measured settle time as ``settle_us`` and ``settle_min_us`` in the board's board.json (on
a board through mpremote, then a soft reset; on ``sim://?config=FILE`` in FILE), so the trainer uses it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pgt.commands.info import add_device_arguments, check_device_args, open_client

NAME = "selftest"
HELP = "check a board on first light: handshake, settle time per channel, noise/ENOB and DNL per tap, watchdog"
COARSE_US = (0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pgt.selftest import CHECKS

    add_device_arguments(p)
    p.add_argument("--out", type=Path, default=Path("selftest"), metavar="DIR",
                   help="directory for selftest.json and selftest.png (default ./selftest)")
    p.add_argument("--write", action="store_true",
                   help="store the measured settle time as settle_us and settle_min_us in the board's board.json")
    p.add_argument("--max-settle-us", type=int, default=20000, metavar="US",
                   help="longest settle time tried in the step response (default 20000)")
    p.add_argument("--ramp-rows", type=int, default=4096, metavar="N",
                   help="rows of the slow ramp for the DNL histogram and the spans (default 4096)")
    p.epilog = "checks:\n" + "\n".join(f"  {name:10s} {line}" for name, line in CHECKS.items())
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _say(text: str) -> None:
    print(f"pgt selftest: {text}", file=sys.stderr, flush=True)


def _codes(info: dict[str, Any]) -> tuple[Any, Any]:
    import numpy as np

    return np.asarray(info["drive_lo"], dtype=np.int64), np.asarray(info["drive_hi"], dtype=np.int64)


def step_block(client: Any, channel: int, settle_us: int, pairs: int) -> tuple[Any, Any]:
    """One block of ``pairs`` (low, high) steps of ``channel`` (the others at mid-range) at ``settle_us``:
    the mean high-minus-low reading per tap and the readings (first pair dropped: its predecessor is unknown)."""
    import numpy as np

    lo, hi = _codes(client.info)
    mid = (lo + hi) // 2
    a, b = mid.copy(), mid.copy()
    a[channel] = lo[channel] + (hi[channel] - lo[channel]) // 10
    b[channel] = lo[channel] + 9 * (hi[channel] - lo[channel]) // 10
    rows = np.tile(np.stack([a, b]), (pairs, 1))
    client.configure(settle_us=int(settle_us))
    y = client.run_codes(rows).astype(np.float64)[2:]
    down, up = y[0::2], y[1::2]
    return up.mean(axis=0) - down.mean(axis=0), np.concatenate([up - up.mean(axis=0), down - down.mean(axis=0)])


def measure_settle(client: Any, channel: int, max_us: int, floor_us: int) -> dict[str, Any]:
    """The step response of ``channel``: residual (in noise sigmas) per delay and the settle time."""
    import numpy as np

    from pgt import selftest

    pairs = min(32, max(2, client.max_batch // 2))
    finals = [step_block(client, channel, max_us, pairs) for _ in range(2)]
    final = (finals[0][0] + finals[1][0]) / 2.0
    sigma = np.concatenate([f[1] for f in finals]).std(axis=0, ddof=2)
    delays = sorted({max(int(t), floor_us) for t in COARSE_US if t < max_us} | {max_us})
    deltas = {t: step_block(client, channel, t, pairs)[0] for t in delays}
    res = selftest.step_residual(np.array([deltas[t] for t in delays]), final, sigma)
    above = np.nonzero(res >= 1.0)[0]
    if above.size and above[-1] < len(delays) - 1:  # refine between the last delay above one sigma and the next
        ta, tb = delays[above[-1]], delays[above[-1] + 1]
        for t in np.linspace(ta, tb, 8)[1:-1].round().astype(int):
            deltas.setdefault(int(t), step_block(client, channel, int(t), pairs)[0])
        delays = sorted(deltas)
        res = selftest.step_residual(np.array([deltas[t] for t in delays]), final, sigma)
    return {"channel": channel, "delays_us": delays, "residual": res.tolist(), "sigma_codes": sigma.tolist(),
            "time_us": selftest.settle_time(np.array(delays), res)}


def ramp(client: Any, rows: int, settle_us: int) -> Any:
    """Single reads (n_avg 1) along a slow sweep: channel 0 rises once from its low to its high code, channel j
    goes up and down j times; returns the (rows, m) readings."""
    import numpy as np

    lo, hi = _codes(client.info)
    t = np.linspace(0.0, 1.0, rows)
    shape = np.stack([t] + [1.0 - np.abs(((j * t) % 1.0) * 2.0 - 1.0) for j in range(1, client.n_inputs)], axis=1)
    codes = np.rint(lo + shape * (hi - lo)).astype(np.int64)
    client.configure(n_avg=1, settle_us=int(settle_us))
    out = np.empty((rows, client.n_outputs))
    step = client.max_batch
    for i in range(0, rows, step):
        if (i // step) % 16 == 0:
            _say(f"ramp: rows {i}..{min(rows, i + step * 16)} of {rows}")
        out[i:i + step] = client.run_codes(codes[i:i + step])
    return out


def watchdog(client: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int, float]:
    """Drive channel 0 high, read the status (loopback), fall silent past the timeout, read it again."""
    import numpy as np

    lo, hi = _codes(client.info)
    old = int(client.info["timeout_ms"])
    before = client.status()
    client.configure(timeout_ms=300, settle_us=max(int(client.info["settle_us"]), 1000))
    row = ((lo + hi) // 2)[None, :]
    row[0, 0] = hi[0]
    client.run_codes(row.astype(np.int64))
    driven = client.status()
    silent = (300 + 2 * int(client.info["poll_ms"])) / 1000.0 + 0.5
    _say(f"watchdog: silent for {silent:.1f} s")
    time.sleep(silent)
    client.ping()  # (the in-process simulator takes its host-silence decision when the next request comes)
    time.sleep(0.05)
    after = client.status()
    client.configure(timeout_ms=old)
    return before, driven, after, int(hi[0]), silent


def run_checks(client: Any, args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    import numpy as np

    from pgt import selftest
    from pgt.device_files import file_hashes

    info = dict(client.info)
    board_settle, n_avg = int(info["settle_us"]), int(info["n_avg"])
    checks = [selftest.handshake(info, file_hashes())]
    floor = int(info.get("settle_min_us", 0))
    channels = []
    for j in range(client.n_inputs):
        _say(f"settle: step response of drive channel {j} (up to {args.max_settle_us} us)")
        channels.append(measure_settle(client, j, args.max_settle_us, floor))
    checks.append(selftest.settle_check(channels, board_settle, args.max_settle_us))
    rec = checks[-1].values["recommended_settle_us"]
    settle = max(board_settle, rec or args.max_settle_us)
    _say("noise: repeated single reads at the lowest drive")
    lo, _ = _codes(info)
    client.configure(n_avg=1, settle_us=settle)
    quiet = client.run_codes(np.tile(lo, (min(64, client.max_batch), 1))).astype(np.float64)[1:]
    sigma1 = quiet.std(axis=0, ddof=1)
    checks.append(selftest.noise_check(sigma1, int(info["adc_bits"]), float(info["adc_V_per_code"])))
    readings = ramp(client, args.ramp_rows, settle)
    checks.append(selftest.dnl_check(selftest.dnl(readings, int(info["adc_bits"]))))
    checks.append(selftest.span_check(readings, sigma1))
    client.configure(n_avg=n_avg, settle_us=board_settle)
    before, driven, after, high, silent = watchdog(client)
    checks.append(selftest.watchdog_check(before, driven, after, int(lo[0]), high, int(info["dac_bits"]), silent))
    return checks, {"channels": channels, "ramp": readings, "quiet_sigma": sigma1}


def write_settle(url: str, settle_us: int, timeout: float) -> str:
    """Store ``settle_us`` (and as ``settle_min_us``) in the board's board.json; what was written where."""
    from pgt.errors import UserError

    keys = {"settle_us": int(settle_us), "settle_min_us": int(settle_us)}
    if url.startswith("sim:"):
        from urllib.parse import parse_qs, urlsplit

        path = (parse_qs(urlsplit(url).query).get("config") or [""])[0]
        if not path:
            raise UserError("--write on sim:// needs a board.json to write: sim://?config=FILE")
        cfg = json.loads(Path(path).read_text())
        cfg.update(keys)
        Path(path).write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        return path
    return write_board_json(url, keys, timeout)


def write_board_json(port: str, keys: dict[str, int], timeout: float) -> str:
    """Update the keys in ``:board.json`` on a MicroPython board (mpremote), then soft-reset it into main.py."""
    import subprocess
    import tempfile

    from pgt.errors import DeviceError
    from pgt.flash import _run, mpremote_exe
    from pgt.repl import soft_reset_into_main

    base = mpremote_exe() + ["connect", port, "resume"]
    try:
        text = _run(base + ["fs", "cat", ":board.json"], 60, may_fail=True)
        cfg = json.loads(text) if text.strip().startswith("{") else {}
    except (json.JSONDecodeError, subprocess.SubprocessError):
        cfg = {}
    cfg.update(keys)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "board.json"
        local.write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        try:
            _run(base + ["fs", "cp", str(local), ":board.json"], 60)
        except DeviceError as exc:
            raise DeviceError(f"--write: {exc} (is {port} a MicroPython board?)") from None
    soft_reset_into_main(port, timeout=max(timeout, 10.0))
    return f"{port}:board.json"


def run(args: argparse.Namespace) -> int:
    from pgt import selftest
    from pgt.errors import UserError

    check_device_args(args)
    if not 100 <= args.max_settle_us <= 1_000_000:
        raise UserError(f"--max-settle-us must be 100..1000000, got {args.max_settle_us}")
    if not 256 <= args.ramp_rows <= 65536:
        raise UserError(f"--ramp-rows must be 256..65536, got {args.ramp_rows}")
    if args.write and args.url.startswith("sim:") and "config=" not in args.url:
        raise UserError("--write on sim:// needs a board.json to write: sim://?config=FILE")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot create the directory ({exc.strerror or exc})") from None
    with open_client(args) as client:
        info = dict(client.info)
        checks, data = run_checks(client, args)
    rep = selftest.report(checks, info)
    (args.out / "selftest.json").write_text(json.dumps(rep, indent=1) + "\n")
    from pgt.selftest_plot import page

    png = page(args.out / "selftest.png", checks, data, f"{info['board']} uid {info['uid']}")
    for c in checks:
        print(f"{c.verdict.upper():5s} {c.name:10s} {c.line}")
    rec = checks[1].values["recommended_settle_us"]
    if args.write:
        if rec is None:
            raise UserError("--write: no settle time measured (the drive did not settle): nothing written")
        print(f"wrote settle_us = settle_min_us = {rec} to {write_settle(args.url, rec, args.timeout)}")
    print(f"verdict: {rep['verdict']}; wrote {args.out / 'selftest.json'} and {png}")
    return 0 if rep["verdict"] != "fail" else 1
