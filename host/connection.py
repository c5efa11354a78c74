"""The host's side of the wire protocol without I/O, in the manner of h11: requests in, bytes out; bytes in,
events out.

A :class:`Connection` keeps the whole protocol state of one host↔device connection — the request encoder
(sequence numbers, the request in flight), the frame decoder, what the port said besides frames (a MicroPython
REPL and its state, reboot banners, the last bytes heard) — and every counter of it (:meth:`Connection.counters`).
It never reads, writes, sleeps or looks at a clock: :class:`pgt.link.SerialLink` is the blocking loop around it
and :class:`pgt.link.InProcessLink` hands it the in-process device's reply payloads.

The decisions a link takes — resend, soft-reset a board that fell to its REPL, give up — are pure functions of
the request in flight and of what the link observed (:func:`after_wait` when a wait for a reply ended without
it, :func:`after_break` when the port broke, :func:`after_failed_reconnect` when finding it again failed): they
return an action and change nothing. The connection's methods that take them (:meth:`Connection.wait_ended`,
:meth:`Connection.broke`) record what the action costs. What to say about a port that does not answer is
:func:`diagnose`. The REPL itself (its states, signs and the soft-reset bytes) is :mod:`pgt.repl`'s.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from pgt.errors import shown
from pgt.protocol import decoder, framing
from pgt.repl import NORMAL, PASTE, RAW, SIGN_SPAN, reboot_signs, repl_state

RECENT_BYTES = 512  # received bytes kept for diagnostics (what did the port say?)
MAX_REVIVALS = 3  # soft resets a link tries for one request, once it knows pgt firmware is there


# -- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The reply to the request in flight."""

    msg: dict[str, Any]


@dataclass(frozen=True)
class StaleReply:
    """A good frame that is not the reply awaited: late, duplicated, or to a request already answered."""

    msg: Any


@dataclass(frozen=True)
class OrphanError:
    """An error reply without a seq: the device could not even read a request's seq."""

    text: str


@dataclass(frozen=True)
class DroppedFrame:
    """Bytes that were not a good frame (reason as in docs/protocol.md section 1)."""

    reason: str


@dataclass(frozen=True)
class Echo:
    """Our own request came back: a loopback, or a REPL echoing what it is typed."""


@dataclass(frozen=True)
class Undecodable:
    """A frame with a good CRC whose payload is not msgpack."""


@dataclass(frozen=True)
class ReplSeen:
    """The port shows a MicroPython REPL in ``state`` (NORMAL, RAW or PASTE)."""

    state: str


@dataclass(frozen=True)
class RebootSign:
    """The port printed what a booting MicroPython prints (``soft reboot``, a ``MicroPython v`` banner)."""

    text: str


Event = Reply | StaleReply | OrphanError | DroppedFrame | Echo | Undecodable | ReplSeen | RebootSign


@dataclass(eq=False)
class Outgoing:
    """A request ready to go: its seq, its payload and the whole frame; how often it was sent (``tries``) and how
    many of those sends were spared from its budget of retries (``spared``: the first send after a soft reset,
    and the resends while the board boots); how many soft resets of a board at its REPL (``revivals``) and
    reconnections (``reconnects``) it has cost; until when a board soft-reset for it boots (``boot_until``, on
    the link's clock)."""

    seq: int
    payload: bytes
    frame: bytes
    tries: int = 0
    spared: int = 0
    revivals: int = 0
    reconnects: int = 0
    boot_until: float = 0.0

    @property
    def counted(self) -> int:
        """Sends that count against the budget of retries."""
        return self.tries - self.spared


COUNTERS = ("requests", "replies", "retries", "timeouts", "fast_retries", "repl_revivals", "reconnects",
            "bytes_out", "bytes_in")
"""What a link counts besides frames (:meth:`Connection.counters` adds the frame counts)."""


