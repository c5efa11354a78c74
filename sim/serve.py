"""Serve a simulated board's ``Core`` over bytes: the board's serve loop, and pty and TCP servers around it.

``BoardLoop`` is the serve loop of the firmware, run in CPython: the device's own frame reader
(``framing.StreamReader``: one read for the header, one ``readinto`` for the payload, a per-byte loop only
while scanning garbage) feeds ``core.handle``; each reply goes out as one ``framing.encode`` frame. It pulls
bytes from a ``fill`` callable (the transport; it blocks, runs ``idle()`` when nothing arrives and returns
``b""`` at the end) and pushes bytes to a ``write`` callable, so it runs over a pty, a socket or a list of
chunks in a test alike. Frame counters go into ``core.link`` (what ``status`` reports), shaped as
the firmware's serve loop (``pgt.firmware.serve``) reports them: ``frames_in``, ``frames_out``, ``dropped``
(reason -> count, the reasons of docs/protocol.md section 1), and the sim's extras ``garbage_bytes``,
``escapes`` and ``tx_cut``. ``idle()`` runs the
Core's watchdog decision (``core.poll()``).

Leaving the serve loop, as DESIGN.md asks: after an ``exit`` request (its reply is sent first), or on a byte
0x03 (Ctrl-C) where a frame's magic is expected, the drive goes to zero and the simulated board behaves as at
its MicroPython REPL: it writes a banner and the ``>>> `` prompt, answers Ctrl-C and Enter with a new prompt,
and ignores other typing. It cannot run Python (``pgt sim --board`` is the virtual board that can), but it
speaks enough of the raw REPL (Ctrl-A, Ctrl-B, Ctrl-D) that ``mpremote`` fails at once with an ``OSError``
saying so instead of waiting for a prompt. It returns to serving
- on a new frame (bytes from the magic ``PG`` on): the same Core resumes, its state kept (as if ``main.py``
  were run again by hand); or
- on Ctrl-D (0x04, soft reset): it writes ``MPY: soft reboot`` and a fresh Core takes over the same HAL
  (state lost, drive zero), as a reboot running ``main.py`` would.

Servers: ``PtyServer(core).start() -> path`` of the slave pty (pyserial, a terminal program or mpremote open it
as a serial port; raw mode); ``TcpServer(core, port=0).start() -> port`` (pyserial:
``socket://127.0.0.1:PORT``; TCP_NODELAY; one client at a time, a new connection replaces the old and drops
its partly sent frame). Each runs the loop in one thread, reads in large chunks, writes each reply with as few
calls as the kernel allows, and keeps reading while a reply drains, so a pipelining client cannot deadlock it.
Like rp2's USB CDC, a write that makes no progress for ``WRITE_STALL_S`` is cut short. ``reset_device()``
simulates a board reset for fault tests. ``stop()`` (or leaving a ``with`` block) ends the thread and closes
every descriptor.
"""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import threading
import time
import tty
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pgt.firmware.core import Core
from pgt.protocol import framing

__all__ = ["BoardLoop", "PtyServer", "TcpServer", "reboot", "BANNER", "PROMPT", "SOFT_REBOOT"]

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
_DROP_REASONS = (framing.BAD_HEADER, framing.BAD_VERSION, framing.TOO_LARGE, framing.BAD_CRC, framing.GARBAGE,
                 getattr(framing, "TIMEOUT", "timeout"))

READ_SIZE = 1 << 18
IDLE_S = 0.05  # how often an idle loop runs the watchdog decision
WRITE_STALL_S = 0.5  # rp2's USB CDC cuts a write short after 500 ms without progress

Log = Callable[[str], None]


def reboot(core: Core) -> Core:
    """A fresh Core over the same HAL, clock and limits: what a board reset running ``main.py`` gives."""
    return Core(core.hal, core.clock, max_frame=core.max_frame, files=core.files)


class Restart(Exception):
    """Raised by a ``fill`` callable to drop the partly read input (a new connection, a board reset)."""


class _Inbox:
    """The board's receive buffer: a stream with ``readinto`` that the transport's ``fill`` refills."""

    def __init__(self, fill: Callable[[], bytes]) -> None:
        self._fill = fill
        self._view = memoryview(b"")
        self.consumed = 0  # bytes handed to readers so far

    def readinto(self, mv: Any) -> int:
        if not self._view.nbytes:
            data = self._fill()
            if not data:
                return 0  # end of stream
            self._view = memoryview(data)
        n = min(len(mv), self._view.nbytes)
        mv[:n] = self._view[:n]
        self._view = self._view[n:]
        self.consumed += n
        return n

    def take(self) -> bytes:
        """Everything buffered, waiting for more if nothing is (b"" at the end of the stream)."""
        if not self._view.nbytes:
            data = self._fill()
            self.consumed += len(data)
            return data
        data = bytes(self._view)
        self._view = memoryview(b"")
        self.consumed += len(data)
        return data

    def unread(self, data: bytes) -> None:
        self._view = memoryview(bytes(data) + bytes(self._view))
        self.consumed -= len(data)

    def clear(self) -> None:
        self._view = memoryview(b"")


