"""SerialLink over the simulated board's pty and TCP servers: replies matched by seq, resends with the same seq
(never a run applied twice), resynchronisation after garbage, reconnection (also by USB serial number), and
clear errors for silent or echoing ports. InProcessLink and sim:// URLs."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pgt.errors import DeviceError, UserError
from pgt.faults import FaultPlan, faulty
from pgt.link import InProcessLink, NoReplyError, SerialLink, sim_options
from pgt.sim.device import make_core
from pgt.sim.serve import PtyServer, TcpServer

RUN = {"op": "run", "n": 2, "k": 16, "drive": struct.pack("<32H", *range(0, 3200, 100))}


@pytest.fixture
def tcp() -> Iterator[tuple[TcpServer, str]]:
    srv = TcpServer(make_core(noise_free=True, board="wide"))
    port = srv.start()
    yield srv, f"socket://127.0.0.1:{port}"
    srv.stop()


@pytest.fixture
def pty() -> Iterator[tuple[PtyServer, str]]:
    srv = PtyServer(make_core(noise_free=True, board="wide"))
    path = srv.start()
    yield srv, path
    srv.stop()


@pytest.fixture(params=["pty", "tcp"])
def server(request: pytest.FixtureRequest) -> tuple[Any, str]:
    return request.getfixturevalue(request.param)


def link_to(url: str, plan: FaultPlan | None = None, **kw: Any) -> SerialLink:
    kw.setdefault("timeout", 0.2)
    return SerialLink(url, wrap=faulty(plan) if plan else None, **kw)


def test_request_and_reply_over_pty_and_tcp(server: tuple[Any, str]) -> None:
    srv, url = server
    with link_to(url) as link:
        every_byte = bytes(range(256)) * 4
        reply = link.request({"op": "ping", "data": every_byte})
        assert reply["op"] == "ping" and reply["data"] == every_byte
        hello = link.request({"op": "hello"})
        assert hello["proto"] == 2 and hello["k"] == 16
        assert link.request({"op": "stop"}) == {"op": "stop", "seq": hello["seq"] + 1, "boot": hello["boot"]}
        c = link.counters()
        assert c["requests"] == 3 and c["retries"] == 0 and c["timeouts"] == 0 and c["dropped"] == {}
        assert c["bytes_out"] > 1024 and c["bytes_in"] > 1024


def test_seq_starts_at_random_and_counts_up(tcp: tuple[TcpServer, str]) -> None:
    _, url = tcp
    with link_to(url) as a:
        first = [a.request({"op": "ping"})["seq"] for _ in range(3)]
    with link_to(url) as b:
        other = b.request({"op": "ping"})["seq"]
    assert first[1] == (first[0] + 1) % 2**32 and first[2] == (first[0] + 2) % 2**32
    assert other not in first  # (fails with probability ~1e-9)


def test_lost_reply_is_resent_with_the_same_seq_and_the_run_not_applied_twice(pty: tuple[PtyServer, str]) -> None:
    srv, url = pty
    with link_to(url, FaultPlan(script={("to_host", 0): "drop"})) as link:
        reply = link.request(RUN)
        assert reply["op"] == "run" and reply["n"] == 2
        c = link.counters()
        assert c["timeouts"] == 1 and c["retries"] == 1
        status = link.request({"op": "status"})
    assert status["runs"] == 1 and status["duplicates"] == 1  # the resend was answered from the cache


def test_lost_request_is_resent(pty: tuple[PtyServer, str]) -> None:
    srv, url = pty
    with link_to(url, FaultPlan(script={("to_device", 0): "drop"})) as link:
        assert link.request(RUN)["op"] == "run"
        assert link.counters()["retries"] == 1
        status = link.request({"op": "status"})
    assert status["runs"] == 1 and status["duplicates"] == 0


def test_corrupt_reply_is_dropped_and_resent_at_once(pty: tuple[PtyServer, str]) -> None:
    srv, url = pty
    with link_to(url, FaultPlan(script={("to_host", 0): "corrupt"}), timeout=30.0) as link:
        reply = link.request(RUN)  # a 30 s timeout: only the fast resend can make this quick
        assert reply["op"] == "run"
        c = link.counters()
        assert c["fast_retries"] == 1 and c["timeouts"] == 0
        assert sum(c["dropped"].values()) >= 1
        status = link.request({"op": "status"})
    assert status["runs"] == 1 and status["duplicates"] == 1


def test_garbage_duplicates_and_delays_are_survived(tcp: tuple[TcpServer, str]) -> None:
    _, url = tcp
    script = {("to_host", 0): "garbage", ("to_host", 1): "duplicate", ("to_host", 2): "delay",
              ("to_device", 3): "garbage", ("to_device", 4): "duplicate"}
    plan = FaultPlan(script=script, delay_s=0.5)  # the delayed reply arrives after the resend
    with link_to(url, plan) as link:
        for i in range(6):
            data = bytes([i]) * 10
            assert link.request({"op": "ping", "data": data})["data"] == data
        c = link.counters()
    assert c["garbage_bytes"] > 0 and c["dropped"].get("garbage", 0) >= 1
    assert c["stale_replies"] >= 2  # the duplicate, and the late copy of the delayed reply
    assert c["timeouts"] >= 1


def test_silent_port_says_nothing_was_received() -> None:
    master, slave = os.openpty()
    try:
        with link_to(os.ttyname(slave), retries=1, timeout=0.05) as link:
            with pytest.raises(NoReplyError, match="nothing was received"):
                link.request({"op": "hello"})
            assert link.counters()["timeouts"] == 2
    finally:
        os.close(master)
        os.close(slave)


def test_echoing_port_is_recognised() -> None:
    with link_to("loop://", retries=0, timeout=0.05) as link:
        with pytest.raises(NoReplyError, match="echoes what we send"):
            link.request({"op": "hello"})
        assert link.counters()["echoes"] == 1


def test_missing_port_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="cannot open /dev/pgt-no-such-port.*pgt devices"):
        SerialLink("/dev/pgt-no-such-port")


def test_reconnects_after_the_connection_drops_and_hands_over_to_the_owner(tcp: tuple[TcpServer, str]) -> None:
    srv, url = tcp
    calls: list[dict] = []
    with link_to(url) as link:
        link.on_reconnect = lambda request: calls.append(request({"op": "hello"}))
        link.request({"op": "config", "settle_us": 7})
        srv.reset_device(hangup=True)
        reply = link.request(RUN)
        assert reply["op"] == "run"
        assert link.counters()["reconnects"] == 1
        assert len(calls) == 1 and calls[0]["settle_us"] == 1000  # the fresh board has lost its config


def test_reconnect_finds_a_usb_port_again_by_serial_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from serial.tools import list_ports

    class Port:
        def __init__(self, device: str, serial_number: str) -> None:
            self.device = device
            self.serial_number = serial_number

    first = PtyServer(make_core(noise_free=True, board="wide"))
    second = PtyServer(make_core(noise_free=True, board="wide"))
    try:
        path1, path2 = first.start(), second.start()
        ports = [Port("/dev/ttyS9", "OTHER"), Port(path1, "E6614C311B")]
        monkeypatch.setattr(list_ports, "comports", lambda: ports)
        with link_to(path1) as link:
            assert link.usb_serial == "E6614C311B"
            link.request({"op": "ping"})
            first.stop()  # the board resets: its port disappears ...
            ports[1] = Port(path2, "E6614C311B")  # ... and comes back under another name
            assert link.request(RUN)["op"] == "run"
            assert link.counters()["reconnects"] == 1
            assert second.core.counts["runs"] == 1
    finally:
        first.stop()
        second.stop()


def test_gives_up_when_the_port_does_not_come_back(pty: tuple[PtyServer, str]) -> None:
    srv, url = pty
    with link_to(url, reconnect_timeout=0.2) as link:
        link.request({"op": "ping"})
        # An open slave keeps the pty's number taken once its path is gone: no other program (a parallel test's
        # server) can get the same path and answer the link's reconnect.
        keep = os.open(url, os.O_RDWR | os.O_NOCTTY)
        try:
            srv.stop()
            assert not os.path.exists(url)
            with pytest.raises(DeviceError, match="could not reconnect"):
                link.request({"op": "ping"})
        finally:
            os.close(keep)


def test_close_stops_the_reader_thread(tcp: tuple[TcpServer, str]) -> None:
    _, url = tcp
    link = link_to(url)
    link.request({"op": "ping"})
    link.close()
    link.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("pgt-link-reader")]
    with pytest.raises(DeviceError, match="closed"):
        link.request({"op": "ping"})


def test_in_process_link_and_sim_urls(tcp: tuple[TcpServer, str]) -> None:
    assert sim_options("sim://?seed=3&model=b&noise_free=1") == {"seed": 3, "level": "B", "noise_free": True}
    with pytest.raises(UserError, match="unknown simulator option 'sed'"):
        sim_options("sim://?sed=3")
    with pytest.raises(UserError, match="bad value for seed"):
        sim_options("sim://?seed=x")
    link = InProcessLink("sim://?noise_free=1&max_frame=4096&board=wide")
    hello = link.request({"op": "hello"})
    assert hello["max_frame"] == 4096 and hello["max_batch"] == (4096 - 256) // 64
    assert link.request(RUN)["n"] == 2 and link.core.counts["runs"] == 1
    counts = link.counters()  # kept by the link's Connection, as a SerialLink's are
    assert counts["requests"] == counts["replies"] == counts["frames_in"] == 2 and counts["retries"] == 0
    assert 0 < counts["bytes_out"] < counts["bytes_in"]  # (the frames a wire would have carried: hello is large)
    with link_to(tcp[1]) as serial_link:
        assert set(serial_link.counters()) == set(counts)


def test_reconnect_retries_the_handshake_until_the_board_serves(tcp: tuple[TcpServer, str]) -> None:
    srv, url = tcp
    calls: list[int] = []

    def handshake(request: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise NoReplyError("not serving yet")  # the port is back before main.py runs
        request({"op": "hello"})

    with link_to(url) as link:
        link.on_reconnect = handshake
        link.request({"op": "ping"})
        srv.reset_device(hangup=True)
        assert link.request(RUN)["op"] == "run"
        assert len(calls) == 2 and link.counters()["reconnects"] == 2


def test_reconnect_stops_when_the_owner_refuses_what_came_back(tcp: tuple[TcpServer, str]) -> None:
    srv, url = tcp

    def handshake(request: Any) -> None:
        raise DeviceError("a different board")

    with link_to(url) as link:
        link.on_reconnect = handshake
        link.request({"op": "ping"})
        srv.reset_device(hangup=True)
        with pytest.raises(DeviceError, match="a different board"):
            link.request(RUN)
        assert link.counters()["reconnects"] == 1
