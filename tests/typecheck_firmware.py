"""Type-check the on-device tree against a port's MicroPython stubs: ``python tests/typecheck_firmware.py
STUBS_ROOT [rp2] [esp32]`` (``make typecheck`` installs the stubs into STUBS_ROOT/<board> and runs this).

The tree is staged exactly as ``pgt flash`` copies it (``pgt.device_files.lay_out_board``) and checked with
``check_untyped_defs`` (the firmware has no annotations: MicroPython code), with the stub package's
``machine``, ``micropython``, ``select``… on MYPYPATH. Errors inside the stub packages themselves (they
have a few) are ignored; the other port's HAL is left out (an rp2 has no ``machine.DAC``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pgt.device_files import lay_out_board

CONFIG = """[mypy]
python_version = 3.11
check_untyped_defs = True
follow_imports = silent
ignore_errors = True
warn_unused_ignores = False

[mypy-pgt.*]
ignore_errors = False

[mypy-main]
ignore_errors = False
"""

OTHER_HAL = {"rp2": "hal_esp32.py", "esp32": "hal_rp2.py"}


def check(stubs: Path, board: str) -> int:
    with tempfile.TemporaryDirectory(prefix="pgt-fwtype-") as tmp:
        root = Path(tmp)
        lay_out_board(root, {"board": board})
        (root / "mypy.ini").write_text(CONFIG)
        files = ["main.py"] + sorted(
            p.relative_to(root).as_posix() for p in (root / "pgt").rglob("*.py")
            if p.name not in (OTHER_HAL[board], "main.py"))
        env = dict(os.environ, MYPYPATH=str((stubs / board).resolve()))
        cmd = [sys.executable, "-m", "mypy", "--no-site-packages", "--config-file", "mypy.ini",
               "--cache-dir", str(root / ".cache"), *files]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        print(f"firmware vs micropython-{board}-stubs: {proc.stdout.strip().splitlines()[-1]}")
        if proc.returncode != 0:
            print(proc.stdout.replace(str(root) + "/", ""), proc.stderr, end="")
        return proc.returncode


def main(argv: list[str]) -> int:
    stubs = Path(argv[0])
    boards = argv[1:] or ["rp2", "esp32"]
    return max(check(stubs, b) for b in boards)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
