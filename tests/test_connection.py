"""The sans-IO host connection fed bytes directly (no ports, no threads): replies, stale replies, echoes, dropped
frames, the REPL states mpremote leaves a board in, reboot signs, and the retry/revive decisions."""

from __future__ import annotations

import msgpack
import pytest

from pgt.connection import (
    BROKEN,
    DROPPED,
    GIVE_UP,
    MAX_REVIVALS,
    NORMAL,
    PASTE,
    RAW,
    RECONNECT,
    RESEND,
    RETRY,
    REVIVE,
    SILENCE,
    STOP,
    Connection,
    DroppedFrame,
    Echo,
    OrphanError,
    RebootSign,
    ReplSeen,
    Reply,
    StaleReply,
    after_break,
    after_drop,
    after_failed_reconnect,
    after_silence,
    after_wait,
    diagnose,
)
from pgt.protocol import framing
from pgt.repl import RESTART


def reply_frame(seq: int | None, op: str = "hello", **fields: object) -> bytes:
    return framing.encode(msgpack.packb({"op": op, "seq": seq, "boot": 7, **fields}))


def sent(conn: Connection, op: str = "hello") -> int:
    out = conn.prepare({"op": op})
    conn.expect(out)
    return out.seq


def test_requests_get_consecutive_seqs_from_a_random_start() -> None:
    a, b = Connection(), Connection()
    assert a.seq != b.seq  # (2**-32 to fail by chance)
    conn = Connection(seq=0xFFFFFFFF)
    first, second = conn.prepare({"op": "ping"}), conn.prepare({"op": "ping"})
    assert (first.seq, second.seq) == (0xFFFFFFFF, 0)
    assert msgpack.unpackb(first.payload) == {"op": "ping", "seq": 0xFFFFFFFF}
    assert first.frame == framing.encode(first.payload)


def test_the_reply_in_pieces_then_a_duplicate_is_stale() -> None:
    conn = Connection(seq=5)
    seq = sent(conn)
    data = reply_frame(seq, k=2)
    events = [e for i in range(len(data)) for e in conn.receive(data[i:i + 1])]
    assert events == [Reply({"op": "hello", "seq": 5, "boot": 7, "k": 2})]
    assert conn.receive(data) == [StaleReply({"op": "hello", "seq": 5, "boot": 7, "k": 2})]
    assert conn.receive(reply_frame(99)) == [StaleReply({"op": "hello", "seq": 99, "boot": 7})]
    assert conn.stale == 2


def test_our_own_request_coming_back_is_an_echo() -> None:
    conn = Connection()
    out = conn.prepare({"op": "stop"})
    conn.expect(out)
    assert conn.receive(out.frame) == [Echo()]
    assert diagnose(conn)[0] == "echoing"


def test_bad_frames_and_garbage_are_dropped_with_their_reason() -> None:
    conn = Connection()
    seq = sent(conn)
    bad = bytearray(reply_frame(seq))
    bad[-1] ^= 0xFF
    events = conn.receive(b"noise" + bytes(bad))
    assert DroppedFrame("bad_crc") in events and DroppedFrame("garbage") in events
    assert not any(isinstance(e, Reply) for e in events)
    assert [e for e in conn.receive(reply_frame(seq)) if isinstance(e, Reply)]  # the resend's reply still counts


def test_a_friendly_repl_echoing_the_printable_bytes_of_a_frame_is_a_repl() -> None:
    # the control bytes of a frame (its version byte is Ctrl-A) only move a friendly REPL's cursor: it echoes
    # the rest and shows no prompt until a CR; a loopback echoes the control bytes too and is no REPL
    conn = Connection()
    out = conn.prepare({"op": "hello"})
    conn.expect(out)
    typed = bytes(b for b in out.frame if 32 <= b <= 126)
    assert conn.receive(typed[:5]) == []
    assert ReplSeen(NORMAL) in conn.receive(typed[5:])  # (and a bad header: "PG" and no version)
    assert diagnose(conn)[0] == "repl"
    loop = Connection()
    loop.expect(loop.prepare({"op": "hello"}))
    assert loop.pending is not None
    assert ReplSeen(NORMAL) not in loop.receive(loop.pending.frame[:-1])
    assert loop.repl_state is None


