"""The fault-injecting transport, and the link under faults: with 1 % of frames corrupted and 1 % lost (each
way) a long run of blocks completes, every block equals what the noise-free in-process simulator gives for the
same input, and no run is applied twice (the device's own counters). Also: a harsher mix, truncated frames,
and board resets (the port dropping; and silent resets, noticed and recovered)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pgt.client import RingClient
from pgt.device import open_device
from pgt.faults import FaultPlan, FaultyTransport, faulty
from pgt.protocol import decoder, framing
from pgt.sim.device import make_core
from pgt.sim.serve import PtyServer, TcpServer

FRAMES = [framing.encode(bytes([i]) * (10 + 7 * i)) for i in range(20)]


class Pipe:
    """A Transport that records writes and reads back chunks given to it."""

    def __init__(self, chunks: list[bytes] | None = None) -> None:
        self.written: list[bytes] = []
        self.chunks = list(chunks or [])

    def read_some(self, wait: float) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        pass


def read_all(t: FaultyTransport) -> bytes:
    out = b""
    for _ in range(1000):
        out += t.read_some(0.0)
    return out


def test_no_faults_passes_the_stream_unchanged_whatever_the_chunking() -> None:
    stream = b">>> " + b"".join(FRAMES) + b"\r\nMPY: soft reboot\r\n" + FRAMES[3]
    rng = np.random.default_rng(1)
    cuts = sorted(rng.integers(0, len(stream), 40).tolist())
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    t = FaultyTransport(Pipe(chunks), FaultPlan())
    assert read_all(t) == stream
    t.write(FRAMES[0])
    assert t.inner.written == [FRAMES[0]]


def test_each_fault_kind_on_frames_to_the_host() -> None:
    def through(**plan: Any) -> bytes:
        return read_all(FaultyTransport(Pipe([b"".join(FRAMES)]), FaultPlan(to_device=False, **plan)))

    whole = b"".join(FRAMES)
    assert through(drop=1.0) == b""
    assert through(duplicate=1.0) == b"".join(f + f for f in FRAMES)
    corrupt = through(corrupt=1.0)
    assert len(corrupt) == len(whole) and corrupt != whole
    assert len(through(truncate=1.0)) < len(whole)
    junk = through(garbage=1.0)
    for f in FRAMES:
        assert f in junk
        junk = junk.replace(f, b"", 1)
    assert junk and b"\x03" not in junk and b"\x04" not in junk  # never types Ctrl-C or Ctrl-D
    dec = decoder.Decoder()
    dec.feed(through(corrupt=1.0))
    while dec.next_payload() is not None:
        pass
    assert dec.frames < len(FRAMES) and sum(dec.dropped.values()) > 0  # the CRCs see it


def test_faults_on_frames_to_the_device_and_the_script() -> None:
    pipe = Pipe()
    resets: list[int] = []
    plan = FaultPlan(script={("to_device", 1): "drop", ("to_device", 2): "reset", ("to_device", 3): "corrupt"})
    t = FaultyTransport(pipe, plan, reset_device=lambda: resets.append(1))
    for f in FRAMES[:5]:
        t.write(f)
    assert pipe.written[0] == FRAMES[0] and pipe.written[2] == FRAMES[4]
    assert pipe.written[1] != FRAMES[3] and len(pipe.written) == 3
    assert resets == [1] and t.stats == {"drop_to_device": 1, "reset_to_device": 1, "corrupt_to_device": 1}
    with pytest.raises(ValueError, match="unknown scripted fault"):
        FaultyTransport(Pipe(), FaultPlan(script={("to_device", 0): "melt"})).write(FRAMES[0])


# -- the link under faults, against the simulated board ---------------------------------------------------


@pytest.fixture
def reference() -> Iterator[RingClient]:
    with open_device("sim://?noise_free=1&board=wide") as ref:
        yield ref


def run_blocks(c: RingClient, ref: RingClient, blocks: int, rows: int, seed: int = 0) -> int:
    """Run ``blocks`` random blocks through ``c``; return how many differ from the in-process reference."""
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(blocks):
        x = rng.uniform(c.drive_low, c.drive_high, (rows, c.n_inputs))
        wrong += not np.array_equal(c.run(x), ref.run(x))
    return wrong


def test_one_percent_corruption_and_loss_nothing_corrupt_delivered_no_run_twice(reference: RingClient) -> None:
    plan = FaultPlan(drop=0.01, corrupt=0.01, seed=3)
    wrap = faulty(plan)
    with PtyServer(make_core(noise_free=True, board="wide")) as srv:
        path = srv.start()
        with open_device(path, wrap=wrap, timeout=0.05, link_rate=1e6) as c:
            assert run_blocks(c, reference, blocks=300, rows=32) == 0
            counters = c.link.counters()
            status = c.status()
    stats = wrap.stats
    assert stats.get("drop_to_host", 0) and stats.get("drop_to_device", 0)  # the faults did happen
    assert stats.get("corrupt_to_host", 0) and stats.get("corrupt_to_device", 0)
    assert status["runs"] == 300  # every block applied exactly once; resends were answered from the cache
    assert status["duplicates"] >= stats["drop_to_host"] and counters["retries"] >= sum(stats.values())
    assert c.device_resets == 0


def test_a_harsher_mix_over_tcp(reference: RingClient) -> None:
    plan = FaultPlan(drop=0.05, corrupt=0.05, duplicate=0.05, delay=0.05, delay_s=0.02, garbage=0.05,
                     byte_error_rate=1e-5, seed=11)
    wrap = faulty(plan)
    logs: list[str] = []
    with TcpServer(make_core(noise_free=True, board="wide"), log=logs.append) as srv:
        port = srv.start()
        with open_device(f"socket://127.0.0.1:{port}", wrap=wrap, timeout=0.05, link_rate=1e6) as c:
            assert run_blocks(c, reference, blocks=60, rows=48, seed=1) == 0
            status = c.status()
    assert len(wrap.stats) >= 10
    assert not [line for line in logs if "reset" in line]  # (see the truncation test for what can happen)
    assert status["runs"] == 60


def test_truncated_requests_never_make_the_board_leave_its_loop(reference: RingClient) -> None:
    """A request that loses a run of bytes leaves the board out of sync, reading the rest as data: 0x03 bytes in
    its drive codes (about four a block here) must not break into the REPL, nor a 0x04 then reboot the board
    (``framing.StreamReader``: Ctrl-C counts only in sync). The client resends; every block comes back right."""
    logs: list[str] = []
    wrap = faulty(FaultPlan(truncate=0.1, to_host=False, seed=5))
    with PtyServer(make_core(noise_free=True, board="wide"), log=logs.append) as srv:
        path = srv.start()
        with open_device(path, wrap=wrap, timeout=0.05, link_rate=1e6) as c:
            c.configure(settle_us=1009)  # (a settled drive: rows comparable with the reference)
            assert run_blocks(c, reference, blocks=60, rows=64, seed=2) == 0
            assert srv.core.settle_us == 1009
            status = c.status()
            assert wrap.stats["truncate_to_device"] >= 5
            assert not [line for line in logs if "board reset" in line or "left the serve loop" in line], logs
            assert c.device_resets == 0 and status["link"]["dropped"]


def test_silent_board_reboots_are_noticed_and_the_config_replayed(reference: RingClient) -> None:
    """Resets of the board behind a pty (no hangup: the port stays, as behind a USB-UART bridge): the client
    notices each from the boot id, replays its config to the fresh Core and still returns right data."""
    with PtyServer(make_core(noise_free=True, board="wide")) as srv:
        path = srv.start()
        wrap = faulty(FaultPlan(reset=0.05, seed=4), reset_device=lambda: srv.reset_device())
        with open_device(path, wrap=wrap, timeout=0.1, link_rate=1e6) as c:
            c.configure(settle_us=1009)  # (a settled drive: rows comparable with the reference)
            assert run_blocks(c, reference, blocks=60, rows=16, seed=3) == 0
            resets = wrap.stats["reset_to_device"]
            assert resets >= 1 and 1 <= c.device_resets <= resets
            assert srv.core.settle_us == 1009  # the fresh Core got the config again


def test_board_resets_that_drop_the_connection(reference: RingClient) -> None:
    with TcpServer(make_core(noise_free=True, board="wide")) as srv:
        port = srv.start()
        wrap = faulty(FaultPlan(reset=0.05, seed=2), reset_device=lambda: srv.reset_device(hangup=True))
        with open_device(f"socket://127.0.0.1:{port}", wrap=wrap, timeout=0.1, link_rate=1e6) as c:
            c.configure(n_avg=3)
            assert run_blocks(c, reference, blocks=60, rows=16, seed=3) == 0
            resets = wrap.stats["reset_to_device"]
            assert resets >= 1 and c.link.counters()["reconnects"] >= 1
            assert srv.core.n_avg == 3  # replayed on the fresh board


# -- the real firmware (in a MicroPython VM): line errors are survived; a real Ctrl-C is recovered from ----------------


@pytest.fixture(scope="module")
def flashed_board(virtual_board: str) -> str:
    """The virtual board (real MicroPython VM) with the firmware flashed by ``pgt flash``."""
    from pgt.cli import main as pgt_main

    assert pgt_main(["flash", virtual_board, "--board", "rp2"]) == 0
    return virtual_board


def test_a_corrupt_header_full_of_ctrl_c_bytes_does_not_stop_the_firmware(flashed_board: str) -> None:
    """After a frame whose header is corrupt, the board skips the rest of it; the 0x03 and 0x04 bytes there are
    data, not Ctrl-C and Ctrl-D (the reader is out of sync until the next good frame)."""
    import msgpack

    with open_device(flashed_board, timeout=1.0) as c:
        c.configure(n_avg=3)
        x = np.array([[10.0, 20.0]])
        assert c.run(x).shape == (1, 3)
        for codes in [(0x0503, 0x0305), (0x0403, 0x0304)]:
            payload = msgpack.packb({"op": "run", "seq": 1, "n": 1, "k": 2,
                                     "drive": np.array(codes, "<u2").tobytes()})
            bad = bytearray(framing.encode(payload))
            bad[5] ^= 0x40  # a line error in the header's length field
            c.link._transport.write(bytes(bad))
            assert c.run(x).shape == (1, 3)
        assert c.link.counters()["repl_revivals"] == 0 and c.device_resets == 0
        status = c.status()
        assert status["link"]["dropped"].get("bad_header", 0) >= 2


def test_a_real_ctrl_c_stops_the_firmware_and_the_link_revives_it(flashed_board: str) -> None:
    """A Ctrl-C between frames (someone's terminal, a stray mpremote) sends the board to its REPL, as it must.
    The link sees the REPL prompt when a request goes unanswered, soft-resets the board into main.py, and the
    client replays its configuration."""
    with open_device(flashed_board, timeout=1.0) as c:
        c.configure(n_avg=3)
        x = np.array([[10.0, 20.0]])
        assert c.run(x).shape == (1, 3)
        before = c.status()["requests"]
        c.link._transport.write(b"\r\x03")
        assert c.run(x).shape == (1, 3)
        # at least one revival: a slow machine may need a second soft reset before main.py answers
        assert c.link.counters()["repl_revivals"] >= 1
        assert c.device_resets >= 1
        assert c.link.request({"op": "hello"})["n_avg"] == 3  # the configuration was replayed
        assert c.status()["requests"] < before  # on a fresh board: its counters started again


def test_a_board_left_at_its_repl_is_restarted_by_the_handshake_and_by_pgt_reset(
    flashed_board: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """mpremote leaves a board at its REPL (raw, after ``mpremote exec``; friendly, after ``mpremote reset``):
    the client's handshake soft-resets it into main.py once and says so; ``pgt reset PORT`` does it on demand."""
    import serial

    from pgt.cli import main as pgt_main

    with serial.serial_for_url(flashed_board, timeout=5) as ser:
        ser.write(b"\r\x03\x03\x01")  # stop the firmware, enter the raw REPL
        assert ser.read_until(b"raw REPL; CTRL-B to exit\r\n>").endswith(b">")
    logs: list[str] = []
    with open_device(flashed_board, timeout=1.0, log=logs.append) as c:
        assert c.run(np.array([[10.0, 20.0]])).shape == (1, 3)
        assert c.link.counters()["repl_revivals"] == 1
        boot = c.boot_id
        assert c.status()["boot"] == boot and 0 <= boot < 1 << 32
    # raw, or normal: the hello frame's bytes (random seq, CRC) may hold a Ctrl-B, which leaves the raw REPL for
    # the friendly one before the host hears anything; either way the board is restarted once, and said so.
    assert len(logs) == 1 and re.search(r"was at its MicroPython REPL \((raw|normal)\)", logs[0]), logs
    with serial.serial_for_url(flashed_board, timeout=5) as ser:
        ser.write(b"\r\x03")  # the friendly REPL
        assert ser.read_until(b">>> ").endswith(b">>> ")
    assert pgt_main(["reset", flashed_board, "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert "the board was at its MicroPython REPL" in out and "pgt firmware answers: board rp2" in out
    assert "boot id" in out and f"boot id {boot:08x}" not in out  # the real firmware chose a new one
