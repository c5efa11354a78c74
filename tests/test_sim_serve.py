"""The simulated board served over bytes (the firmware's own serve loop behind a pty or a socket): a pyserial
client written from docs/protocol.md alone (frames built with struct, binascii.crc32 and msgpack, not
pgt.protocol), over the pty and over TCP; the exit op and the Ctrl-C escape; the REPL emulation; garbage and bad
frames dropped and counted; resets; the watchdog under a junk flood; the frame timeout."""

from __future__ import annotations

import binascii
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import serial

from pgt.sim.device import make_core
from pgt.sim.serve import BANNER, CANNOT_RUN, PROMPT, RAW_REPL, SOFT_REBOOT, PtyServer, TcpServer

# -- a client from the spec ---------------------------------------------------------------------------------


def frame(payload: bytes, version: int = 1) -> bytes:
    head = struct.pack("<2sBBI", b"PG", version, 0, len(payload))
    head += struct.pack("<I", binascii.crc32(head) & 0xFFFFFFFF)
    return head + payload + struct.pack("<I", binascii.crc32(payload) & 0xFFFFFFFF)


def request(op: str, seq: int, **fields: Any) -> bytes:
    return frame(msgpack.packb({"op": op, "seq": seq, **fields}, use_bin_type=True))


def read_reply(ser: serial.SerialBase) -> dict[str, Any]:
    head = ser.read(12)
    assert len(head) == 12, f"no reply (got {head!r})"
    magic, version, _flags, length, check = struct.unpack("<2sBBII", head)
    assert magic == b"PG" and version == 1 and check == binascii.crc32(head[:8]) & 0xFFFFFFFF
    body = ser.read(length + 4)
    assert len(body) == length + 4
    payload = body[:length]
    assert struct.unpack("<I", body[length:])[0] == binascii.crc32(payload) & 0xFFFFFFFF
    reply: dict[str, Any] = msgpack.unpackb(payload, raw=False)
    return reply


def ask(ser: serial.SerialBase, op: str, seq: int, **fields: Any) -> dict[str, Any]:
    ser.write(request(op, seq, **fields))
    reply = read_reply(ser)
    assert reply["seq"] == seq
    return reply


def read_until(ser: serial.SerialBase, marker: bytes) -> bytes:
    got = ser.read_until(marker)
    assert got.endswith(marker), f"expected {marker!r}, got {got!r}"
    return got


# -- fixtures: servers that are always stopped --------------------------------------------------------------


