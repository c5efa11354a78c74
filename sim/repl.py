"""What the simulated board answers at its MicroPython REPL, once the serve loop is left (sans-IO).

:func:`repl_input` takes the bytes typed at the REPL and a :class:`ReplState`, and returns what the board writes
back, what happens next, and the bytes to read again: the friendly REPL (a banner and ``>>> `` prompt; Ctrl-C
and Enter give a new prompt, other typing is ignored), enough of the raw REPL (Ctrl-A, Ctrl-B, and Ctrl-D
answering any code with an ``OSError``) that ``mpremote`` fails at once instead of waiting, a soft reset
(Ctrl-D with nothing to run) and a frame's magic (``PG``), which resumes serving. ``pgt.sim.serve`` does the
I/O and the resets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgt.protocol import framing

__all__ = ["ReplState", "repl_input", "BANNER", "PROMPT", "SOFT_REBOOT", "RAW_REPL", "CANNOT_RUN", "SOFT_RESET",
           "FRAME", "MORE"]

CTRL_A = 0x01
CTRL_B = 0x02
CTRL_C = 0x03
CTRL_D = 0x04
PROMPT = b">>> "
BANNER = b"\r\nMicroPython (pgt sim): serve loop left; Ctrl-D or a frame resumes it\r\n" + PROMPT
SOFT_REBOOT = b"\r\nMPY: soft reboot\r\n"
RAW_REPL = b"\r\nraw REPL; CTRL-B to exit\r\n>"
CANNOT_RUN = (b"Traceback (most recent call last):\r\n  File \"<stdin>\", line 1\r\n"
              b"OSError: pgt sim cannot run Python code; use `pgt sim --board` for a MicroPython board\r\n")
_KEYS = re.compile(rb"[\x01\x02\x03\x04\r]")

SOFT_RESET = "soft reset"  # Ctrl-D: a fresh Core; in the raw REPL the board stays there
FRAME = "frame"  # a frame's magic: serve again (the rest starts with it)
MORE = "more"  # a trailing first byte of the magic: read it again with what comes next


@dataclass
class ReplState:
    """In the raw REPL or not, and the code typed there so far."""

    raw: bool = False
    code: bytes = b""


def repl_input(data: bytes, st: ReplState) -> tuple[bytes, str | None, bytes]:
    """Answer ``data`` typed at the REPL (``st`` is updated): (bytes to write, event or None, bytes to read
    again). The event is :data:`SOFT_RESET`, :data:`FRAME` or :data:`MORE`."""
    out = []
    magic = data.find(framing.MAGIC)
    typed_end = len(data) if magic < 0 else magic
    done = 0
    for match in _KEYS.finditer(data, 0, typed_end):
        at = match.start()
        if st.raw:
            st.code += data[done:at]
        done = match.end()
        key = data[at]
        if key == CTRL_A:
            st.raw, st.code = True, b""
            out.append(RAW_REPL)
        elif key == CTRL_B:
            st.raw = False
            out.append(BANNER)
        elif key == CTRL_C:
            if st.raw:
                st.code = b""
            else:
                out.append(b"\r\n" + PROMPT)
        elif key == CTRL_D:
            if st.raw and st.code:
                st.code = b""
                out.append(b"OK\x04" + CANNOT_RUN + b"\x04>")  # stdout, then the error, as the raw REPL does
                continue
            out.append(SOFT_REBOOT)
            return b"".join(out), SOFT_RESET, data[done:]
        elif st.raw:
            st.code += b"\r"
        else:
            out.append(b"\r\n" + PROMPT)
    if st.raw:
        st.code += data[done:typed_end]
    if magic >= 0:
        st.raw, st.code = False, b""
        return b"".join(out), FRAME, data[magic:]
    if data.endswith(framing.MAGIC[:1]):
        if st.raw:
            st.code = st.code[:-1]
        return b"".join(out), MORE, framing.MAGIC[:1]
    return b"".join(out), None, b""
