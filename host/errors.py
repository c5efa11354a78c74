"""Errors that the CLI reports as one line (a user's mistake or a device's fault), never as a traceback."""


class PgtError(Exception):
    """Base for every error pgt raises on purpose; the CLI prints its message and exits non-zero."""


class UserError(PgtError):
    """Bad input from the user: a wrong argument, a missing file, an unknown task."""


class DeviceError(PgtError):
    """The device (or simulator) failed, vanished, or is not what we expected."""


def shown(value: str | bytes | bytearray, limit: int = 80) -> str:
    """``value`` (user input, or bytes a port sent) as one line in a message: printable text kept, every other
    character or byte written one way (``\\xNN``, ``\\uNNNN``; a backslash doubled), and cut after ``limit``
    characters of the original with ``... (N more)`` so that a long input is never echoed whole."""
    if isinstance(value, (bytes, bytearray)):
        text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else _escape(chr(b)) for b in bytes(value[:limit]))
    else:
        text = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in value[:limit])
    more = len(value) - limit
    return text + (f"... ({more} more)" if more > 0 else "")


LONG_RUN = 200  # characters: a run without spaces longer than this in a message is user input echoed whole


def one_line(message: str) -> str:
    """``message`` as the CLI prints it: one line, every character that is not printable written as ``\\xNN``
    (or ``\\uNNNN``) — the way :func:`shown` writes it — and every run without spaces longer than ``LONG_RUN``
    (a long input echoed whole) cut to its first 60 characters and ``... (N more)``."""
    text = "".join(c if c.isprintable() else _escape(c) for c in message)
    return " ".join(word if len(word) <= LONG_RUN else f"{word[:60]}... ({len(word) - 60} more)"
                    for word in text.split(" "))


def _escape(c: str) -> str:
    """One character as an escape: ``\\\\`` for a backslash, else ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    n = ord(c)
    return "\\\\" if c == "\\" else f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