@pytest.fixture(params=["pty", "tcp"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[PtyServer | TcpServer, serial.SerialBase]]:
    server: PtyServer | TcpServer
    if request.param == "pty":
        server = PtyServer(make_core(seed=1, board="wide"))
        url = server.start()
    else:
        server = TcpServer(make_core(seed=1, board="wide"))
        url = f"socket://127.0.0.1:{server.start()}"
    ser = serial.serial_for_url(url, timeout=5)
    try:
        yield server, ser
    finally:
        ser.close()
        thread = server._thread
        server.stop()
        assert thread is not None and not thread.is_alive()


# -- over the wire ----------------------------------------------------------------------------------------------


def test_hello_and_a_run_block(served: tuple[PtyServer | TcpServer, serial.SerialBase]) -> None:
    _, ser = served
    hello = ask(ser, "hello", 1)
    assert hello["op"] == "hello" and hello["proto"] == 2 and hello["board"].startswith("sim")
    k, m = hello["k"], hello["m"]
    n = 256
    drive = np.random.default_rng(0).integers(0, 4096, size=(n, k)).astype("<u2")
    drive[:, 1] = 0x0303  # Ctrl-C bytes inside a frame mean nothing
    reply = ask(ser, "run", 2, n=n, k=k, drive=drive.tobytes())
    assert reply["op"] == "run" and reply["n"] == n and reply["m"] == m and reply["clamped"] == 0
    samples = np.frombuffer(reply["samples"], dtype="<u2").reshape(n, m)
    volts = hello["adc_V_offset"] + samples * hello["adc_V_per_code"]
    assert 0.0 <= volts.min() and volts.max() <= 3.3 and np.ptp(volts) > 0.1
    assert reply["t_us"] > 0


def test_exit_returns_to_a_repl_prompt_and_a_frame_resumes(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    server, ser = served
    ask(ser, "config", 1, n_avg=7)
    assert ask(ser, "exit", 2)["op"] == "exit"
    assert read_until(ser, PROMPT) == BANNER
    ser.write(b"\r")
    assert read_until(ser, PROMPT) == b"\r\n" + PROMPT
    hello = ask(ser, "hello", 3)  # a frame at the prompt: the same Core serves again
    assert hello["n_avg"] == 7
    assert not server.core.exit_requested


def test_ctrl_c_between_frames_escapes_and_ctrl_d_soft_resets(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    server, ser = served
    ask(ser, "config", 1, n_avg=7)
    first = server.core
    ser.write(b"\r\x03\x03")  # what mpremote sends when it connects
    assert read_until(ser, PROMPT) == BANNER
    assert read_until(ser, PROMPT) == b"\r\n" + PROMPT
    assert not first.driving
    ser.write(b"\x04")
    assert read_until(ser, SOFT_REBOOT) == SOFT_REBOOT
    hello = ask(ser, "hello", 1)
    assert hello["n_avg"] == 4  # a fresh Core: the config is gone
    assert server.core is not first
    status = ask(ser, "status", 2)
    assert status["requests"] == 2 and status["link"]["frames_in"] == 2 and status["link"]["frames_out"] == 1


def test_garbage_and_bad_frames_are_dropped_and_counted(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    _, ser = served
    good = request("ping", 1, data=b"x")
    bad_crc = bytearray(request("ping", 2, data=b"lost"))
    bad_crc[-1] ^= 0xFF
    bad_head = bytearray(request("ping", 3, data=b"lost too"))
    bad_head[5] ^= 0x01
    too_new = frame(msgpack.packb({"op": "ping", "seq": 4}), version=9)
    ser.write(b"noise!" + bytes(bad_crc) + b"more" + bytes(bad_head) + too_new + good)
    reply = read_reply(ser)
    assert reply["seq"] == 1 and reply["data"] == b"x"  # nothing else was answered
    link = ask(ser, "status", 5)["link"]
    assert link["frames_in"] == 2 and link["frames_out"] == 1
    dropped = link["dropped"]
    assert dropped["bad_crc"] == 1 and dropped["bad_header"] == 1 and dropped["bad_version"] == 1
    assert dropped["garbage"] == 1  # b"noise!": counted once per run of garbage while in sync


def test_ctrl_c_bytes_in_the_rest_of_a_dropped_frame_are_data(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    _, ser = served
    drive = np.array([[0x0303, 0x0403] * 8], dtype="<u2").tobytes()
    bad = bytearray(request("run", 1, n=1, k=16, drive=drive))
    bad[5] ^= 0x40  # a line error in the header's length field: the body that follows is skipped as garbage
    ser.write(bytes(bad))
    link = ask(ser, "status", 2)["link"]  # answered: the body's 0x03 bytes did not leave the serve loop
    assert link["dropped"]["bad_header"] == 1 and link["frames_in"] == 1


def test_a_malformed_request_gets_an_error_reply(served: tuple[PtyServer | TcpServer, serial.SerialBase]) -> None:
    _, ser = served
    ser.write(frame(b"\xc1"))
    reply = read_reply(ser)
    assert reply["op"] == "error" and reply["code"] == 1 and reply["seq"] is None


def test_reset_device_loses_the_state(served: tuple[PtyServer | TcpServer, serial.SerialBase]) -> None:
    server, ser = served
    ask(ser, "config", 1, n_avg=9)
    old = server.core
    new = server.reset_device()
    assert new is server.core is not old and new.hal is old.hal
    assert ask(ser, "hello", 1)["n_avg"] == 4


def test_tcp_reset_with_hangup_drops_the_connection() -> None:
    with TcpServer(make_core(board="wide")) as server:
        port = server.start()
        with serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5) as ser:
            ask(ser, "hello", 1)
            server.reset_device(hangup=True)
            with pytest.raises(serial.SerialException):
                ser.read(1)  # the peer closed
        with serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5) as ser:
            assert ask(ser, "status", 1)["requests"] == 1


def test_a_new_tcp_connection_replaces_the_old_one() -> None:
    with TcpServer(make_core(board="wide")) as server:
        port = server.start()
        first = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5)
        half = request("hello", 1)
        first.write(half[:9])  # a partly sent frame, lost with its connection
        second = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=5)
        try:
            assert ask(second, "hello", 7)["op"] == "hello"
            with pytest.raises(serial.SerialException):
                first.read(1)
        finally:
            first.close()
            second.close()


# -- the loop and the REPL, byte by byte ---------------------------------------------------------------------


def _replies(data: bytes) -> list[dict[str, Any]]:
    replies = []
    pos = data.find(b"PG")
    while pos >= 0:
        length = struct.unpack_from("<I", data, pos + 4)[0]
        replies.append(msgpack.unpackb(data[pos + 12: pos + 12 + length], raw=False))
        pos = data.find(b"PG", pos + 16 + length)
    return replies


def test_frames_split_into_single_bytes_are_read(served: tuple[PtyServer | TcpServer, serial.SerialBase]) -> None:
    _, ser = served
    data = request("hello", 1) + request("ping", 2, data=b"\x03\x03")
    for i in range(len(data)):
        ser.write(data[i:i + 1])
        ser.flush()
    assert [read_reply(ser)["seq"] for _ in range(2)] == [1, 2]


def test_bytes_behind_an_exit_go_to_the_repl_and_a_later_frame_resumes(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    _, ser = served
    ser.write(request("exit", 1) + b"\r" + request("ping", 2, data=b"p"))
    assert read_reply(ser)["op"] == "exit"
    assert read_until(ser, PROMPT) == BANNER
    assert read_until(ser, PROMPT) == b"\r\n" + PROMPT
    reply = read_reply(ser)  # the frame at the prompt: served again
    assert reply["op"] == "ping" and reply["seq"] == 2 and reply["data"] == b"p"


def test_a_partial_magic_at_the_repl_waits_for_the_next_byte(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    server, ser = served
    data = request("ping", 3, data=b"")
    ser.write(b"\x03")
    assert read_until(ser, PROMPT) == BANNER
    # The read is shaped, not timed: the rest is written only once the server has read the lone "P".
    received, got_p, recv = bytearray(), threading.Event(), server._recv

    def shaped(conn: Any) -> bytes | None:
        chunk = recv(conn)
        received.extend(chunk or b"")
        if received.endswith(b"xx" + data[:1]):
            got_p.set()
        return chunk

    server._recv = shaped
    ser.write(b"xx" + data[:1])
    assert got_p.wait(10), f"the server never read the lone P (read {bytes(received)!r})"
    ser.write(data[1:])
    assert read_reply(ser)["seq"] == 3


def test_the_raw_repl_refuses_code_so_mpremote_fails_fast(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    server, ser = served
    core = server.core
    ser.write(b"\r\x03\x03")
    expected = BANNER + b"\r\n" + PROMPT + b"\r\n" + PROMPT + RAW_REPL
    ser.write(b"\r\x01")
    assert read_until(ser, RAW_REPL) == expected
    ser.write(b"print(1)\r\x04")
    tail = b"OK\x04" + CANNOT_RUN + b"\x04>"
    assert read_until(ser, tail) == tail
    ser.write(b"\x04")
    assert read_until(ser, SOFT_REBOOT + RAW_REPL[2:]) == SOFT_REBOOT + RAW_REPL[2:]
    ser.write(b"\x02")
    assert read_until(ser, BANNER) == BANNER
    assert ask(ser, "hello", 1)["op"] == "hello"
    assert server.core is not core and server.serving  # the soft reset gave a fresh Core; the frame resumed it


def test_junk_cannot_hold_off_the_watchdog(served: tuple[PtyServer | TcpServer, serial.SerialBase]) -> None:
    """config(timeout_ms=100), a run of non-zero codes, then junk every 20 ms for 1 s (10 timeouts) — garbage
    bytes, a bad-CRC frame, an unknown op, an ill-typed run, in turn: status then shows the drive zero and one
    watchdog trip."""
    server, ser = served
    ask(ser, "config", 1, timeout_ms=100)
    hello = ask(ser, "hello", 2)
    drive = np.full((1, hello["k"]), 3000, dtype="<u2").tobytes()
    ask(ser, "run", 3, n=1, k=hello["k"], drive=drive)
    bad_crc = bytearray(request("ping", 4))
    bad_crc[-1] ^= 0xFF
    junk = [b"garbage!", bytes(bad_crc), request("dance", 5), request("run", 6, n="1", k=2, drive=b"")]
    end = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < end:
        ser.write(junk[i % len(junk)])
        i += 1
        time.sleep(0.02)
    ser.write(request("status", 7))
    status = read_reply(ser)
    while status["seq"] != 7:  # (the error replies to the unknown ops and ill-typed runs come first)
        status = read_reply(ser)
    assert status["driving"] is False and status["watchdog_trips"] == 1
    assert int(server.core.hal.applied[0]) == server.core.hal.zero_code[0]


def test_a_frame_cut_short_is_dropped_after_the_frame_timeout(
    served: tuple[PtyServer | TcpServer, serial.SerialBase],
) -> None:
    """The first 20 bytes of a request, then silence longer than the frame timeout reported by hello: the
    next request is answered, and status counts one ``timeout`` drop."""
    _, ser = served
    hello = ask(ser, "hello", 1)
    ser.write(request("ping", 2, data=b"x" * 40)[:20])
    time.sleep(hello["frame_timeout_ms"] / 1000 + 0.3)
    status = ask(ser, "status", 3)
    assert status["link"]["dropped"] == {"timeout": 1}


def test_no_server_thread_or_descriptor_survives_stop() -> None:
    threads = {t.name for t in threading.enumerate()}
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()
    for server in (PtyServer(make_core(board="wide")), TcpServer(make_core(board="wide"))):
        server.start()
        server.stop()
        server.stop()  # twice is fine
    assert {t.name for t in threading.enumerate()} <= threads
    if fds:
        assert set(os.listdir("/proc/self/fd")) <= fds


# -- docs/protocol.md, behaviour by behaviour (the client above, nothing of pgt.protocol) -----------------------


@pytest.fixture
def tcp() -> Iterator[serial.SerialBase]:
    with TcpServer(make_core(seed=2)) as server:
        with serial.serial_for_url(f"socket://127.0.0.1:{server.start()}", timeout=5) as ser:
            yield ser


def error_of(ser: serial.SerialBase, payload: bytes) -> dict[str, Any]:
    ser.write(frame(payload))
    reply = read_reply(ser)
    assert reply["op"] == "error" and set(reply) == {"op", "seq", "boot", "code", "msg", "req"}
    return reply


def nest(depth: int) -> Any:
    return 0 if depth == 0 else [nest(depth - 1)]


def test_spec_hello_fields_and_the_boot_id_in_every_reply(tcp: serial.SerialBase) -> None:
    hello = ask(tcp, "hello", 1)
    assert hello["proto"] == 2 and 0 <= hello["boot"] < 1 << 32
    assert hello["frame_timeout_ms"] > 0 and hello["poll_ms"] > 0
    boot = hello["boot"]
    k = hello["k"]
    replies = [ask(tcp, "status", 2), ask(tcp, "ping", 3), ask(tcp, "stop", 4), ask(tcp, "config", 5),
               ask(tcp, "run", 6, n=1, k=k, drive=bytes(2 * k)), ask(tcp, "dance", 7)]
    assert [r["boot"] for r in replies] == [boot] * len(replies)
    assert error_of(tcp, b"\xc1")["boot"] == boot


def test_spec_samples_are_on_the_16_bit_scale(tcp: serial.SerialBase) -> None:
    hello = ask(tcp, "hello", 1)
    k, m = hello["k"], hello["m"]
    drive = np.linspace(0, hello["limit_hi"], 64).astype("<u2")
    samples = np.frombuffer(ask(tcp, "run", 2, n=64, k=k, drive=drive.tobytes())["samples"], "<u2")
    assert samples.size == 64 * m
    # adc_bits is the converter's own resolution (information only); the codes are on the 16-bit scale
    assert hello["adc_bits"] <= 16 and samples.max() > (1 << hello["adc_bits"]) - 1


def test_spec_one_example_per_error_code(tcp: serial.SerialBase) -> None:
    hello = ask(tcp, "hello", 1)
    k = hello["k"]
    pack = msgpack.packb
    cases = [
        (b"\xc1", 1, None, None),
        (pack([1, 2]), 1, None, None),
        (pack({"op": "dance", "seq": 9}), 2, 9, "dance"),
        (pack({"op": "run", "seq": 10, "n": 1, "k": k}), 3, 10, "run"),
        (pack({"op": "run", "seq": 11, "n": "1", "k": k, "drive": b""}), 4, 11, "run"),
        (pack({"op": "config", "seq": 12, "n_avg": 0}), 5, 12, "config"),
        (pack({"op": "run", "seq": 13, "n": 1, "k": k + 1, "drive": bytes(2 * k + 2)}), 6, 13, "run"),
        (pack({"op": "run", "seq": 14, "n": hello["max_batch"] + 1, "k": k, "drive": b""}), 7, 14, "run"),
    ]
    for payload, code, seq, req in cases:
        reply = error_of(tcp, payload)
        assert (reply["code"], reply["seq"], reply["req"]) == (code, seq, req), reply


def test_spec_check_order(tcp: serial.SerialBase) -> None:
    k = ask(tcp, "hello", 1)["k"]
    pack = msgpack.packb
    assert error_of(tcp, pack({"op": 5}))["code"] == 3  # seq is checked before op
    assert error_of(tcp, pack({"seq": -1, "op": "dance"}))["code"] == 4  # seq's type before the op is known
    assert error_of(tcp, pack({"seq": 2, "op": 7}))["code"] == 4  # op's type before its name
    assert error_of(tcp, pack({"seq": 3, "op": "run", "k": "x"}))["msg"] == "missing field: n"  # n, then k
    too_many = ask(tcp, "hello", 4)["max_batch"] + 1
    assert error_of(tcp, pack({"seq": 5, "op": "run", "n": too_many, "k": k + 1, "drive": b""}))["code"] == 6
    assert error_of(tcp, pack({"seq": 6, "op": "run", "n": 0, "k": k, "drive": b"xx"}))["code"] == 5
    assert error_of(tcp, pack({"seq": 7, "op": "run", "n": too_many, "k": k, "drive": b"xx"}))["code"] == 7
    cfg = {"seq": 8, "op": "config", "n_avg": 0, "drive_lo": [1]}
    assert error_of(tcp, pack(cfg))["code"] == 5  # n_avg before the drive range's length


def test_spec_nil_means_absent(tcp: serial.SerialBase) -> None:
    pack = msgpack.packb
    assert error_of(tcp, pack({"op": "hello", "seq": None}))["code"] == 3
    assert error_of(tcp, pack({"op": None, "seq": 1}))["code"] == 3
    ask(tcp, "config", 2, n_avg=5)
    assert ask(tcp, "config", 3, n_avg=None, settle_us=7)["n_avg"] == 5
    assert ask(tcp, "ping", 4, data=None)["data"] == b""


def test_spec_duplicate_keys_nesting_and_unknown_fields(tcp: serial.SerialBase) -> None:
    twice = b"\x83" + msgpack.packb("op") + msgpack.packb("ping") + msgpack.packb("seq") + msgpack.packb(1) \
        + msgpack.packb("op") + msgpack.packb("ping")
    assert error_of(tcp, twice)["code"] == 1
    assert ask(tcp, "ping", 2, data=b"d", extra={"a": [1, "b", None]}, x=nest(15))["data"] == b"d"  # 0 at depth 16
    assert error_of(tcp, msgpack.packb({"op": "ping", "seq": 3, "x": nest(16)}))["code"] == 1  # 0 at depth 17


def test_spec_an_error_reply_is_small_whatever_the_request(tcp: serial.SerialBase) -> None:
    for seq, op, echoed in [(0xFFFFFFFF, "d" * 100_000, "d" * 31), (1, "\U0001F600" * 30_000, "?" * 31)]:
        tcp.write(request(op, seq))
        head = tcp.read(12)
        length = struct.unpack("<I", head[4:8])[0]
        assert length <= 197
        reply = msgpack.unpackb(tcp.read(length + 4)[:length])
        assert reply["code"] == 2 and reply["req"] == echoed and len(reply["msg"]) <= 120


def test_spec_a_frame_with_flags_is_dropped_as_bad_version(tcp: serial.SerialBase) -> None:
    payload = msgpack.packb({"op": "ping", "seq": 1})
    head = struct.pack("<2sBBI", b"PG", 1, 0x01, len(payload))
    head += struct.pack("<I", binascii.crc32(head) & 0xFFFFFFFF)
    tcp.write(head + payload + struct.pack("<I", binascii.crc32(payload) & 0xFFFFFFFF))
    status = ask(tcp, "status", 2)  # the flagged ping got no reply: this is the next one
    assert status["link"]["dropped"] == {"bad_version": 1} and status["requests"] == 1


def test_spec_replay_rule(tcp: serial.SerialBase) -> None:
    k = ask(tcp, "hello", 1)["k"]
    run = request("run", 2, n=1, k=k, drive=bytes(2 * k))
    tcp.write(run)
    first = read_reply(tcp)
    tcp.write(run)  # the same request again: the same reply, not run again
    assert read_reply(tcp) == first
    other = ask(tcp, "run", 2, n=2, k=k, drive=bytes(4 * k))  # same seq, another payload: a new request
    assert other["n"] == 2
    s1 = ask(tcp, "status", 3)
    s2 = ask(tcp, "status", 3)  # status is answered afresh
    assert (s1["runs"], s1["duplicates"]) == (2, 1) and s2["requests"] == s1["requests"] + 1


def test_spec_valid_requests_feed_the_watchdog_whatever_their_reply(tcp: serial.SerialBase) -> None:
    """Requests that pass the checks of codes 1-4 keep the drive on even when refused for a value (code 5)."""
    k = ask(tcp, "hello", 1)["k"]
    ask(tcp, "config", 2, timeout_ms=1000)
    ask(tcp, "run", 3, n=1, k=k, drive=np.full(k, 1000, "<u2").tobytes())
    end = time.monotonic() + 1.2
    seq = 4
    while time.monotonic() < end:
        assert ask(tcp, "config", seq, n_avg=0)["code"] == 5
        seq += 1
        time.sleep(0.02)
    status = ask(tcp, "status", seq)
    assert status["driving"] is True and status["watchdog_trips"] == 0


def test_spec_drive_lo_above_drive_hi_is_said_so(tcp: serial.SerialBase) -> None:
    k = ask(tcp, "hello", 1)["k"]
    reply = ask(tcp, "config", 2, drive_lo=[900] * k, drive_hi=[100] * k)
    assert reply["code"] == 5 and reply["msg"] == "drive_lo above drive_hi on channel 0"


def test_the_repl_answers_are_a_pure_function_of_what_is_typed() -> None:
    """pgt.sim.repl without any I/O: prompts, the raw REPL refusing code, a soft reset, a frame, a split magic."""
    from pgt.sim.repl import FRAME, MORE, SOFT_RESET, ReplState, repl_input
    from pgt.sim.stream_board import reboot

    st = ReplState()
    assert repl_input(b"help()\r\x03", st) == (b"\r\n" + PROMPT + b"\r\n" + PROMPT, None, b"")
    assert repl_input(b"\x01print(", st) == (RAW_REPL, None, b"") and st.raw and st.code == b"print("
    assert repl_input(b"1)\x04", st) == (b"OK\x04" + CANNOT_RUN + b"\x04>", None, b"") and st.code == b""
    assert repl_input(b"\x04rest", st) == (SOFT_REBOOT, SOFT_RESET, b"rest") and st.raw  # stays raw
    assert repl_input(b"\x02", st) == (BANNER, None, b"") and not st.raw
    assert repl_input(b"x\rP", st) == (b"\r\n" + PROMPT, MORE, b"P")
    assert repl_input(b"\x01abPG\x01\x00", st) == (RAW_REPL, FRAME, b"PG\x01\x00") and not st.raw
    core = make_core(seed=3, max_frame=4096)
    again = reboot(core)
    assert again is not core and again.hal is core.hal and again.boot_id != core.boot_id
    assert (again.max_frame, again.files, again.poll_ms, again.frame_timeout_ms) == \
        (core.max_frame, core.files, core.poll_ms, core.frame_timeout_ms)
