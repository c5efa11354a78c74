"""The MicroPython REPL, seen from the host: how to tell it is there (and in which state), the one byte
sequence that soft-resets a board into ``main.py`` from any state, and the REPL conversations pgt has over a
:class:`pgt.ports.Transport` — the board check before a flash, the soft reset after it, ``pgt reset``.

The states are the ones ``mpremote`` can leave a board in: the friendly REPL (``>>> ``), the raw REPL
(``raw REPL; CTRL-B to exit``, then ``>``) and raw-paste mode (``R\\x01``). The sign detection is sans-IO
(:func:`repl_state`, :func:`reboot_signs`); :class:`pgt.connection.Connection` uses it on the link's bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pgt.board_config import BOARDS
from pgt.errors import DeviceError, UserError, shown
from pgt.ports import Transport, check_port, open_port

NORMAL, RAW, PASTE = "normal", "raw", "paste"
"""REPL states."""
STATE_NAMES = {NORMAL: "at its MicroPython REPL", RAW: "at its raw REPL", PASTE: "in raw-paste mode"}

# The last of these seen in the byte stream tells the REPL's state (bytes, state).
REPL_SIGNS = ((b">>> ", NORMAL), (b"raw REPL; CTRL-B to exit", RAW), (b"R\x01", PASTE))
REBOOT_SIGNS = (b"soft reboot", b"MicroPython v")
SIGN_SPAN = 32  # the longest sign, and then some: signs may straddle two reads

# From any REPL state, or a running pgt serve loop, to main.py: Ctrl-C (leaves the serve loop, ends raw-paste
# mode or a running line), Ctrl-B (leaves the raw REPL; at the friendly REPL it only prints the banner), Ctrl-C
# (an empty line), Ctrl-D (a soft reset at the friendly REPL, which runs main.py). The only soft-reset sequence.
RESTART = b"\r\x03\x02\x03\x04"
RESTART_KEYS = "Ctrl-C, Ctrl-B, Ctrl-C, Ctrl-D"

CTRL_C = b"\x03"  # a running program (the serve loop) stops; at the prompt, the line typed is cancelled
BREAK_IN = b"\r\x03\x03"  # what mpremote sends when it connects
FRIENDLY = b"\r\x02"  # Ctrl-B: the friendly REPL, its banner and prompt
PLATFORM_PROBE = b"import sys; print('pgt-platform', sys.platform)\r"


def repl_state(tail: bytes) -> str | None:
    """The REPL state that the last REPL sign in ``tail`` shows, or None if it shows none."""
    last, state = -1, None
    for sign, kind in REPL_SIGNS:
        at = tail.rfind(sign)
        if at > last:
            last, state = at, kind
    return state


def reboot_signs(tail: bytes) -> list[str]:
    """What a booting MicroPython prints (``soft reboot``, a ``MicroPython v`` banner) found in ``tail``."""
    return [sign.decode() for sign in REBOOT_SIGNS if sign in tail]


def listen(transport: Transport, seconds: float, until: bytes | None = None) -> bytes:
    """What the port says for ``seconds`` (or until ``until`` has arrived)."""
    heard = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and (until is None or until not in heard):
        heard += transport.read_some(min(left, 0.05))
    return heard


def soft_reset(transport: Transport, seconds: float) -> bytes:
    """Send :data:`RESTART` and return what the port said after it, until ``soft reboot`` (or for ``seconds``)."""
    listen(transport, 0.1)  # what was said before (an earlier boot's banner) is not this reset's
    transport.write(RESTART)
    return listen(transport, seconds, until=b"soft reboot")


def soft_reset_into_main(port: str, timeout: float = 10.0) -> bytes:
    """Soft-reset the board on ``port`` into ``/main.py``; DeviceError if it does not reboot within ``timeout``."""
    transport = open_port(port)
    try:
        heard = soft_reset(transport, timeout)
    finally:
        transport.close()
    if b"soft reboot" not in heard:
        raise DeviceError(f"{shown(port)}: no soft reboot after {RESTART_KEYS} (heard {shown(heard[-80:])})")
    return heard


def check_board(port: str, board: str | None, say: Callable[[str], None] = print, wait: float = 3.0) -> str:
    """Before mpremote: a MicroPython REPL answers on ``port`` (Ctrl-C leaves a running firmware, Ctrl-B gives
    the friendly REPL) within ``wait`` seconds, and the board type is ``board`` or its ``sys.platform``.
    Returns the board type; UserError / DeviceError with the reason otherwise (a port that another program
    holds is refused before a byte is sent)."""
    check_port(port)
    say(f"checking {port}: is a MicroPython REPL there? (up to {wait:.0f} s)")
    transport = open_port(port)
    try:
        transport.write(BREAK_IN)
        listen(transport, 0.1)
        transport.write(FRIENDLY)
        heard = listen(transport, wait, until=b">>> ")
        if b">>> " not in heard:
            what = "nothing" if not heard else f"{len(heard)} bytes but no REPL prompt ({shown(heard[-40:])})"
            raise DeviceError(f"{shown(port)}: no MicroPython REPL answered in {wait:.0f} s (heard {what}); is a "
                              "board with MicroPython on this port (`pgt devices`), and no other program using it?")
        listen(transport, 0.2)  # the prompts still coming (one per Ctrl-C): not the probe's answer
        transport.write(PLATFORM_PROBE)
        heard = listen(transport, wait, until=b"\n>>> ")
    finally:
        transport.close()
    found = None
    for line in heard.decode("ascii", "replace").splitlines():
        if line.startswith("pgt-platform "):
            found = line.split()[1]
    if board is not None:
        if found in BOARDS and found != board:
            raise UserError(f"{port} is an {found} board (sys.platform), not {board}: pass --board {found}")
        return board
    if found is None or found not in BOARDS:
        raise UserError(f"cannot tell the board type of {port} (sys.platform is {shown(found or 'unknown')!r}): "
                        f"pass --board {' or --board '.join(BOARDS)}")
    say(f"{port}: MicroPython on {found}")
    return found
