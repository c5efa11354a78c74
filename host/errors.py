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
        text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else "\\\\" if b == 0x5C else f"\\x{b:02x}"
                       for b in bytes(value[:limit]))
    else:
        text = "".join(c if c.isprintable() and c != "\\" else "\\\\" if c == "\\" else
                       f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                       else f"\\U{ord(c):08x}" for c in value[:limit])
    more = len(value) - limit
    return text + (f"... ({more} more)" if more > 0 else "")