class BoardLoop:
    """The board's serve loop over a byte transport: ``run()`` until ``fill`` returns b"" (see module doc)."""

    def __init__(self, core: Core, fill: Callable[[], bytes], write: Callable[[bytes], None],
                 log: Log | None = None) -> None:
        self.core = core
        self.write = write
        self.log = log
        self.serving = True
        self.raw_repl = False
        self._raw_code = b""
        self.inbox = _Inbox(fill)
        self._counts: dict[str, int] = {}
        self._new_reader()

    # -- counters -------------------------------------------------------------------------------------------

    def _new_reader(self) -> None:
        self.reader = framing.StreamReader(self.inbox, self.core.max_frame)
        self._reader_drops: dict[str, int] = {}
        self.sync_link()

    def count(self, key: str, by: int = 1) -> None:
        """Add to a counter: ``frames_in``, ``frames_out``, a drop reason, ``garbage_bytes``, ``escapes``,
        ``tx_cut``."""
        self._counts[key] = self._counts.get(key, 0) + by

    def counters(self) -> dict[str, Any]:
        """The link counters, shaped as the firmware's serve loop reports them (plus the sim's extras)."""
        c = self._counts
        dropped = {reason: c[reason] for reason in _DROP_REASONS if c.get(reason)}
        return {"frames_in": c.get("frames_in", 0), "frames_out": c.get("frames_out", 0), "dropped": dropped,
                "garbage_bytes": c.get("garbage_bytes", 0), "escapes": c.get("escapes", 0),
                "tx_cut": c.get("tx_cut", 0)}

    def sync_link(self) -> None:
        """Copy the counters into ``core.link`` (what ``status`` reports)."""
        self.core.link.update(self.counters())

    def _account(self, before: int, result: Any) -> None:
        """Count what the last ``reader.read()`` consumed: a frame, a drop, an escape, and garbage bytes."""
        spent = self.inbox.consumed - before
        reader = self.reader
        for reason, total in reader.dropped.items():
            new = total - self._reader_drops.get(reason, 0)
            if new:
                self.count(reason, new)
                self._reader_drops[reason] = total
                if reason != framing.GARBAGE:
                    spent -= framing.HEADER_SIZE
                    if reason == framing.BAD_CRC:
                        spent -= struct.unpack_from("<I", reader.head, 4)[0] + framing.TRAILER_SIZE
        if isinstance(result, int):  # StreamReader.ESCAPE
            spent -= 1
            self.count("escapes")
        elif result is not None:
            spent -= len(result) + framing.OVERHEAD
            self.count("frames_in")
        if spent > 0:
            self.count("garbage_bytes", spent)

    # -- the loop ---------------------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Run the watchdog decision while serving; True if it zeroed the drive."""
        if self.serving and self.core.poll():
            self._say("watchdog: no valid request within timeout_ms, drive set to zero")
            return True
        return False

    def reset(self, core: Core | None = None) -> None:
        """Board reset: a fresh Core (``reboot`` of the old one unless given); input and counters cleared."""
        self.core = core if core is not None else reboot(self.core)
        self.serving = True
        self.raw_repl = False
        self._raw_code = b""
        self.inbox.clear()
        self._counts = {}
        self._new_reader()
        self._say("board reset: fresh Core, drive zero")

    def restart_input(self) -> None:
        """Drop partly read input (a new connection); the counters are kept."""
        self.inbox.clear()
        self._new_reader()

    def run(self) -> None:
        """Serve until the transport ends (``fill`` returns b"")."""
        while True:
            try:
                if self.serving:
                    self._serve_one()
                else:
                    self._repl()
            except EOFError:
                return
            except Restart:
                continue

    def _serve_one(self) -> None:
        before = self.inbox.consumed
        result = self.reader.read()
        self._account(before, result)
        self.sync_link()
        if result is None:
            return
        if isinstance(result, int):  # StreamReader.ESCAPE
            self._leave("Ctrl-C")
            return
        core = self.core
        reply = framing.encode(core.handle(result))
        self.count("frames_out")
        self.sync_link()
        self.write(reply)
        if core.exit_requested:
            self._leave("exit op")

    def _leave(self, why: str) -> None:
        core = self.core
        core.hal.zero()
        core.driving = False
        self.serving = False
        self.raw_repl = False
        self.write(BANNER)
        self._say(f"left the serve loop ({why}): REPL prompt; a frame or Ctrl-D resumes")

    def _repl(self) -> None:
        data = self.inbox.take()
        if not data:
            raise EOFError
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
                self.write(RAW_REPL)
            elif key == CTRL_B:
                self.raw_repl = False
                self.write(BANNER)
            elif key == CTRL_C:
                if self.raw_repl:
                    self._raw_code = b""
                else:
                    self.write(b"\r\n" + PROMPT)
            elif key == CTRL_D:
                if self.raw_repl and self._raw_code:
                    self._raw_code = b""
                    self.write(b"OK\x04" + CANNOT_RUN + b"\x04>")  # stdout, then the error, as the raw REPL does
                    continue
                self.write(SOFT_REBOOT)
                rest = data[done:]
                raw = self.raw_repl
                self.reset()
                if raw:  # a soft reset in the raw REPL stays there (main.py is not run)
                    self.serving = False
                    self.raw_repl = True
                    self.write(RAW_REPL[2:])
                self.inbox.unread(rest)
                return
            elif self.raw_repl:
                self._raw_code += b"\r"
            else:
                self.write(b"\r\n" + PROMPT)
        if self.raw_repl:
            self._raw_code += data[done:typed_end]
        if magic >= 0:
            self.inbox.unread(data[magic:])
            self.core.exit_requested = False
            self.serving = True
            self.raw_repl = False
            self._raw_code = b""
            self._say("frame received at the REPL: serving again (same Core)")
        elif data.endswith(framing.MAGIC[:1]):
            if self.raw_repl:
                self._raw_code = self._raw_code[:-1]
            self._keep_partial_magic()

    def _keep_partial_magic(self) -> None:
        """A trailing ``P`` may start a frame: wait for the next byte, then look again."""
        nxt = self.inbox.take()
        if not nxt:
            raise EOFError
        self.inbox.unread(framing.MAGIC[:1] + nxt)

    def _say(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)