def test_an_error_without_seq_is_reported() -> None:
    conn = Connection()
    sent(conn)
    events = conn.receive(framing.encode(msgpack.packb({"op": "error", "seq": None, "code": 1, "msg": "bad"})))
    assert OrphanError("bad") in events
    assert diagnose(conn) == ("refused", "the device sent an error without a seq: bad")


@pytest.mark.parametrize(("said", "state"), [
    (b"MicroPython v1.27.0 on 2026-01-01; Raspberry Pi Pico with RP2040\r\nType \"help()\".\r\n>>> ", NORMAL),
    (b"\r\nraw REPL; CTRL-B to exit\r\n>", RAW),
    (b"R\x01\x80\x00\x01", PASTE),
    (b">>> \r\nraw REPL; CTRL-B to exit\r\n>", RAW),  # the last state shown counts
    (b"\r\nraw REPL; CTRL-B to exit\r\n>OK\x04\x04>\r\nMicroPython v1.27\r\n>>> ", NORMAL),
])
def test_repl_states_are_recognised(said: bytes, state: str) -> None:
    conn = Connection()
    sent(conn)
    events = conn.receive(said[:7]) + conn.receive(said[7:])  # (a sign may straddle two reads)
    assert [e for e in events if isinstance(e, ReplSeen)][-1] == ReplSeen(state)
    assert conn.repl_state == state
    kind, text = diagnose(conn)
    assert kind == "repl" and text.startswith("a MicroPython REPL answered")


def test_reboot_signs_and_a_good_frame_clearing_the_repl_state() -> None:
    conn = Connection()
    seq = sent(conn)
    events = conn.receive(b"\r\nMPY: soft reboot\r\n>>> ")
    assert RebootSign("soft reboot") in events and conn.repl_state == NORMAL
    conn.receive(reply_frame(seq))
    assert conn.repl_state is None


def test_decisions_after_silence_and_drops() -> None:
    conn = Connection()
    sent(conn)
    out = conn.pending
    assert out is not None
    assert after_silence(out, None, retries=2, revivals=MAX_REVIVALS) == RESEND
    conn.receive(b">>> ")
    assert after_silence(out, conn.repl_state, retries=2, revivals=MAX_REVIVALS) == REVIVE
    assert after_silence(out, NORMAL, retries=2, revivals=0) == GIVE_UP  # a REPL answers no frame: no use resending
    out.revivals = MAX_REVIVALS
    assert after_silence(out, NORMAL, retries=2, revivals=MAX_REVIVALS) == GIVE_UP  # still a REPL after the restarts
    assert after_silence(out, None, retries=2, revivals=MAX_REVIVALS) == RESEND
    conn.expect(out)
    conn.expect(out)  # three tries
    assert after_silence(out, None, retries=2, revivals=0) == GIVE_UP and not after_drop(out, retries=2)
    assert not after_drop(None, retries=2)  # nothing in flight: nothing to resend
    sent(conn)  # a new request starts again
    assert conn.tries == 1 and conn.revivals == 0
    assert after_drop(conn.pending, retries=1) and not after_drop(conn.pending, retries=0)


def test_decisions_are_pure() -> None:
    """The decision functions return an action and change nothing; the connection's methods record the cost."""
    conn = Connection()
    sent(conn)
    out = conn.pending
    assert out is not None
    before = (out.tries, out.revivals, out.reconnects)
    for ended in (BROKEN, DROPPED, SILENCE):
        for repl in (None, RAW):
            after_wait(out, repl, ended, 1, MAX_REVIVALS)
    after_break(out, retries=0)
    after_silence(out, RAW, 1, MAX_REVIVALS)
    assert (out.tries, out.revivals, out.reconnects) == before