class Connection:
    """Protocol state of one host↔device connection (see the module doc). ``seq`` starts at a random value
    unless given, so that a new host session never hits the device's reply cache by accident."""

    def __init__(self, max_payload: int = framing.DEFAULT_MAX_PAYLOAD, seq: int | None = None) -> None:
        self.decoder = decoder.Decoder(max_payload)
        self.seq = random.SystemRandom().randrange(1 << 32) if seq is None else seq & 0xFFFFFFFF
        self.pending: Outgoing | None = None
        self.answered = False
        self.repl_state: str | None = None
        """The REPL state seen since the last good frame, or None."""
        self.recent = bytearray()
        self.count = dict.fromkeys(COUNTERS, 0)
        self.echoes = 0
        self.stale = 0
        self.undecodable = 0
        self.orphan_error: str | None = None
        self._dropped_before: dict[str, int] = {}
        self._garbage_before = 0
        self._frames_before = 0
        self._frames_whole = 0  # payloads handed over whole (receive_payload)

    # -- requests -----------------------------------------------------------------------------------------

    def prepare(self, msg: Mapping[str, Any]) -> Outgoing:
        """A new request: ``msg`` with the next seq, encoded and framed (the one request encoder)."""
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        payload = msgpack.packb({**msg, "seq": seq})
        self.count["requests"] += 1
        return Outgoing(seq, payload, framing.encode(payload))

    def expect(self, out: Outgoing) -> None:
        """``out`` is the request in flight now (again, after a nested request such as a reconnect's
        handshake, which keeps its count of tries). Counts a try (and a retry from the second on)."""
        if out.tries == 0:
            self.orphan_error = None
        self.pending = out
        self.answered = False
        out.tries += 1
        self.count["retries"] += out.tries > 1

    def sent(self, n: int) -> None:
        """``n`` bytes went to the device."""
        self.count["bytes_out"] += n

    @property
    def tries(self) -> int:
        """How often the request in flight has been sent (0 if none is)."""
        return self.pending.tries if self.pending is not None else 0

    @property
    def revivals(self) -> int:
        """Soft resets the request in flight has cost (0 if none is in flight)."""
        return self.pending.revivals if self.pending is not None else 0

    def done(self) -> None:
        """No request is in flight."""
        self.pending = None
        self.answered = False

    # -- what the link observed ---------------------------------------------------------------------------

    def wait_ended(self, ended: str, retries: int, revivals: int, now: float, boot_s: float) -> str:
        """The wait for the reply to the request in flight ended without it (``ended``: BROKEN, DROPPED or
        SILENCE, at ``now`` on the link's clock): :func:`after_wait`'s action, with its cost recorded — a fast
        resend or a timeout counted; a soft reset (REVIVE) costs the request a revival, and the send after it
        and the resends for ``boot_s`` seconds while the board boots are spared from its retries (they are
        still tries, and retries in :meth:`counters`)."""
        out = self.pending
        booting = out is not None and now < out.boot_until and self.repl_state is None  # (a REPL again: no boot)
        action = after_wait(out, self.repl_state, ended, retries, revivals, booting)
        self.count["fast_retries"] += ended == DROPPED
        self.count["timeouts"] += ended == SILENCE
        if out is not None and (action == REVIVE or (action == RESEND and booting)):
            out.spared += 1
        if out is not None and action == REVIVE:
            out.revivals += 1
            out.boot_until = now + boot_s
        return action

    def revived(self) -> None:
        """The link sent :data:`pgt.repl.RESTART` to the board at its REPL: the REPL is left behind."""
        self.count["repl_revivals"] += 1
        self.repl_state = None

    def broke(self, out: Outgoing, retries: int) -> str:
        """The port broke (or is gone) while ``out`` is to be sent: :func:`after_break`'s action, the break
        counted against ``out``."""
        action = after_break(out, retries)
        out.reconnects += 1
        return action

    def reconnected(self) -> None:
        """The port was found and opened again (the bytes start afresh: :meth:`new_stream`)."""
        self.count["reconnects"] += 1

    # -- bytes in -----------------------------------------------------------------------------------------

    def new_stream(self) -> None:
        """The bytes start afresh (the port was reopened): a fresh frame decoder; what the old one counted stays
        in :meth:`counters`."""
        dec = self.decoder
        for reason, n in dec.dropped.items():
            self._dropped_before[reason] = self._dropped_before.get(reason, 0) + n
        self._garbage_before += dec.garbage_bytes
        self._frames_before += dec.frames
        self.decoder = decoder.Decoder(dec.max_payload)

    def counters(self) -> dict[str, Any]:
        """Every count of this connection: requests, replies (to the request in flight), retries, timeouts,
        fast retries, REPL revivals, reconnects, bytes each way; over every stream so far, good frames
        (``frames_in``), dropped frames by reason (``dropped``), ``garbage_bytes``; replies that were stale,
        echoes of our own requests, undecodable payloads."""
        dec = self.decoder
        dropped = dict(self._dropped_before)
        for reason, n in dec.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
        return {**self.count, "dropped": dropped, "garbage_bytes": self._garbage_before + dec.garbage_bytes,
                "frames_in": self._frames_before + self._frames_whole + dec.frames, "stale_replies": self.stale,
                "echoes": self.echoes, "undecodable": self.undecodable}

    def receive(self, data: bytes) -> list[Event]:
        """Events for the bytes just received (in order: signs of the byte stream first, then frames)."""
        self.count["bytes_in"] += len(data)
        events: list[Event] = []
        tail = bytes(self.recent[-SIGN_SPAN:]) + data
        self.recent += data[-RECENT_BYTES:]
        del self.recent[: max(0, len(self.recent) - RECENT_BYTES)]
        events += [RebootSign(text) for text in reboot_signs(tail)]
        state = repl_state(tail)
        if state is None and self._typed_echo():
            state = NORMAL
        if state is not None:
            self.repl_state = state
            events.append(ReplSeen(state))
        dec = self.decoder
        drops = dict(dec.dropped)
        dec.feed(data)
        while (payload := dec.next_payload()) is not None:
            events.extend(self._frame(payload))
        for reason, n in dec.dropped.items():
            events.extend(DroppedFrame(reason) for _ in range(n - drops.get(reason, 0)))
        return events

    def receive_payload(self, payload: bytes) -> list[Event]:
        """Events for one whole reply payload handed over without framing (an in-process device): counted as a
        good frame of ``len(payload)`` + the frame overhead bytes."""
        self.count["bytes_in"] += len(payload) + framing.OVERHEAD
        self._frames_whole += 1
        return self._frame(payload)

    def _typed_echo(self) -> bool:
        """Did the port echo the printable bytes of the request in flight, as a friendly REPL echoes what it
        is typed (the control bytes of a frame move its cursor, so a frame without a CR shows no prompt)? A
        loopback, which echoes the control bytes too, is not a REPL."""
        out = self.pending
        if out is None or self.repl_state is not None or out.frame[:3] in self.recent:
            return False
        typed = _printable(out.frame)
        return len(typed) >= 8 and typed in _printable(self.recent)

    def _frame(self, payload: bytes) -> list[Event]:
        try:
            msg = msgpack.unpackb(payload)
        except Exception:  # noqa: BLE001 - a good CRC over bad msgpack: count it, never act on it
            self.undecodable += 1
            return [Undecodable()]
        out: list[Event] = []
        if isinstance(msg, dict) and msg.get("op") == "error" and msg.get("seq") is None:
            self.orphan_error = str(msg.get("msg"))
            out.append(OrphanError(self.orphan_error))
        pending = self.pending
        if pending is not None and payload == pending.payload:  # (a reply carries the boot id: never equal)
            self.echoes += 1
            return out + [Echo()]
        if not isinstance(msg, dict) or pending is None or msg.get("seq") != pending.seq or self.answered:
            self.stale += 1
            return out + [StaleReply(msg)]
        self.answered = True
        self.repl_state = None
        self.count["replies"] += 1
        return out + [Reply(msg)]


