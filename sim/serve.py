"""Serve a simulated board over bytes: the firmware's own serve loop behind a pty or a TCP socket.

The serve loop is ``pgt.firmware.serve.serve``, the code a board runs, called unchanged: this module only
gives it its I/O (``read``, ``wait``, ``write`` over the pty or socket) and emulates what a board does around
it — the MicroPython REPL. Frame timeout, watchdog and link counters (``status``) are therefore the
firmware's.

The board itself (serve loop, REPL, resets, write stalls) is :class:`pgt.sim.stream_board.StreamBoard`; this
module gives it its byte streams. Leaving the serve loop (the ``exit`` op, or a Ctrl-C byte 0x03 where a
frame's magic is expected) sets the drive to zero, and the simulated board then behaves as at its MicroPython
REPL (:mod:`pgt.sim.repl` says how: a banner and prompt, enough of the raw REPL that ``mpremote`` fails at
once; it cannot run Python, ``pgt sim --board`` is the virtual board that can). It returns to serving
- on a new frame (bytes from the magic ``PG`` on): the same Core resumes, its state kept (as if ``main.py``
  were run again by hand); or
- on Ctrl-D (0x04, soft reset): it writes ``MPY: soft reboot`` and a fresh Core (a new boot id) takes over the
  same HAL (state lost, drive zero), as a reboot running ``main.py`` would.

Servers: ``PtyServer(core).start() -> path`` of the slave pty (pyserial, a terminal program or mpremote open it
as a serial port; raw mode); ``TcpServer(core, port=0).start() -> port`` (pyserial:
``socket://127.0.0.1:PORT``; TCP_NODELAY). TCP serves one client at a time: a new connection replaces the old
one (closed at once) and drops its partly sent frame; the Core and its state stay (docs/protocol.md, section
4). Each server runs the loop in one thread, reads in large chunks, and keeps reading while a reply drains, so
a pipelining client cannot deadlock it. Like rp2's USB CDC, a write that makes no progress for
``WRITE_STALL_S`` is cut short (counted in the server's ``tx_cut``). ``reset_device()`` simulates a board reset
for fault tests. ``stop()`` (or leaving a ``with`` block) ends the thread and closes every descriptor.
"""

from __future__ import annotations

import os
import socket
import tty
from typing import Any

from pgt.firmware.core import Core

from .repl import BANNER, CANNOT_RUN, PROMPT, RAW_REPL, SOFT_REBOOT
from .stream_board import Log, Restart, StreamBoard, reboot

__all__ = ["PtyServer", "TcpServer", "reboot", "BANNER", "PROMPT", "SOFT_REBOOT", "RAW_REPL", "CANNOT_RUN"]

READ_SIZE = 1 << 18


class PtyServer(StreamBoard):
    """Serve ``core`` on a pseudo-terminal: ``start()`` returns the slave's path (e.g. ``/dev/pts/5``)."""

    def __init__(self, core: Core, log: Log | None = None) -> None:
        super().__init__(core, log=log)
        self._master = -1
        self._slave = -1
        self.path = ""

    def start(self) -> str:
        """Open the pty (raw mode) and start serving; return the path a serial client opens."""
        self._master, self._slave = os.openpty()
        # raw: no echo, no line discipline, bytes pass unchanged. The server keeps the slave open so the pty
        # never hangs up between clients.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._start_thread(f"pgt-sim-pty {self.path}")
        return self.path

    def _conn(self) -> Any:
        return self._master if self._master >= 0 else None

    def _recv(self, conn: Any) -> bytes | None:
        try:
            return os.read(conn, READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError:
            return b""  # EIO while no process has the slave open (not expected: the server keeps it open)

    def _write(self, conn: Any, view: memoryview) -> int:
        return os.write(conn, view)

    def _close(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1


class TcpServer(StreamBoard):
    """Serve ``core`` on TCP: ``start()`` returns the port; pyserial opens ``socket://127.0.0.1:PORT``.

    One client at a time: a new connection replaces the old one (whose partly sent frame is dropped).
    """

    def __init__(self, core: Core, host: str = "127.0.0.1", port: int = 0, log: Log | None = None) -> None:
        super().__init__(core, log=log)
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    def start(self) -> int:
        """Listen and start serving; return the port (the one asked for, or a free one for port 0)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        listener.listen(2)
        listener.setblocking(False)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._start_thread(f"pgt-sim-tcp {self.port}")
        return self.port

    def _conn(self) -> Any:
        return self._client

    def _extra_watch(self) -> list[Any]:
        return [self._listener] if self._listener is not None else []

    def _on_extra(self, readable: list[Any]) -> None:
        if self._listener is None or self._listener not in readable:
            return
        try:
            conn, peer = self._listener.accept()
        except BlockingIOError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        if self._client is not None:
            self._drop_client("replaced by a new connection")
        self._client = conn
        self._clear_input()
        if self.log is not None:
            self.log(f"client connected from {peer[0]}:{peer[1]}")
        raise Restart

    def _drop_client(self, why: str) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            if self.log is not None:
                self.log(f"client disconnected ({why})")

    def _peer_gone(self, conn: Any) -> None:
        if conn is self._client:
            self._drop_client("closed by the client")

    def _hangup(self) -> None:
        self._drop_client("board reset")

    def _recv(self, conn: Any) -> bytes | None:
        try:
            data: bytes = conn.recv(READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return data if data else None

    def _write(self, conn: Any, view: memoryview) -> int:
        sent: int = conn.send(view)
        return sent

    def _close(self) -> None:
        self._drop_client("server stopped")
        if self._listener is not None:
            self._listener.close()
            self._listener = None
