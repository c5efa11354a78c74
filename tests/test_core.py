"""The device core: every op, every error path, clamping, the watchdog, replay of a resent request —
and byte-identical behaviour in a real MicroPython VM."""

from __future__ import annotations

import struct
from typing import Any

import core_probe
import msgpack
import numpy as np
from fake_hal import FakeClock, FakeHAL
from hypothesis import given, settings
from hypothesis import strategies as st
from mpvm import MicroPythonVM

from pgt.firmware.core import Core
from pgt.protocol import messages as m


def req(op: str, seq: int, **fields: Any) -> str:
    return "req " + msgpack.packb({"op": op, "seq": seq, **fields}).hex()


def drive(*codes: int) -> bytes:
    return struct.pack("<%dH" % len(codes), *codes)


SCRIPT = [
    req("hello", 1),
    req("ping", 2, data=b"\x00\xff"),
    req("status", 3),
    req("config", 4, settle_us=500, n_avg=2, timeout_ms=100),
    req("config", 5, n_avg=0),
    req("config", 6, timeout_ms=10),
    req("config", 7, drive_lo=[0, 0, 0], drive_hi=[1, 1, 1]),
    req("config", 8, drive_lo=[0, 0, 0, 0], drive_hi=[4000, 10, 10, 10]),
    req("config", 9, drive_lo=[0, 5, 0, 0], drive_hi=[3000, 3000, 3000, 3000]),
    req("run", 10, n=2, k=4, drive=drive(1, 2, 3, 4, 5000, 0, 65535, 7)),  # beyond limits: clamped
    req("run", 10, n=2, k=4, drive=drive(1, 2, 3, 4, 5000, 0, 65535, 7)),  # resent: cached, not applied twice
    req("run", 11, n=1, k=3, drive=drive(1, 2, 3)),
    req("run", 12, n=2, k=4, drive=drive(1, 2, 3)),
    req("run", 13, n=0, k=4, drive=b""),
    req("run", 14, n=500, k=4, drive=bytes(4000)),
    req("run", 15, n="2", k=4, drive=b""),
    req("run", 16, n=1, k=4),
    "fail",
    req("run", 17, n=1, k=4, drive=drive(9, 9, 9, 9)),
    req("run", 18, n=1, k=4, drive=drive(9, 9, 9, 9)),
    "wait 50", "poll", "wait 60", "poll", "poll",
    req("launch", 19),
    "req " + msgpack.packb({"seq": 20}).hex(),
    "req " + msgpack.packb([1, 2]).hex(),
    "req c1",
    "req " + msgpack.packb({"op": "hello", "seq": -3}).hex(),
    req("stop", 21),
    req("status", 22),
    req("exit", 23),
]


def test_core_replies_identical_in_micropython() -> None:
    expected = core_probe.run_script(SCRIPT)
    vm = MicroPythonVM({"fake_hal.py": core_probe.__file__.replace("core_probe", "fake_hal"),
                        "core_probe.py": core_probe.__file__})  # type: ignore[dict-item]
    path = vm.put("script.txt", "\n".join(SCRIPT).encode())
    got = vm.run(
        "import core_probe\n"
        "for line in core_probe.run_script(open(%r).read().split('\\n')):\n"
        "    print(line)\n" % path
    ).splitlines()
    assert got == expected
    vm.close()


def _replies() -> list[Any]:
    return [msgpack.unpackb(bytes.fromhex(x[6:])) for x in core_probe.run_script(SCRIPT) if x.startswith("reply")]