def _printable(data: bytes | bytearray) -> bytes:
    return bytes(b for b in data if 33 <= b <= 126)


# -- decisions: pure functions, an action out, nothing changed ----------------------------------------------

RESEND, REVIVE, GIVE_UP, RECONNECT, RETRY, STOP = "resend", "revive", "give_up", "reconnect", "retry", "stop"
BROKEN, DROPPED, SILENCE = "broken", "dropped", "silence"
"""What ended a wait for a reply without it: the port broke, a frame was dropped (it may have been the reply),
the timeout ran out."""


def after_silence(out: Outgoing, repl: str | None, retries: int, revivals: int, booting: bool = False) -> str:
    """What to do when the wait for the reply to ``out`` ran out (``repl``: the REPL state seen, or None). A
    board seen at its REPL is soft-reset into main.py, at most ``revivals`` times per request; a REPL that is
    still there after them (or with ``revivals`` 0) will not answer frames: give up at once. Otherwise resend
    while the budget of retries lasts, and while a board soft-reset for this request boots (``booting``)."""
    if repl is not None:
        return REVIVE if out.revivals < revivals else GIVE_UP
    return RESEND if booting or out.counted <= retries else GIVE_UP


def after_drop(out: Outgoing | None, retries: int) -> bool:
    """A frame was dropped while the reply to ``out`` was awaited: resend at once (it may have been the reply)?"""
    return out is not None and out.counted <= retries