def test_after_a_soft_reset_resends_are_spared_while_the_board_boots_and_no_longer() -> None:
    """The boot allowance is the link's boot_s from the soft reset (it was reconnect_timeout, 10 s, before)."""
    conn = Connection()
    sent(conn)
    out = conn.pending
    assert out is not None
    assert conn.wait_ended(BROKEN, 1, MAX_REVIVALS, now=0.0, boot_s=2.0) == RECONNECT
    assert conn.wait_ended(DROPPED, 1, MAX_REVIVALS, now=0.0, boot_s=2.0) == RESEND
    conn.receive(b"raw REPL; CTRL-B to exit\r\n>")
    assert conn.wait_ended(SILENCE, 1, MAX_REVIVALS, now=10.0, boot_s=2.0) == REVIVE
    assert (out.tries, out.spared, out.revivals, out.boot_until) == (1, 1, 1, 12.0)
    conn.revived()  # (the link sent the soft reset: the REPL is left behind)
    for _ in range(3):  # the board boots until 12 s: resends spared
        conn.expect(out)
        assert conn.wait_ended(SILENCE, 1, MAX_REVIVALS, now=11.0, boot_s=2.0) == RESEND
    assert out.tries == 4 and out.counted == 0
    conn.expect(out)
    assert conn.wait_ended(SILENCE, 1, MAX_REVIVALS, now=12.5, boot_s=2.0) == RESEND  # booted: one retry left
    conn.expect(out)
    assert conn.wait_ended(SILENCE, 1, MAX_REVIVALS, now=13.5, boot_s=2.0) == GIVE_UP
    counts = conn.counters()
    assert (counts["timeouts"], counts["fast_retries"], counts["repl_revivals"], counts["retries"]) == (6, 1, 1, 5)


def test_after_a_break_and_a_failed_reconnect() -> None:
    conn = Connection()
    out = conn.prepare({"op": "run"})
    assert [conn.broke(out, retries=1) for _ in range(3)] == [RECONNECT, RECONNECT, GIVE_UP]
    assert after_failed_reconnect(no_reply=False, opened=False, broken=False, now=1.0, deadline=2.0) == RETRY
    assert after_failed_reconnect(no_reply=True, opened=True, broken=False, now=1.0, deadline=2.0) == RETRY
    assert after_failed_reconnect(no_reply=False, opened=True, broken=True, now=1.0, deadline=2.0) == RETRY
    assert after_failed_reconnect(no_reply=False, opened=False, broken=False, now=3.0, deadline=2.0) == GIVE_UP
    # the owner refused what it found (another board): final, whatever the time left
    assert after_failed_reconnect(no_reply=False, opened=True, broken=False, now=1.0, deadline=2.0) == STOP


def test_diagnoses() -> None:
    conn = Connection()
    assert diagnose(conn) == ("silent", "nothing was received")
    conn.receive(b"temperature=21.5C\r\n")
    assert diagnose(conn)[0] == "chatter"
    other = Connection()
    payload = msgpack.packb({"op": "hello", "seq": 0})
    other.receive(framing.header(len(payload), version=2) + payload)
    assert diagnose(other) == ("other_format", "the device's frames have format version 2, this host reads "
                                               "format version 1")


def test_restart_leaves_paste_and_raw_mode_before_the_soft_reset() -> None:
    assert RESTART.index(b"\x03") < RESTART.index(b"\x02") < RESTART.rindex(b"\x03") < RESTART.index(b"\x04") \
        == len(RESTART) - 1


def test_one_soft_reset_sequence_in_the_host() -> None:
    """The REPL layer's RESTART is the only soft-reset sequence: no module of the host writes its own."""
    from pathlib import Path

    import pgt

    host = Path(pgt.__file__).parent
    owners = sorted(p.name for p in host.rglob("*.py") if b"\\x04" in p.read_bytes())
    assert owners == ["repl.py"], owners


def test_counters_live_in_the_connection() -> None:
    conn = Connection(seq=5)
    out = conn.prepare({"op": "ping"})
    conn.expect(out)
    conn.sent(len(out.frame))
    conn.receive(reply_frame(5, "ping") + b"xx")
    counts = conn.counters()
    assert counts["requests"] == 1 and counts["replies"] == 1 and counts["frames_in"] == 1
    assert counts["bytes_out"] == len(out.frame) and counts["bytes_in"] == len(reply_frame(5, "ping")) + 2
    assert counts["garbage_bytes"] == 2


def test_a_nested_request_leaves_the_outer_one_its_count_of_tries() -> None:
    conn = Connection(seq=1)
    outer = conn.prepare({"op": "run"})
    conn.expect(outer)
    conn.expect(outer)
    inner = conn.prepare({"op": "hello"})  # a reconnect's handshake, in the middle of the outer request
    conn.expect(inner)
    assert conn.receive(reply_frame(inner.seq)) == [Reply({"op": "hello", "seq": inner.seq, "boot": 7})]
    conn.done()
    conn.expect(outer)
    assert conn.tries == 3 and conn.pending is outer
    assert [type(e) for e in conn.receive(reply_frame(outer.seq, "run"))] == [Reply]
