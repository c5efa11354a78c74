"""Links: carry one request map to the device and bring back its reply map.

A link owns the sequence numbers: ``request({"op": "run", ...})`` adds ``seq``, sends the request and
returns the reply that echoes that ``seq``. Two kinds:

- :class:`SerialLink` — frames (:mod:`pgt.protocol.framing`) over any pyserial URL (``/dev/ttyACM0``,
  ``COM3``, a pty path, ``socket://host:port``, ``loop://``): a blocking loop around the sans-IO
  :class:`pgt.connection.Connection`, which holds the wire state and takes the decisions. One reader thread
  drains the port into it all the time, so the device never stalls on a full buffer. A request whose reply is
  lost, corrupt or late is resent with the *same* seq (the device answers a resend from its reply cache, so a
  ``run`` is never applied twice); a corrupt frame seen while waiting triggers the resend at once instead of
  after the timeout. A board seen at its MicroPython REPL (normal, raw or raw-paste) is soft-reset into
  ``main.py`` once the owner allows it (``revive_repl``). When the port disappears (a board reset) the link
  finds it again — by USB serial number for a real USB port — reopens it, lets its owner handshake and replay
  its config (``on_reconnect``, whose requests nest inside the request in flight under the same re-entrant
  lock), and resends the request in flight.
- :class:`InProcessLink` — ``sim://?seed=0&model=A&noise_free=1``: the simulator's device Core called
  directly, no bytes on a wire (for speed), through the same :class:`~pgt.connection.Connection` (its request
  encoder, its seqs, its counters).

Every link counts what happened (``counters()``, kept by its Connection): requests, retries, timeouts,
reconnects, dropped frames by reason, stale replies and bytes each way. Seq starts at a random value per link,
so a new host session never hits the device's reply cache by accident. Which link a URL gets is
:mod:`pgt.device`'s decision; the ports themselves are :mod:`pgt.ports`'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pgt import repl
from pgt.connection import (
    BROKEN,
    DROPPED,
    GIVE_UP,
    NORMAL,
    REVIVE,
    SILENCE,
    STOP,
    Connection,
    DroppedFrame,
    Reply,
    after_drop,
    after_failed_reconnect,
    diagnose,
)
from pgt.errors import DeviceError, UserError, shown
from pgt.ports import Transport, find_by_serial_number, open_port, usb_serial_number
from pgt.protocol import framing

RequestFn = Callable[[Mapping[str, Any]], dict]
"""What ``on_reconnect`` receives: a request function usable while the link reconnects."""


class Link(Protocol):
    """What a client needs from a link."""

    url: str
    on_reconnect: Callable[[RequestFn], None] | None

    def request(self, msg: Mapping[str, Any], timeout: float | None = None, retries: int | None = None,
                reconnect: bool = True) -> dict:
        """Send ``msg`` (a map with ``op``; the link adds ``seq``) and return the reply map."""
        ...

    def counters(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class NoReplyError(DeviceError):
    """The device did not answer a request within the timeout, even after the retries."""


class SerialLink:
    """Frames over a pyserial URL, with retries, resynchronisation and reconnection (see the module doc).

    The wire state and the decisions are a sans-IO :class:`pgt.connection.Connection`; this class is the
    blocking loop around it: a reader thread feeds it the port's bytes and wakes the requester on its events.

    ``timeout`` is the default seconds to wait for one reply before resending; ``retries`` how many resends
    before giving up; ``reconnect_timeout`` how long to look for a port that disappeared; ``boot_timeout`` how
    long a board soft-reset out of its REPL may take to serve again (resends meanwhile do not use up retries).
    ``wrap`` (tests, bench) wraps each opened transport, e.g. in :class:`pgt.faults.FaultyTransport`;
    ``opener`` replaces :func:`pgt.ports.open_port`. ``log`` receives a line when the link soft-resets a board
    out of its REPL.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        timeout: float = 1.0,
        retries: int = 5,
        reconnect_timeout: float = 10.0,
        boot_timeout: float = 5.0,
        max_payload: int = framing.DEFAULT_MAX_PAYLOAD,
        fast_retry: bool = True,
        wrap: Callable[[Transport], Transport] | None = None,
        opener: Callable[[str], Transport] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeout = timeout
        self.retries = retries
        self.reconnect_timeout = reconnect_timeout
        self.boot_timeout = boot_timeout
        self.fast_retry = fast_retry
        self.log = log
        self.revive_repl = 0
        """How many times per request a board that shows its REPL instead of answering is soft-reset into
        main.py (0: never; the request then fails at once). The owner allows one for its handshake and
        MAX_REVIVALS once pgt firmware answered."""
        self.revive_wait = 0.5
        self.on_reconnect: Callable[[RequestFn], None] | None = None
        self._wrap = wrap
        self._opener = opener or (lambda u: open_port(u, self.baudrate))
        self._lock = threading.RLock()  # one request at a time; a reconnect's handshake nests inside one
        self._cond = threading.Condition()
        self.conn = Connection(max_payload)
        self._reply: dict | None = None
        self._drop_events = 0
        self._broken: BaseException | None = None
        self._closed = False
        self._reader: threading.Thread | None = None
        self._transport: Transport | None = None
        self._generation = 0
        self.usb_serial = usb_serial_number(url) if opener is None else None
        self._connect(url)

    # -- connection ---------------------------------------------------------------------------------------

    def _connect(self, url: str) -> None:
        transport = self._opener(url)
        if self._wrap is not None:
            transport = self._wrap(transport)
        with self._cond:
            self._generation += 1
            self._transport = transport
            self._broken = None
            self.conn.new_stream()
            generation = self._generation
        self._reader = threading.Thread(target=self._read_loop, args=(transport, generation),
                                        name=f"pgt-link-reader {url}", daemon=True)
        self._reader.start()

    def _disconnect(self) -> None:
        with self._cond:
            self._generation += 1  # the old reader's news no longer counts
            transport, self._transport = self._transport, None
            self.conn.new_stream()
        reader, self._reader = self._reader, None
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - it is already gone; closing is best effort
                pass
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=2.0)

    def _reconnect(self, cause: BaseException) -> None:
        """Find the port again (same URL, or same USB serial number), reopen it and let the owner handshake.

        A board that comes back may not serve at once (its port appears before main.py runs): the handshake
        is tried again, on a fresh connection, until ``reconnect_timeout`` (:func:`after_failed_reconnect`).
        The handshake's requests go through :meth:`request` (the lock is re-entrant), without reconnecting."""
        self._disconnect()
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            url = self.url
            if self.usb_serial:
                url = find_by_serial_number(self.usb_serial) or self.url
            try:
                self._connect(url)
                with self._cond:
                    self.conn.reconnected()
                if self.on_reconnect is not None:
                    self.on_reconnect(lambda msg: self.request(msg, reconnect=False))
                return
            except DeviceError as exc:
                opened = self._transport is not None
                action = after_failed_reconnect(isinstance(exc, NoReplyError), opened,
                                                self._broken_now() is not None, time.monotonic(), deadline)
                if action == STOP:
                    raise
                if opened:
                    self._disconnect()
                if action == GIVE_UP:
                    raise DeviceError(f"lost {self.url} ({cause}) and could not reconnect within "
                                      f"{self.reconnect_timeout:g} s: {exc}") from cause
            time.sleep(0.1)

    # -- the reader thread --------------------------------------------------------------------------------

    def _read_loop(self, transport: Transport, generation: int) -> None:
        while True:
            with self._cond:
                if self._closed or generation != self._generation:
                    return
            try:
                data = transport.read_some(0.05)
            except Exception as exc:  # noqa: BLE001 - any failure of the port means it is gone
                with self._cond:
                    if generation == self._generation:
                        self._broken = exc
                        self._cond.notify_all()
                return
            if not data:
                continue
            with self._cond:
                if generation != self._generation:
                    return
                for event in self.conn.receive(data):
                    if isinstance(event, Reply):
                        self._reply = event.msg
                    elif isinstance(event, DroppedFrame):
                        self._drop_events += 1
                self._cond.notify_all()

    # -- requests -----------------------------------------------------------------------------------------

    def request(self, msg: Mapping[str, Any], timeout: float | None = None, retries: int | None = None,
                reconnect: bool = True) -> dict:
        """Send ``msg`` with a fresh seq and return the reply map (``op`` may be ``"error"``).

        Raises :class:`NoReplyError` after ``retries`` resends without a reply, DeviceError when the port is
        gone and cannot be found again (or ``reconnect`` is False).
        """
        with self._lock:
            if self._closed:
                raise DeviceError(f"the link to {self.url} is closed")
            return self._transact(msg, self.timeout if timeout is None else timeout,
                                  self.retries if retries is None else retries, reconnect)

    def _transact(self, msg: Mapping[str, Any], timeout: float, retries: int, reconnect: bool) -> dict:
        conn = self.conn
        with self._cond:
            out = conn.prepare(msg)
        try:
            while True:
                if self._broken_now() is not None or self._transport is None:
                    with self._cond:
                        action = conn.broke(out, retries)
                    if action == GIVE_UP:
                        raise DeviceError(f"{self.url} keeps disappearing: gave up after {out.reconnects - 1} "
                                          "reconnects")
                    self._recover(reconnect)  # (its handshake is a nested request: expect ours again after)
                with self._cond:
                    conn.expect(out)
                    self._reply = None
                    drops = self._drop_events
                if not self._send(out.frame):
                    continue  # the port broke while writing: reconnect, then send again
                got = self._wait(timeout, drops, retries)
                if isinstance(got, dict):
                    return got
                with self._cond:
                    action = conn.wait_ended(got, retries, self.revive_repl, time.monotonic(), self.boot_timeout)
                if action == REVIVE:
                    self._revive()
                elif action == GIVE_UP:
                    if conn.repl_state == NORMAL:
                        self._send(repl.CTRL_C)  # cancel what our frames typed: the prompt as it was found
                    raise NoReplyError(self._silence(str(msg.get("op")), out.seq, out.tries, timeout))
        finally:
            with self._cond:
                conn.done()
                self._reply = None

    def _wait(self, timeout: float, drops: int, retries: int) -> dict | str:
        """The reply to the request in flight, or what ended the wait without it: BROKEN, DROPPED (a frame was
        dropped meanwhile and a fast resend is allowed) or SILENCE (``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._reply is not None:
                    return self._reply
                if self._broken is not None:
                    return BROKEN
                if self.fast_retry and self._drop_events != drops and after_drop(self.conn.pending, retries):
                    return DROPPED
                left = deadline - time.monotonic()
                if left <= 0:
                    return SILENCE
                self._cond.wait(left)

    def _revive(self) -> None:
        """The board fell to its REPL: soft-reset it into main.py (the serve loop), and say so."""
        transport = self._transport
        if transport is None:
            return
        state = self.conn.repl_state
        try:
            transport.write(repl.RESTART)
        except Exception:  # noqa: BLE001 - the port broke: the next send notices and reconnects
            return
        if self.log is not None:
            self.log(f"{self.url} was at its MicroPython REPL ({state}): soft reset into main.py to serve again")
        time.sleep(self.revive_wait)  # let main.py start before the resend: bytes sent while it boots are lost
        with self._cond:  # (after the wait: the prompts the reset itself printed are not a REPL seen again)
            self.conn.sent(len(repl.RESTART))
            self.conn.revived()

    def _broken_now(self) -> BaseException | None:
        with self._cond:
            return self._broken

    def _recover(self, reconnect: bool) -> None:
        """Reconnect after the port broke (DeviceError if not allowed, or if the port does not come back)."""
        cause = self._broken_now() or OSError("port gone")
        if not reconnect:
            raise DeviceError(f"lost {self.url}: {cause}")
        self._reconnect(cause)

    def _send(self, frame: bytes) -> bool:
        """Write one frame; False (and the link marked broken) when the port is gone."""
        transport = self._transport
        try:
            if transport is None:
                raise OSError("not connected")
            transport.write(frame)
        except Exception as exc:  # noqa: BLE001 - a write to a vanished port: the caller reconnects
            with self._cond:
                self._broken = exc
            return False
        with self._cond:
            self.conn.sent(len(frame))
        return True

    def _silence(self, op: str, seq: int, tries: int, timeout: float) -> str:
        """Say what the port did instead of answering (for the NoReplyError message)."""
        with self._cond:
            _, what = diagnose(self.conn)
        return f"no reply to {op} (seq {seq}) from {self.url} after {tries} tries of {timeout:g} s: {what}"

    # -- introspection ------------------------------------------------------------------------------------

    def diagnose(self) -> tuple[str, str]:
        """(kind, sentence): what the port sent instead of replies (:func:`pgt.connection.diagnose`)."""
        with self._cond:
            return diagnose(self.conn)

    def counters(self) -> dict[str, Any]:
        """Requests (and replies), retries, timeouts, reconnects, dropped frames by reason, stale replies,
        bytes each way (:meth:`pgt.connection.Connection.counters`)."""
        with self._cond:
            return self.conn.counters()

    def close(self) -> None:
        """Stop the reader and close the port (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._disconnect()

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessLink:
    """The simulator's device Core, called directly: ``sim://?board=rp2&seed=0&model=A&noise_free=1``.

    Query options (:mod:`pgt.sim.url`): ``board`` (rp2, esp32, wide), ``channels`` (K,M), ``config``
    (board.json), ``seed``, ``model`` (A or B), ``noise_free`` (0/1), ``settle`` (skip, sleep), ``max_frame``
    (bytes). Requests go through a :class:`~pgt.connection.Connection` as on a wire (its encoder, seqs and
    counters; bytes counted as the frames would be), only the framing is skipped. The Core is in ``self.core``
    (tests read its counters).
    """

    def __init__(self, url: str = "sim://", core: Any = None) -> None:
        self.url = url
        self.on_reconnect: Callable[[RequestFn], None] | None = None
        self.core = core if core is not None else sim_core(url)
        self.conn = Connection()

    def request(self, msg: Mapping[str, Any], timeout: float | None = None, retries: int | None = None,
                reconnect: bool = True) -> dict:
        conn = self.conn
        out = conn.prepare(msg)
        conn.expect(out)
        try:
            conn.sent(len(out.frame))
            self.core.poll()  # the host-silence decision, as the serve loop takes it on every pass
            events = conn.receive_payload(bytes(self.core.handle(out.payload)))
        finally:
            conn.done()
        for event in events:
            if isinstance(event, Reply):
                return event.msg
        raise DeviceError(f"the simulated device did not answer {shown(str(msg.get('op')))}: {events}")

    def counters(self) -> dict[str, Any]:
        """Same keys as SerialLink's; bytes are what the frames would have been on a wire."""
        return self.conn.counters()

    def close(self) -> None:
        pass


def sim_options(url: str) -> dict[str, Any]:
    """``sim://?seed=1&model=B&noise_free=1`` -> keyword arguments of ``pgt.sim.device.make_core`` (the parser
    is :func:`pgt.sim.url.parse`); UserError for a malformed URL, an unknown option or a bad value."""
    from pgt.sim.url import parse

    try:
        return parse(url)
    except ValueError as exc:
        raise UserError(shown(str(exc), 300)) from None


def sim_core(url: str) -> Any:
    """The simulator's device Core for a ``sim://`` URL, reporting this install's on-device file hashes."""
    kwargs = sim_options(url)
    from pgt.device_files import file_hashes
    from pgt.sim.device import make_core

    try:
        return make_core(**kwargs, files=file_hashes())
    except ValueError as exc:  # a board config that cannot be
        raise UserError(f"{shown(url)}: {exc}") from None
