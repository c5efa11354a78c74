"""RingClient: handshake errors that say what was found, unit conversion with the device's calibration, the
out-of-range policy, block splitting, counting, configuration (and its replay after a reset), and stop on
close and on any exception."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import msgpack
import numpy as np
import pytest

from pgt.client import RingClient
from pgt.device import open_device
from pgt.errors import DeviceError, UserError
from pgt.faults import FaultPlan, faulty
from pgt.link import InProcessLink
from pgt.reservoir import Reservoir
from pgt.sim.device import make_core
from pgt.sim.serve import PtyServer, TcpServer

SIM = "sim://?noise_free=1&board=wide"


@pytest.fixture
def client() -> Iterator[RingClient]:
    with open_device(SIM) as c:
        yield c


def uniform(c: RingClient, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(c.drive_low, c.drive_high, (n, c.n_inputs))


def test_is_a_reservoir_with_the_device_description(client: RingClient) -> None:
    assert isinstance(client, Reservoir)
    info = client.info
    assert info["board"].startswith("sim")
    assert info["k"] == client.n_inputs == 16 and info["m"] == client.n_outputs == 32
    assert info["proto"] == 2 and info["max_batch"] >= 256
    assert np.allclose(client.drive_low, 0.0) and np.allclose(client.drive_high, 100.0)
    assert info["limit_high_mA"] == pytest.approx([100.0] * 16)


def test_units_follow_the_calibration(client: RingClient) -> None:
    x = uniform(client, 5)
    h = client.info
    codes = np.rint((x - h["dac_mA_offset"]) / h["dac_mA_per_code"]).astype(np.uint16)
    samples = client.run_codes(codes)
    volts = client.run(x)
    assert np.array_equal(volts, h["adc_V_offset"] + samples * h["adc_V_per_code"])
    assert volts.shape == (5, 32) and volts.dtype == np.float64


def test_counts_queries_and_device_time_and_splits_big_blocks() -> None:
    with open_device(SIM + "&max_frame=4096") as c:  # max_batch (4096-256)/64 = 60
        assert c.max_batch == 60
        x = uniform(c, 250)
        y = c.run(x)
        assert c.queries == 250 and c.blocks == 5 and c.device_seconds > 0
        status = c.status()
        assert status["runs"] == 5 and status["vectors"] == 250
        with open_device(SIM) as whole:
            assert np.array_equal(y, whole.run(x))  # splitting does not change the answer


def test_out_of_range_drive_is_refused_or_clipped(client: RingClient) -> None:
    x = uniform(client, 3)
    x[1, 4] = 120.0
    with pytest.raises(UserError, match=r"row 1 channel 4 is 120 mA, allowed 0\.\.100 mA.*out_of_range='clip'"):
        client.run(x)
    assert client.queries == 0
    with open_device(SIM, out_of_range="clip") as clip:
        clipped = x.copy()
        clipped[1, 4] = 100.0
        assert np.array_equal(clip.run(x), client.run(clipped))
        assert clip.clamped == 0  # the host clipped: the device had nothing to clamp
    with pytest.raises(UserError, match="out_of_range must be one of"):
        open_device(SIM, out_of_range="wrap")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_drive_is_a_user_error(client: RingClient, bad: float) -> None:
    x = uniform(client, 2)
    x[0, 0] = bad
    with pytest.raises(UserError, match="NaN or infinite"):
        client.run(x)
    with pytest.raises(UserError, match=r"shape \(n, 16\)"):
        client.run(np.zeros((2, 3)))


def test_configure_drive_range_and_timing(client: RingClient) -> None:
    cfg = client.configure(settle_us=10, n_avg=2, drive_lo_mA=5.0, drive_hi_mA=np.full(16, 50.0))
    assert cfg["settle_us"] == 10 and cfg["n_avg"] == 2
    assert np.all(client.drive_low >= 5.0) and np.all(client.drive_high <= 50.0)  # rounded inwards
    assert np.all(client.drive_high > 49.9)
    with pytest.raises(UserError, match=r"allowed 5\.006.*49\.98"):
        client.run(np.full((1, 16), 60.0))
    with pytest.raises(UserError, match="outside the board's safe limits 0..100 mA"):
        client.configure(drive_hi_mA=150.0)
    with pytest.raises(UserError, match="n_avg must be a non-negative integer"):
        client.configure(n_avg=1.5)
    with pytest.raises(UserError, match="device refused config: n_avg must be 1..1024"):
        client.configure(n_avg=0)


def test_close_stops_the_drive() -> None:
    c = open_device(SIM)
    core = c.link.core
    c.run(uniform(c, 2))
    assert core.driving
    c.close()
    assert not core.driving
    with pytest.raises(DeviceError, match="closed"):
        c.status()


class FailingLink(InProcessLink):
    """Raises ``exc`` on the n-th run request."""

    def __init__(self, exc: BaseException, at: int) -> None:
        super().__init__(SIM + "&max_frame=4096")
        self.exc, self.at, self.runs = exc, at, 0

    def request(self, msg: Mapping[str, Any], timeout: float | None = None, retries: int | None = None,
                reconnect: bool = True) -> dict:
        if msg["op"] == "run":
            self.runs += 1
            if self.runs == self.at:
                raise self.exc
        return super().request(msg, timeout, retries, reconnect)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), DeviceError("line lost")])
def test_any_exception_during_a_run_stops_the_drive(exc: BaseException) -> None:
    link = FailingLink(exc, at=2)
    c = RingClient(link)
    with pytest.raises(type(exc)):
        c.run(uniform(c, 200))  # four blocks; the second fails
    assert link.core.counts["runs"] == 1 and not link.core.driving
    c.close()


class FakeHelloLink(InProcessLink):
    def __init__(self, **changes: Any) -> None:
        super().__init__(SIM)
        self.changes = changes

    def request(self, msg: Mapping[str, Any], timeout: float | None = None, retries: int | None = None,
                reconnect: bool = True) -> dict:
        reply = super().request(msg, timeout, retries, reconnect)
        if msg["op"] == "hello":
            reply.update(self.changes)
            for key, value in self.changes.items():
                if value is None:
                    del reply[key]
        return reply


def test_protocol_version_mismatch_says_what_to_do() -> None:
    with pytest.raises(DeviceError, match="protocol version 1; this host speaks 2: reflash the board with "
                                          "`pgt flash PORT`"):
        RingClient(FakeHelloLink(proto=1))
    with pytest.raises(DeviceError, match="without max_batch"):
        RingClient(FakeHelloLink(max_batch=None))


def test_silent_port_echoing_port_and_repl_are_told_apart() -> None:
    master, slave = os.openpty()
    try:
        with pytest.raises(DeviceError, match="did not answer the pgt handshake: nothing was received; is this "
                                              "the right port"):
            open_device(os.ttyname(slave), timeout=0.05, retries=0)
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(DeviceError, match="echoes what we send.*pgt flash PORT"):
        open_device("loop://", timeout=0.05, retries=0)


def answering(greeting: bytes, answer: bytes, expect: str) -> None:
    """Open a pty whose other end says ``greeting``, then ``answer`` to anything; the handshake must fail
    with a DeviceError matching ``expect``."""
    import select

    master, slave = os.openpty()
    stop = threading.Event()

    def device() -> None:
        os.write(master, greeting)
        while not stop.is_set():
            if select.select([master], [], [], 0.02)[0]:
                os.read(master, 4096)
                os.write(master, answer)

    thread = threading.Thread(target=device)
    thread.start()
    try:
        with pytest.raises(DeviceError, match=expect):
            open_device(os.ttyname(slave), timeout=0.1, retries=0)
    finally:
        stop.set()
        thread.join()
        os.close(master)
        os.close(slave)


def test_a_bare_micropython_repl_is_recognised() -> None:
    answering(b"MicroPython v1.27.0 on 2026-01-01; Raspberry Pi Pico with RP2040\r\n>>> ", b"\r\n>>> ",
              "a MicroPython REPL answered, not the pgt firmware; flash it with `pgt flash PORT`")


def test_frames_of_another_protocol_version_are_recognised() -> None:
    from pgt.protocol import framing

    payload = msgpack.packb({"op": "hello", "seq": 0, "proto": 2})
    frame = framing.header(len(payload), version=2) + payload + struct.pack("<I", framing.crc32(payload))
    answering(b"", frame, "the device's frames have format version 2, this host reads format version 1; "
              "reflash the board")


def test_other_firmware_chatter_is_reported() -> None:
    answering(b"", b"temperature=21.5C\r\n", "not pgt frames, ending 'temperature=21.5C.*pgt flash PORT")


def test_config_is_replayed_after_a_board_reset_tcp() -> None:
    srv = TcpServer(make_core(noise_free=True, board="wide"))
    port = srv.start()
    try:
        with open_device(f"socket://127.0.0.1:{port}", timeout=0.3) as c:
            c.configure(settle_us=7, drive_hi_mA=80.0)
            x = uniform(c, 10)
            before = c.run(x)
            srv.reset_device(hangup=True)  # the port drops, the board comes back with its defaults
            assert np.array_equal(c.run(x), before)
            assert c.link.counters()["reconnects"] == 1
            assert srv.core.settle_us == 7 and srv.core.drive_hi[0] == c.info["drive_hi"][0] < 4095
            assert srv.core.driving
        assert not srv.core.driving  # close() stopped the drive
        assert c.link.counters()["timeouts"] == 0
    finally:
        srv.stop()


def test_a_silent_reset_is_noticed_by_the_boot_id_and_the_config_replayed() -> None:
    srv = PtyServer(make_core(noise_free=True, board="wide"))
    path = srv.start()
    try:
        # the board resets (its pty stays, as behind a USB-UART bridge) as the second run request arrives
        wrap = faulty(FaultPlan(script={("to_device", 3): "reset"}), reset_device=srv.reset_device)
        logs: list[str] = []
        # (a generous reply timeout: the frame the reset loses costs one; a loaded machine costs none extra)
        with open_device(path, timeout=2.0, wrap=wrap, log=logs.append) as c:  # hello, config, run, run
            c.configure(settle_us=1007)  # (long enough for the drive filter: repeats are exact)
            x = uniform(c, 10)
            before = c.run(x)
            assert np.array_equal(c.run(x), before)
            assert wrap.stats == {"reset_to_device": 1}
            assert c.device_resets == 1 and srv.core.settle_us == 1007
            counts = c.link.counters()
            # the lost frame was waited for and resent (a resend is no new request); the reset cost no
            # reconnection: hello, config, run, run, then the resync (hello, config replayed) and the run again
            assert counts["timeouts"] >= 1 and counts["reconnects"] == 0 and counts["requests"] == 7, counts
            assert len(logs) == 1 and "rebooted" in logs[0] and "configuration replayed: settle_us" in logs[0]
    finally:
        srv.stop()


def test_another_board_behind_the_port_after_a_reconnect_is_refused() -> None:
    with TcpServer(make_core(noise_free=True, board="wide")) as srv:
        port = srv.start()
        with open_device(f"socket://127.0.0.1:{port}", timeout=0.3) as c:
            c.run(uniform(c, 2))
            srv.reset_device(core=make_core(seed=1, board="wide"), hangup=True)  # someone plugged in another board
            with pytest.raises(DeviceError, match="is a different board"):
                c.run(uniform(c, 2))
            assert not srv.core.driving
