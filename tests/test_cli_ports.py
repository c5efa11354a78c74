"""Ports as a user meets them (issue 18 rows 5, 16 and 17), each run as a user would — ``pgt`` in a subprocess on a
real pseudo-terminal, bounded by a timeout: a port that another program holds is refused with one line and not
touched; what a port sends and what a user types is shown one way and cut when long."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pgt.device_files import file_hashes
from pgt.sim.device import make_core
from pgt.sim.serve import PtyServer

PGT = [sys.executable, "-m", "pgt.cli"]
BUSY = "port in use by another program"


def pgt(*argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PGT, *argv], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The one error line of a failed command (its last line on stderr, after any progress; no traceback): exit
    status 1, or 2 for a usage error the argument parser reports."""
    lines = proc.stderr.splitlines()
    assert proc.returncode in (1, 2), proc.stderr
    assert lines and lines[-1].startswith(f"pgt {command}: error: "), proc.stderr
    assert sum(": error: " in line for line in lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


class Pty:
    """A pseudo-terminal: ``path`` is the port a user gives; ``heard()`` is what was written to it."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)

    def heard(self) -> bytes:
        out = b""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except BlockingIOError:
                return out
            if not chunk:
                return out
            out += chunk

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


@contextmanager
def held(path: str) -> Iterator[None]:
    """``path`` opened and locked as pyserial locks a port it opens exclusively (another program holding it)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


@pytest.mark.parametrize("argv", [["info", "{port}"], ["reset", "{port}"], ["probe", "{port}", "--out", "{tmp}"],
                                  ["train", "--device", "{port}", "--steps", "1", "--out", "{tmp}"],
                                  ["flash", "{port}", "--board", "rp2"]])
def test_a_port_locked_by_another_program_is_refused_in_one_line(pty: Pty, tmp_path: Path, argv: list[str]) -> None:
    """Row 17: not pyserial's "Could not exclusively lock port ... Resource temporarily unavailable"."""
    argv = [a.replace("{port}", pty.path).replace("{tmp}", str(tmp_path / "out")) for a in argv]
    with held(pty.path):
        proc = pgt(*argv)
    line = one_line_error(proc, argv[0])
    assert f"{pty.path}: {BUSY}" in line and "exclusively lock" not in line
    assert pty.heard() == b""  # not a byte was sent to the port


@pytest.mark.slow
def test_flash_refuses_a_port_a_training_uses(tmp_path: Path) -> None:
    """Row 5: `pgt flash PORT` while `pgt train --device PORT` runs is refused like info/probe/reset/train; the
    training goes on, its board never broken into (same Core, no Ctrl-C seen, no reboot)."""
    with PtyServer(make_core(noise_free=True, files=file_hashes())) as srv:
        port = srv.start()
        core = srv.core
        # (surrogate: a device query every step, so the board never waits out its host-silence timeout the way
        # it may while the default twin trains in silico)
        train = subprocess.Popen([*PGT, "train", "--device", port, "--estimator", "surrogate", "--steps", "100000",
                                  "--out", str(tmp_path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 text=True)
        try:
            assert train.stderr is not None
            header = ""
            deadline = time.monotonic() + 60
            while not header.startswith("run ") and time.monotonic() < deadline:
                header = train.stderr.readline()
                assert header or train.poll() is None, "pgt train ended before it started training"
            assert header.startswith("run "), header
            runs = core.counts["runs"]
            proc = pgt("flash", port, "--board", "rp2")
            assert f"{port}: {BUSY}" in one_line_error(proc, "flash")
            deadline = time.monotonic() + 30
            while core.counts["runs"] == runs and time.monotonic() < deadline:
                time.sleep(0.05)
            assert train.poll() is None and core.counts["runs"] > runs  # still training
            assert srv.core is core and srv.serving and core.counts["watchdog_trips"] == 0
        finally:
            train.send_signal(signal.SIGINT)
            try:
                train.wait(timeout=30)
            except subprocess.TimeoutExpired:
                train.kill()
                train.wait()


def test_what_a_port_sends_is_shown_one_way(pty: Pty) -> None:
    """Row 16: `pgt info` on a port sending garbage with control bytes: one line, every byte that is not
    printable written as \\xNN (none raw), the preview cut."""
    garbage = b"\x1b[2J\x07temp=21.5C\r\n\x00\x01\xfe\xff" * 40
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            try:
                os.write(pty.master, garbage)
            except BlockingIOError:
                pass
            pty.heard()
            stop.wait(0.05)

    talker = threading.Thread(target=chatter, daemon=True)
    talker.start()
    try:
        proc = pgt("info", pty.path, "--timeout", "0.3")
    finally:
        stop.set()
        talker.join()
    line = one_line_error(proc, "info")
    assert line.isprintable() and len(line) < 500, line
    assert "not pgt frames" in line and "\\x1b[2J\\x07temp=21.5C\\x0d\\x0a" in line and "\\xfe\\xff" in line


@pytest.mark.parametrize("argv", [["train", "--task", "{long}"], ["train", "--device", "{long}"],
                                  ["info", "sim://?seed={long}"], ["train", "--model", "{long}"],
                                  ["train", "--task", "x\x1b[31m\x07"]])
def test_long_or_strange_input_is_cut_and_escaped_in_the_message(argv: list[str]) -> None:
    """Row 16: `--task <20,000 chars>` does not echo 20 KB (nor 40); a control character typed shows as \\xNN."""
    argv = [a.replace("{long}", "a" * 20_000) for a in argv]
    proc = pgt(*argv)
    line = one_line_error(proc, argv[0])
    assert len(line) < 500 and line.isprintable(), line[:300]
    if "\x1b" in "".join(argv):
        assert "\\x1b[31m\\x07" in line
    else:
        assert "more)" in line  # it says it was cut


@pytest.mark.parametrize("url", ["sim:?seed=1", "sim:", "sim://host?seed=1", "sim:///path", "SIM://", "sim://#x"])
def test_a_malformed_simulator_url_is_refused(url: str) -> None:
    """Every malformed sim: URL is refused with one line (it once reached pyserial: "cannot open sim:?seed=1")."""
    line = one_line_error(pgt("info", url), "info")
    assert "malformed simulator URL" in line and "sim://?" in line and "cannot open" not in line


def test_a_malformed_simulator_url_is_refused_before_anything_opens(tmp_path: Path) -> None:
    """... by every command that takes a device, before anything is written."""
    for argv in (["train", "--device", "sim:?seed=1", "--out", str(tmp_path / "runs")],
                 ["probe", "sim:?seed=1", "--out", str(tmp_path / "probe")]):
        assert "malformed simulator URL" in one_line_error(pgt(*argv), argv[0])
    assert not list(tmp_path.iterdir())