def after_wait(out: Outgoing | None, repl: str | None, ended: str, retries: int, revivals: int,
               booting: bool = False) -> str:
    """What to do when the wait for the reply to ``out`` ended without it (``ended``: BROKEN, DROPPED or
    SILENCE): RECONNECT, RESEND, REVIVE (soft-reset the board at its REPL into main.py, then resend) or
    GIVE_UP (:func:`after_silence`)."""
    if out is None or ended == BROKEN:
        return RECONNECT
    if ended == DROPPED:
        return RESEND
    return after_silence(out, repl, retries, revivals, booting)


def after_break(out: Outgoing, retries: int) -> str:
    """The port broke (or is gone) while ``out`` is to be sent: RECONNECT, or GIVE_UP once this break makes it
    more than ``retries`` + 1 breaks for this request (it keeps disappearing)."""
    return RECONNECT if out.reconnects + 1 <= retries + 1 else GIVE_UP


def after_failed_reconnect(no_reply: bool, opened: bool, broken: bool, now: float, deadline: float) -> str:
    """An attempt to reconnect failed: the port could not be opened (``opened`` False), or it was opened and
    the owner's handshake failed — with no reply (``no_reply``: the board is not serving yet), because the port
    broke again (``broken``), or because the owner refused what it found (e.g. another board). RETRY until
    ``deadline``, then GIVE_UP; a refusal is final (STOP: the owner's error stands)."""
    if opened and not no_reply and not broken:
        return STOP
    return RETRY if now <= deadline else GIVE_UP


# -- what the port said ---------------------------------------------------------------------------------------

SILENT, ECHOING, REPL, OTHER_FORMAT, CHATTER, REFUSED = (
    "silent", "echoing", "repl", "other_format", "chatter", "refused")


def diagnose(conn: Connection) -> tuple[str, str]:
    """(kind, sentence) saying what the port sent instead of a reply: SILENT, ECHOING, REPL, OTHER_FORMAT,
    CHATTER, or REFUSED (an error reply without a seq)."""
    heard = bytes(conn.recent)
    if conn.orphan_error is not None:
        return REFUSED, f"the device sent an error without a seq: {conn.orphan_error}"
    if conn.echoes:
        return ECHOING, ("the port echoes what we send (a loopback, or a REPL with echo on), it is not pgt "
                         "firmware")
    if not heard:
        return SILENT, "nothing was received"
    if conn.repl_state is not None or b"MicroPython" in heard or b"Traceback" in heard:
        state = {NORMAL: "", RAW: " (raw REPL)", PASTE: " (raw-paste mode)"}.get(conn.repl_state or "", "")
        return REPL, f"a MicroPython REPL answered{state}, not the pgt firmware"
    at = heard.rfind(framing.MAGIC)
    if 0 <= at and len(heard) > at + 2 and heard[at + 2] != framing.VERSION:
        return OTHER_FORMAT, (f"the device's frames have format version {heard[at + 2]}, this host reads format "
                              f"version {framing.VERSION}")
    return CHATTER, f"received {len(heard)} bytes that are not pgt frames, ending '{shown(heard[-60:])}'"