class _Server:
    """One simulated board on one byte stream, its loop in one thread (subclasses own the descriptors)."""

    def __init__(self, core: Core, log: Log | None = None) -> None:
        self.log = log
        self.loop = BoardLoop(core, self._fill, self._send, log=log)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._backlog: list[bytes] = []
        self._reset_request: tuple[Core | None, bool] | None = None
        self._reset_done = threading.Event()
        self._reset_lock = threading.Lock()

    @property
    def core(self) -> Core:
        """The Core being served now (``reset_device`` replaces it)."""
        return self.loop.core

    def reset_device(self, core: Core | None = None, hangup: bool = False) -> Core:
        """Simulate a board reset: a fresh Core (``reboot`` of the current one unless given) takes over; its
        state, any partly received frame and any reply not yet sent are lost; the drive is zero. ``hangup``
        also drops the connection (TCP only: a pty stays, like a board behind a USB-UART bridge).
        Returns the new Core."""
        with self._reset_lock:
            if self._thread is None or not self._thread.is_alive():
                self._apply_reset(core, hangup)
                return self.loop.core
            self._reset_done.clear()
            self._reset_request = (core, hangup)
            self._wake()
            if not self._reset_done.wait(timeout=10.0):
                raise TimeoutError("the server thread did not take the reset")
            return self.loop.core

    def _apply_reset(self, core: Core | None, hangup: bool) -> None:
        self._backlog.clear()
        self.loop.reset(core)
        if hangup:
            self._hangup()

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
            self.loop.run()
        except Exception as exc:  # noqa: BLE001 - a dying server thread must say why
            if self.log is not None:
                self.log(f"server thread failed: {type(exc).__name__}: {exc}")
            raise

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

    # -- the transport, as the loop sees it -----------------------------------------------------------------

    def _conn(self) -> Any:
        """The readable/writable object now (fd or socket), or None."""
        raise NotImplementedError

    def _fill(self) -> bytes:
        """Block until bytes arrive (running the watchdog while idle); b"" when the server stops."""
        while True:
            if self._stopping.is_set():
                return b""
            self._take_reset()
            if self._backlog:
                return self._backlog.pop(0)
            conn = self._conn()
            watch: list[Any] = [self._wake_r] + self._extra_watch()
            if conn is not None:
                watch.append(conn)
            readable, _, _ = select.select(watch, [], [], IDLE_S)
            if self._wake_r in readable:
                self._drain_wake()
                continue
            if len(readable) == 0:
                self.loop.idle()
                continue
            if conn is not None and conn in readable:
                data = self._recv(conn)
                if data:
                    return data
                if data is None:
                    self._peer_gone(conn)
                continue
            self._on_extra(readable)

    def _extra_watch(self) -> list[Any]:
        return []

    def _on_extra(self, readable: list[Any]) -> None:
        pass

    def _peer_gone(self, conn: Any) -> None:
        pass

    def _send(self, data: bytes) -> None:
        """Write all of ``data``, reading into the backlog meanwhile; cut short after WRITE_STALL_S stalled."""
        conn = self._conn()
        if conn is None:
            return  # nobody listening: the bytes are lost, as on an unplugged line
        view = memoryview(data)
        fd = conn if isinstance(conn, int) else conn.fileno()
        last = time.monotonic()
        while view.nbytes:
            if self._stopping.is_set():
                return
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
                self.loop.count("tx_cut")
                self.loop.sync_link()
                return
            readable, _, _ = select.select([fd, self._wake_r], [fd], [], WRITE_STALL_S)
            if fd in readable:
                incoming = self._recv(conn)
                if incoming:
                    self._backlog.append(incoming)

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
        self._backlog.clear()
        self.loop.restart_input()
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
