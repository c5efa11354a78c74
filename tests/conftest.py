from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "support"))

from mpvm import MicroPythonVM  # noqa: E402

SUPPORT = Path(__file__).parent / "support"


@pytest.fixture(scope="session")
def mpvm() -> Iterator[MicroPythonVM]:
    """A real MicroPython VM (fresh per run), with the on-device tree and tests/support/*.py on its path."""
    extra = {p.name: p for p in SUPPORT.glob("*.py")}
    vm = MicroPythonVM(extra)
    yield vm
    vm.close()
