"""A simulated board on a byte stream: the firmware's own serve loop, and the MicroPython REPL around it.

:class:`StreamBoard` runs ``pgt.firmware.serve.serve`` (the code a board runs, unchanged) in one thread over
buffered ``read``/``wait``/``write`` functions, answers at the REPL when the loop is left (:mod:`pgt.sim.repl`),
simulates board resets, and cuts a write short after ``WRITE_STALL_S`` without progress, as rp2's USB CDC does.
Its transports (a pty, a TCP socket) are in :mod:`pgt.sim.serve`; they supply ``_conn``, ``_recv`` and
``_write``.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pgt.firmware import serve as firmware
from pgt.firmware.core import Core

from .repl import BANNER, FRAME, MORE, RAW_REPL, SOFT_RESET, ReplState, repl_input

__all__ = ["StreamBoard", "Restart", "reboot", "Log"]

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


class StreamBoard:
    """One simulated board on one byte stream, its loop in one thread (subclasses own the descriptors)."""

    def __init__(self, core: Core, log: Log | None = None) -> None:
        self.log = log
        self._core = core
        self.serving = True
        self._repl_state = ReplState()
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
        self._repl_state = ReplState()
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

    def __enter__(self) -> StreamBoard:
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
        self._repl_state = ReplState()
        self._send(BANNER)
        self._say(f"left the serve loop ({why}): REPL prompt; a frame or Ctrl-D resumes")

    def _repl(self) -> None:
        out, event, rest = repl_input(self._take(), self._repl_state)
        if out:
            self._send(out)
        if event == SOFT_RESET:
            raw = self._repl_state.raw
            self._apply_reset(None, False)
            if raw:  # a soft reset in the raw REPL stays there (main.py is not run)
                self.serving = False
                self._repl_state.raw = True
                self._send(RAW_REPL[2:])
            self._unread(rest)
        elif event == FRAME:
            self._unread(rest)
            self._core.exit_requested = False
            self.serving = True
            self._say("frame received at the REPL: serving again (same Core)")
        elif event == MORE:
            self._unread(rest + self._take())  # a trailing P may start a frame: look again

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
