from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "support"))

from mpvm import MicroPythonVM  # noqa: E402

SUPPORT = Path(__file__).parent / "support"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from the fixtures a test uses: ``vm`` (a MicroPython VM or the virtual board), ``ray`` (the
    module's local Ray)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"mpvm", "virtual_board"}:
            item.add_marker(pytest.mark.vm)
        if "local_ray" in names:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def mpvm() -> Iterator[MicroPythonVM]:
    """A real MicroPython VM (fresh per run), with the on-device tree and tests/support/*.py on its path."""
    extra = {p.name: p for p in SUPPORT.glob("*.py")}
    vm = MicroPythonVM(extra)
    yield vm
    vm.close()


@pytest.fixture(scope="module")
def virtual_board() -> Iterator[str]:
    """A virtual MicroPython board (``pgt.sim.virtual_board``) in a subprocess: yields its pty path."""
    code = ("from pgt.sim.virtual_board import serve\n"
            "serve(seed=3, level='A', announce=lambda p: print(p, flush=True))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)  # serve() stops the board and removes its temporary directories
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A local TCP port where nothing answers: bound by this test (so no parallel worker can take it), never
    listening — a connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (``make test``) keeps a module's tests on one worker, so a module-scoped Ray cluster
    or virtual board starts once; the benches (each its own subprocess, no shared fixture) are spread one by one."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if nodeid.startswith("tests/test_bench.py::") else super()._split_scope(nodeid)

    return Scheduling(config, log)
