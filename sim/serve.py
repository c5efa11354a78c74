"""Serve a simulated board over bytes: the firmware's own serve loop behind a pty or a TCP socket.

The serve loop is ``pgt.firmware.serve.serve``, the code a board runs, called unchanged: this module only
gives it its I/O (``read``, ``wait``, ``write`` over the pty or socket) and emulates what a board does around
it — the MicroPython REPL. Frame timeout, watchdog and link counters (``status``) are therefore the
firmware's.

Leaving the serve loop (the ``exit`` op, or a Ctrl-C byte 0x03 where a frame's magic is expected) sets the drive
to zero, and the simulated board then behaves as at its MicroPython REPL: it writes a banner and the ``>>> ``
prompt, answers Ctrl-C and Enter with a new prompt, and ignores other typing. It cannot run Python (``pgt sim
--board`` is the virtual board that can), but it speaks enough of the raw REPL (Ctrl-A, Ctrl-B, Ctrl-D) that
``mpremote`` fails at once with an ``OSError`` saying so instead of waiting for a prompt. It returns to serving
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
import re
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pgt.firmware import serve as firmware
from pgt.firmware.core import Core
from pgt.protocol import framing

__all__ = ["PtyServer", "TcpServer", "reboot", "BANNER", "PROMPT", "SOFT_REBOOT", "RAW_REPL", "CANNOT_RUN"]

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
_REPL_KEYS = re.compile(rb"[\x01\x02\x03\x04\r]")

READ_SIZE = 1 << 18
READ_CHUNK = 1 << 16  # bytes per read inside a frame (a board reads 64 at a time: its stdin read blocks)
WRITE_STALL_S = 0.5  # rp2's USB CDC cuts a write short after 500 ms without progress

Log = Callable[[str], None]


def reboot(core: Core) -> Core:
    """A fresh Core over the same HAL, clock and sizes: what a board reset running ``main.py`` gives."""
    return Core(core.hal, core.clock, max_frame=core.max_frame, files=core.files, poll_ms=core.poll_ms,
                frame_timeout_ms=core.frame_timeout_ms)


class Restart(Exception):
    """Raised by the transport inside the serve loop to abandon what it was reading (a new connection, a board
    reset): the loop is entered again."""


class _Server:
    """One simulated board on one byte stream, its loop in one thread (subclasses own the descriptors)."""

    def __init__(self, core: Core, log: Log | None = None) -> None:
        self.log = log
        self._core = core
        self.serving = True
        self.raw_repl = False
        self._raw_code = b""
        self.tx_cut = 0
        """Replies cut short by a write stalled for WRITE_STALL_S (the transport's count, not the Core's)."""
        self._data = b""  # received, not yet read: self._data[self._pos:]
        self._pos = 0
        self._trips = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._reset_request: tuple[Core | None, bool] | None = None
        self._reset_done = threading.Event()
        self._reset_lock = threading.Lock()

    @property
    def core(self) -> Core:
        """The Core being served now (a reset or a soft reboot replaces it)."""
        return self._core

    # -- resets -----------------------------------------------------------------------------------------------

    def reset_device(self, core: Core | None = None, hangup: bool = False) -> Core:
        """Simulate a board reset: a fresh Core (``reboot`` of the current one unless given) takes over; its
        state, any partly received frame and any reply not yet sent are lost; the drive is zero. ``hangup``
        also drops the connection (TCP only: a pty stays, like a board behind a USB-UART bridge).
        Returns the new Core."""
        with self._reset_lock:
            if self._thread is None or not self._thread.is_alive():
                self._apply_reset(core, hangup)
                return self._core
            self._reset_done.clear()
            self._reset_request = (core, hangup)
            self._wake()
            if not self._reset_done.wait(timeout=10.0):
                raise TimeoutError("the server thread did not take the reset")
            return self._core

    def _apply_reset(self, core: Core | None, hangup: bool) -> None:
        self._core.stop_drive()
        self._core = core if core is not None else reboot(self._core)
        self._trips = 0
        self.serving = True
        self.raw_repl = False
        self._raw_code = b""
        self._clear_input()
        if hangup:
            self._hangup()
        self._say("board reset: fresh Core, drive zero")

    def _take_reset(self) -> None:
        """In the server thread: apply a pending reset and abandon what the loop was doing."""
        request = self._reset_request
        if request is not None:
            self._reset_request = None
            self._apply_reset(*request)
            self._reset_done.set()
            raise Restart

    def _hangup(self) -> None:
        pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 64):
                pass
        except OSError:
            pass

    # -- thread plumbing ------------------------------------------------------------------------------------

    def _start_thread(self, name: str) -> None:
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - a dying server thread must say why
            if self.log is not None:
                self.log(f"server thread failed: {type(exc).__name__}: {exc}")
            raise

    def run(self) -> None:
        """The board: the firmware's serve loop, the REPL when it is left, until the server stops."""
        while True:
            try:
                if self.serving:
                    why = firmware.serve(self._core, self._read, self._wait, self._send, chunk=READ_CHUNK)
                    if why == firmware.STOP_EOF:
                        return
                    self._leave(why)
                else:
                    self._repl()
            except EOFError:
                return
            except Restart:
                continue

    def stop(self) -> None:
        """End the serving thread and close every descriptor. Safe to call twice."""
        self._stopping.set()
        if self._wake_w >= 0:
            self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
        self._thread = None
        self._close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _close(self) -> None:
        pass

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- the board's I/O, as the serve loop sees it -------------------------------------------------------

    def _buffered(self) -> int:
        return len(self._data) - self._pos

    def _clear_input(self) -> None:
        self._data = b""
        self._pos = 0

    def _append(self, data: bytes) -> None:
        self._data = self._data[self._pos:] + data if self._pos < len(self._data) else data
        self._pos = 0

    def _wait(self, ms: float) -> bool:
        """True once input is buffered, False after ``ms`` without any; EOFError when the server stops,
        Restart on a reset or a new connection."""
        deadline = time.monotonic() + ms / 1000.0
        while True:
            if self._stopping.is_set():
                raise EOFError
            self._take_reset()
            self._note_watchdog()
            if self._buffered():
                return True
            conn = self._conn()
            watch: list[Any] = [self._wake_r] + self._extra_watch()
            if conn is not None:
                watch.append(conn)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select(watch, [], [], left)
            if self._wake_r in readable:
                self._drain_wake()
            if conn is not None and conn in readable:
                data = self._recv(conn)
                if data:
                    self._append(data)
                elif data is None:
                    self._peer_gone(conn)
            self._on_extra(readable)

    def _read(self, mv: Any) -> int:
        """Copy buffered input into ``mv`` (waiting for some if there is none)."""
        while not self._buffered():
            self._wait(1000.0)
        n = min(len(mv), self._buffered())
        mv[:n] = memoryview(self._data)[self._pos:self._pos + n]
        self._pos += n
        return n

    def _take(self) -> bytes:
        """All buffered input, waiting for some if there is none."""
        while not self._buffered():
            self._wait(1000.0)
        data = self._data[self._pos:]
        self._clear_input()
        return data

    def _unread(self, data: bytes) -> None:
        self._data = bytes(data) + self._data[self._pos:]
        self._pos = 0

    def _note_watchdog(self) -> None:
        trips = self._core.counts["watchdog_trips"]
        if trips != self._trips:
            self._trips = trips
            self._say("watchdog: no valid request within timeout_ms, drive set to zero")

    def _send(self, data: bytes) -> None:
        """Write all of ``data``, reading into the input meanwhile; cut short after WRITE_STALL_S stalled."""
        conn = self._conn()
        if conn is None:
            return  # nobody listening: the bytes are lost, as on an unplugged line
        view = memoryview(data)
        fd = conn if isinstance(conn, int) else conn.fileno()
        last = time.monotonic()
        while view.nbytes:
            if self._stopping.is_set():
                raise EOFError
            self._take_reset()
            try:
                sent = self._write(conn, view)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the peer went away: the reply is lost
            if sent:
                view = view[sent:]
                last = time.monotonic()
                continue
            if time.monotonic() - last > WRITE_STALL_S:
                self.tx_cut += 1
                return
            readable, _, _ = select.select([fd, self._wake_r], [fd], [], WRITE_STALL_S)
            if fd in readable:
                incoming = self._recv(conn)
                if incoming:
                    self._append(incoming)

    # -- the REPL ---------------------------------------------------------------------------------------------

    def _leave(self, why: str) -> None:
        self.serving = False
        self.raw_repl = False
        self._send(BANNER)
        self._say(f"left the serve loop ({why}): REPL prompt; a frame or Ctrl-D resumes")

    def _repl(self) -> None:
        data = self._take()
        magic = data.find(framing.MAGIC)
        typed_end = len(data) if magic < 0 else magic
        done = 0
        for match in _REPL_KEYS.finditer(data, 0, typed_end):
            at = match.start()
            if self.raw_repl:
                self._raw_code += data[done:at]
            done = match.end()
            key = data[at]
            if key == CTRL_A:
                self.raw_repl = True
                self._raw_code = b""
                self._send(RAW_REPL)
            elif key == CTRL_B:
                self.raw_repl = False
                self._send(BANNER)
            elif key == CTRL_C:
                if self.raw_repl:
                    self._raw_code = b""
                else:
                    self._send(b"\r\n" + PROMPT)
            elif key == CTRL_D:
                if self.raw_repl and self._raw_code:
                    self._raw_code = b""
                    self._send(b"OK\x04" + CANNOT_RUN + b"\x04>")  # stdout, then the error, as the raw REPL does
                    continue
                self._send(SOFT_REBOOT)
                rest = data[done:]
                raw = self.raw_repl
                self._apply_reset(None, False)
                if raw:  # a soft reset in the raw REPL stays there (main.py is not run)
                    self.serving = False
                    self.raw_repl = True
                    self._send(RAW_REPL[2:])
                self._unread(rest)
                return
            elif self.raw_repl:
                self._raw_code += b"\r"
            else:
                self._send(b"\r\n" + PROMPT)
        if self.raw_repl:
            self._raw_code += data[done:typed_end]
        if magic >= 0:
            self._unread(data[magic:])
            self._core.exit_requested = False
            self.serving = True
            self.raw_repl = False
            self._raw_code = b""
            self._say("frame received at the REPL: serving again (same Core)")
        elif data.endswith(framing.MAGIC[:1]):
            if self.raw_repl:
                self._raw_code = self._raw_code[:-1]
            self._unread(framing.MAGIC[:1] + self._take())  # a trailing P may start a frame: look again

    def _say(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)

    # -- the transport (subclasses) -------------------------------------------------------------------------

    def _conn(self) -> Any:
        """The readable/writable object now (fd or socket), or None."""
        raise NotImplementedError

    def _extra_watch(self) -> list[Any]:
        return []

    def _on_extra(self, readable: list[Any]) -> None:
        pass

    def _peer_gone(self, conn: Any) -> None:
        pass

    def _recv(self, conn: Any) -> bytes | None:
        """Bytes available (b"" if none yet), or None when the peer has gone."""
        raise NotImplementedError

    def _write(self, conn: Any, view: memoryview) -> int:
        raise NotImplementedError


class PtyServer(_Server):
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


class TcpServer(_Server):
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
