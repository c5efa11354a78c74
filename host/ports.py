"""Serial ports: check a port name before anything opens it, open it for one owner, find a USB board again.

Every command that talks to a board opens its port here (:func:`open_port`), exclusively: a second program on
the same port would garble both, so a port another program holds is refused with one line ("port in use by
another program"). :class:`PortTransport` is the byte pipe the link and the REPL layer (:mod:`pgt.repl`) read
and write.
"""

from __future__ import annotations

import os
import select
import stat
from typing import Any, Protocol
from urllib.parse import urlsplit

from pgt.errors import DeviceError, UserError, shown

LIST_HINT = "`pgt devices` lists the serial ports"


class Transport(Protocol):
    """Bytes to and from the device; ``read_some`` waits up to ``wait`` s and returns what has arrived."""

    def read_some(self, wait: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def check_port(port: str) -> None:
    """UserError when ``port`` names a local path that is missing or is no device (a file, a directory), or is
    a ``socket://`` URL without a host and a port number from 1 to 65535. Other URLs and Windows port names
    (``COM5``) are left to pyserial."""
    if port.startswith("socket://"):
        check_socket_url(port)
        return
    if "://" in port or os.name == "nt":
        return
    try:
        mode = os.stat(port).st_mode
    except (OSError, ValueError):
        raise UserError(f"no such port: {shown(port)} ({LIST_HINT})") from None
    if not stat.S_ISCHR(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else "not a device"
        raise UserError(f"{shown(port)} is not a serial port ({kind}; {LIST_HINT})")


def check_socket_url(url: str) -> None:
    """UserError unless ``url`` is ``socket://HOST:PORT`` with a port number from 1 to 65535."""
    parts = urlsplit(url)
    try:
        number = parts.port
    except ValueError:
        number = -1
    given = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else ""
    what = ("no host" if not parts.hostname else "no port number" if not given
            else f"bad port number '{shown(given)}'" if number is None or not 1 <= number <= 65535 else "")
    if what:
        raise UserError(f"{shown(url)}: {what} (give socket://HOST:PORT with PORT from 1 to 65535)")


def is_busy(exc: BaseException) -> bool:
    """Did opening a port fail because another program holds it (pyserial's exclusive lock)?"""
    return "exclusively lock" in str(exc) or "Device or resource busy" in str(exc)


def open_serial(url: str, baudrate: int = 115200) -> Any:
    """The pyserial port at ``url``, opened for this process alone (non-blocking reads).

    DeviceError "port in use by another program" when another program holds it, else DeviceError with
    pyserial's reason (check the name first with :func:`check_port` for a one-line "no such port")."""
    import serial

    options: dict[str, Any] = {"baudrate": baudrate, "timeout": 0}
    if "://" not in url:
        options["exclusive"] = True  # a second process on the same port garbles both
    try:
        return serial.serial_for_url(url, **options)
    except (serial.SerialException, OSError, ValueError) as exc:
        if is_busy(exc):
            raise DeviceError(f"{shown(url)}: port in use by another program (a running `pgt train`, mpremote, "
                              "a terminal?): close it first") from None
        raise DeviceError(f"cannot open {shown(url)}: {shown(str(exc))} ({LIST_HINT})") from None


class PortTransport:
    """A :class:`Transport` over an open pyserial port (any URL)."""

    def __init__(self, port: Any) -> None:
        self.port = port
        try:
            self._fd: int | None = port.fileno()
        except Exception:  # noqa: BLE001 - loop:// and Windows ports have none: fall back to read timeouts
            self._fd = None
        port.timeout = 0 if self._fd is not None else 0.02

    def read_some(self, wait: float) -> bytes:
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                return b""
            data = self.port.read(1 << 16)  # non-blocking: everything available now
            if not data:  # readable but empty: the other end is gone
                raise OSError("port closed by the device")
            return bytes(data)
        waiting = self.port.in_waiting
        return bytes(self.port.read(waiting if waiting else 1))

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def close(self) -> None:
        self.port.close()


def open_port(url: str, baudrate: int = 115200) -> PortTransport:
    """:func:`open_serial` as a :class:`PortTransport`."""
    return PortTransport(open_serial(url, baudrate))


def usb_serial_number(url: str) -> str | None:
    """The USB serial number of the port at ``url`` (a device path), or None (not USB, or a URL)."""
    if "://" in url:
        return None
    from serial.tools import list_ports

    try:
        real = os.path.realpath(url)
    except (OSError, ValueError):
        real = url
    for p in list_ports.comports():
        if p.serial_number and (p.device == url or os.path.realpath(p.device) == real):
            return str(p.serial_number)
    return None


def find_by_serial_number(serial_number: str) -> str | None:
    """The device path of the USB port with this serial number, if it is plugged in now."""
    from serial.tools import list_ports

    for p in list_ports.comports():
        if p.serial_number == serial_number:
            return str(p.device)
    return None
