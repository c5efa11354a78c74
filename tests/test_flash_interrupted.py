"""A flash cut short at any point leaves a board that answers the handshake after a power cycle (issue 19).

On the virtual board with a persistent filesystem (``pgt sim --board --fs DIR``): flash once ("first"), then
for cut points spread over the next flash's copy and switch, kill ``pgt flash`` (and its mpremote) and the
board at once (a cable pulled, the power gone), start the board again on the same filesystem and handshake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sim_output import served_port

pytestmark = pytest.mark.slow(seconds=40)

CUTS = (0.05, 0.25, 0.45, 0.65, 0.85, 1.0)  # fractions of the time from "copying" to "soft reset"


def start_board(fs: Path, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, TMPDIR=str(tmp))  # what a killed board leaves behind stays in the test's directory
    proc = subprocess.Popen([sys.executable, "-m", "pgt.cli", "sim", "--board", "--fs", str(fs)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True, env=env)
    assert proc.stdout is not None
    port = served_port(proc.stdout)
    assert port.startswith("/dev/"), port
    return proc, port


def kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=20)
    if proc.stdout is not None:
        proc.stdout.close()


def flash(port: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pgt.cli", "flash", port, "--board", "rp2", "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def lines_until(proc: subprocess.Popen[str], marker: str, seen: list[str]) -> float:
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return time.monotonic()
    raise AssertionError("".join(seen))


def handshake(port: str) -> dict[str, object]:
    from pgt.device import open_device

    deadline = time.monotonic() + 60
    while True:
        try:
            with open_device(port, timeout=5.0) as client:
                return dict(client.info)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def test_a_flash_killed_at_any_point_leaves_a_board_that_answers(tmp_path: Path) -> None:
    fs = tmp_path / "flash"
    configs = {}
    for name in ("first", "second"):
        configs[name] = tmp_path / f"{name}.json"
        configs[name].write_text(json.dumps({"board": "rp2", "name": name}))
    board, port = start_board(fs, tmp_path)
    try:
        proc = flash(port, configs["first"])
        seen: list[str] = []
        t0 = lines_until(proc, "copying", seen)
        span = lines_until(proc, "soft reset", seen) - t0
        assert proc.wait(timeout=120) == 0, "".join(seen)
    finally:
        kill(board)
    answered = []
    for frac in CUTS:
        board, port = start_board(fs, tmp_path)
        try:
            handshake(port)  # the firmware is up (its boot hashes its files: seconds on a loaded machine)
            proc = flash(port, configs["second"])
            seen = []
            lines_until(proc, "copying", seen)
            time.sleep(frac * span)
            kill(proc)  # pgt flash and its mpremote: the cable is pulled ...
        finally:
            kill(board)  # ... and the board loses power
        board, port = start_board(fs, tmp_path)
        try:
            info = handshake(port)
        finally:
            kill(board)
        files = info["files"]
        assert isinstance(files, dict)
        tree = "pgt_prev" if any(str(rel).startswith("pgt_prev/") for rel in files) else "pgt"
        answered.append((frac, info["board"], tree))
    assert len(answered) == len(CUTS)
    assert {b for _, b, _ in answered} <= {"first", "second"}
    print(answered)
