"""Errors that the CLI reports as one line (a user's mistake or a device's fault), never as a traceback."""


class PgtError(Exception):
    """Base for every error pgt raises on purpose; the CLI prints its message and exits non-zero."""


class UserError(PgtError):
    """Bad input from the user: a wrong argument, a missing file, an unknown task."""


class DeviceError(PgtError):
    """The device (or simulator) failed, vanished, or is not what we expected."""