def test_every_op_and_error_path() -> None:
    r = _replies()
    hello = r[0]
    assert hello["proto"] == m.PROTOCOL_VERSION and hello["k"] == 4 and hello["m"] == 3
    assert hello["max_batch"] == min(64, (1024 - 256) // 8)
    assert r[1]["data"] == b"\x00\xff"
    assert r[3]["settle_us"] == 500 and r[3]["timeout_ms"] == 100
    assert [x.get("code") for x in r[4:9]] == [m.E_BAD_VALUE, m.E_BAD_VALUE, m.E_BAD_SHAPE, m.E_BAD_VALUE, None]
    run, again = r[9], r[10]
    assert run == again and run["clamped"] == 4  # 2 and 0 < lo=5 on channel 1; 5000 and 65535 > 3000
    assert [x.get("code") for x in r[11:16]] == [m.E_BAD_SHAPE, m.E_BAD_SHAPE, m.E_BAD_VALUE, m.E_TOO_LARGE,
                                                 m.E_BAD_TYPE]
    assert r[16]["code"] == m.E_MISSING_FIELD
    assert r[17]["code"] == m.E_HAL_FAULT and r[18]["op"] == "run"
    assert [x["code"] for x in r[19:24]] == [m.E_UNKNOWN_OP, m.E_MISSING_FIELD, m.E_MALFORMED, m.E_MALFORMED,
                                             m.E_BAD_TYPE]
    assert r[22]["seq"] is None and r[20]["seq"] == 20
    assert r[24]["op"] == "stop"
    status = r[25]
    assert status["duplicates"] == 1 and status["runs"] == 2 and status["watchdog_trips"] == 1
    assert status["driving"] is False and r[26]["op"] == "exit" and len(r) == 27


def test_resent_run_is_not_applied_twice_and_watchdog_zeroes() -> None:
    lines = core_probe.run_script(SCRIPT)
    runs = [x for x in lines if x.startswith("hal run")]
    assert len(runs) == 2  # seq 10 once (its resend is cached), seq 18 once; seq 17 failed in the HAL
    assert "hal run n=2 max=3000 min=1" in runs[0]
    polls = [x for x in lines if x.startswith("poll")]
    assert polls == ["poll False", "poll True", "poll False"]
    assert lines[-1] == "exit True driving False"


def _core(**kw: Any) -> tuple[Core, FakeHAL, FakeClock]:
    hal, clock = FakeHAL(**kw), FakeClock()
    return Core(hal, clock, max_frame=2048), hal, clock


requests = st.dictionaries(
    st.sampled_from(["op", "seq", "n", "k", "drive", "data", "settle_us", "n_avg", "timeout_ms", "drive_lo",
                     "drive_hi", "x"]),
    st.none() | st.booleans() | st.integers(-5, 70000) | st.binary(max_size=80) | st.text(max_size=6)
    | st.sampled_from(m.OPS) | st.lists(st.integers(-10, 70000), max_size=5),
    max_size=7,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(requests | st.binary(max_size=40).map(lambda b: b), max_size=8))
def test_no_request_makes_the_core_raise_or_drive_past_a_limit(batch: list[Any]) -> None:
    core, hal, _ = _core()
    for item in batch:
        payload = item if isinstance(item, bytes) else msgpack.packb(item)
        reply = msgpack.unpackb(core.handle(payload), strict_map_key=False)
        assert isinstance(reply, dict) and "op" in reply
    for e in hal.events:
        if e.startswith("run"):
            hi, lo = (int(x.split("=")[1]) for x in e.split()[2:4])
            assert 0 <= lo and hi <= 3000


def test_watchdog_only_after_silence() -> None:
    core, hal, clock = _core()
    core.handle(msgpack.packb({"op": "run", "seq": 1, "n": 1, "k": 4, "drive": drive(1, 1, 1, 1)}))
    clock.t += 1500
    assert not core.poll()
    core.handle(msgpack.packb({"op": "status", "seq": 2}))
    clock.t += 1500
    assert not core.poll()
    clock.t += 600
    assert core.poll() and hal.events[-1] == "zero" and not core.driving


def test_every_reply_carries_the_boot_id_and_each_boot_has_its_own() -> None:
    core, _, _ = _core()
    other, _, _ = _core()
    assert core.boot_id != other.boot_id and 0 <= core.boot_id < 1 << 32
    drive = np.zeros(4, "<u2").tobytes()
    for req in ({"op": "hello", "seq": 1}, {"op": "status", "seq": 2}, {"op": "run", "seq": 3, "n": 1, "k": 4,
                "drive": drive}, {"op": "dance", "seq": 4}, {"seq": 5}):
        reply = msgpack.unpackb(core.handle(msgpack.packb(req)))
        assert reply["boot"] == core.boot_id, reply
    assert msgpack.unpackb(core.handle(b"\xc1"))["boot"] == core.boot_id  # not even msgpack
