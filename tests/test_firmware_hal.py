"""The board HALs and the serve loop, run in a real MicroPython VM against a fake ``machine`` module.

Each test runs one scenario of tests/support/hal_probe.py in the VM (fresh VM per scenario batch) and checks
what the fake hardware saw: zero on boot, clamping to the safe limits, averaging, settle timing, the loop's
exits (Ctrl-C, the exit op, end of input), the idle watchdog, and main() booting from a board.json.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mpvm import MicroPythonVM

from pgt.firmware import board


def vm_calls(vm: MicroPythonVM, calls: list[str]) -> list[Any]:
    code = "import json, hal_probe as hp\n" + "".join(
        "print(json.dumps(hp.%s))\n" % c for c in calls)
    return [json.loads(line) for line in vm.run(code).splitlines() if line.strip()]


REQ = "hp._req"


@pytest.fixture(scope="module")
def boots(mpvm: MicroPythonVM) -> list[Any]:
    return vm_calls(mpvm, [
        "boot_writes({'board': 'rp2'})",
        "boot_writes({'board': 'rp2', 'zero_code': [100, 2048], 'limit_lo': [0, 1000], 'limit_hi': [4095, 3000]})",
        "boot_writes({'board': 'esp32'})",
        "boot_writes({'board': 'rp2', 'dac': 'mcp4922', 'drive_pins': [0, 1]})",
    ])


def test_outputs_start_at_zero_code(boots: list[Any]) -> None:
    for result in boots:
        log = result["log"]
        outs = [e for e in log if e[0] in ("pwm", "dac", "spi")]
        assert outs, log
        # every write made while the HAL comes up sets a channel to its zero code
        zero = result["zero"]
        for kind, pin, value in outs:
            if kind == "pwm":
                j = [16, 17].index(pin)
                assert value == (zero[j] << 4) | (zero[j] >> 8)
            elif kind == "dac":
                assert value == zero[[25, 26].index(pin)]
            else:
                assert value & 0x3000 == 0x3000 and value & 0xFFF == zero[pin]


def test_pwm_duty_set_before_frequency(boots: list[Any]) -> None:
    log = boots[0]["log"]
    for pin in (16, 17):
        entries = [e[0] for e in log if e[1] == pin]
        assert entries[:3] == ["pwm_init", "pwm", "freq"]


def test_esp32_adc_attenuation(boots: list[Any]) -> None:
    assert ["atten", 34, 3] in boots[2]["log"] and ["atten", 35, 3] in boots[2]["log"]


@pytest.fixture(scope="module")
def blocks(mpvm: MicroPythonVM) -> list[Any]:
    return vm_calls(mpvm, [
        "block({'board': 'rp2'}, [100, 200, 4095, 0], 2, 50, 4)",
        "block({'board': 'rp2'}, [100, 200, 4095, 0], 2, 50, 1)",
        "block({'board': 'rp2'}, [100, 200, 4095, 0], 2, 0, 8)",
        "block({'board': 'esp32'}, [10, 20, 255, 0], 2, 5, 4)",
        "block({'board': 'esp32', 'dac': 'mcp4922'}, [10, 4095], 1, 5, 2)",
        "block({'board': 'rp2', 'settle_min_us': 30}, [1, 2], 1, 5, 2)",
        "block({'board': 'rp2', 'adc': 'mcp3208', 'adc_pins': [0, 5, 7]}, [100, 200, 4095, 0], 2, 50, 4)",
        "block({'board': 'esp32', 'adc': 'mcp3208', 'adc_pins': [7]}, [10, 20], 1, 5, 1)",
    ])


def _model(levels: list[int], gain: float) -> int:
    return 1000 + int(gain * sum(levels))


def test_averaging_removes_zero_mean_dither(blocks: list[Any]) -> None:
    avg4, single, avg8 = blocks[0], blocks[1], blocks[2]
    gains = [0.5, 0.25, 0.125]
    duties = [[1600, 3200], [65535, 0]]
    expected = [_model(d, g) for d in duties for g in gains]
    assert avg4["samples"] == expected
    assert avg8["samples"] == expected
    dither = [-24] * 3 + [24] * 3  # one read per vector: the dither is still there
    assert single["samples"] == [e + d for e, d in zip(expected, dither)]
    assert avg4["reads"] == {"26": 8, "27": 8, "28": 8}
    assert avg4["nbytes"] == 2 * 2 * 3


def test_block_writes_and_settle_calls(blocks: list[Any]) -> None:
    r = blocks[0]
    assert r["writes"] == [["pwm", 16, 1600], ["pwm", 17, 3200], ["pwm", 16, 65535], ["pwm", 17, 0]]
    assert r["sleeps"] == [50, 50]
    assert r["elapsed_us"] > 100  # FakeTime: the two settles plus clock steps
    assert blocks[2]["sleeps"] == []  # settle 0: no sleep call at all
    assert blocks[5]["sleeps"] == [30]  # settle_min_us is a floor
    assert r["feeds"] == 2  # the watchdog is fed once per vector: a long block cannot trip it


def test_no_allocation_per_sample(mpvm: MicroPythonVM) -> None:
    """A block's heap use does not grow with its size: nothing is allocated per vector or per read."""
    rp2, esp32, mcp3208 = vm_calls(mpvm, [
        "block_allocation({'board': 'rp2', 'max_batch': 256}, 4, 256, 4)",
        "block_allocation({'board': 'esp32', 'max_batch': 256}, 4, 256, 4)",
        "block_allocation({'board': 'rp2', 'max_batch': 256, 'adc': 'mcp3208'}, 4, 256, 4)",
    ])
    for small, large, small2, large2 in (rp2, esp32, mcp3208):
        assert large == small and large2 == small2, (small, large, small2, large2)
        assert large2 < 256  # a few small objects per block (the returned memoryview), not 256 * (k + m * 4)


def test_esp32_dac_and_mcp4922(blocks: list[Any]) -> None:
    assert blocks[3]["writes"] == [["dac", 25, 10], ["dac", 26, 20], ["dac", 25, 255], ["dac", 26, 0]]
    assert blocks[3]["samples"][0] == _model([10 * 257, 20 * 257], 0.5)
    spi = blocks[4]["writes"]
    assert [w for w in spi if w[0] == "spi"] == [["spi", 0, 0x3000 | 10], ["spi", 1, 0x8000 | 0x3000 | 4095]]
    assert ["pin", 15, 0] in spi and ["pin", 15, 1] in spi  # chip select toggled around each word


def test_an_external_mcp3208_reads_up_to_eight_taps(blocks: list[Any]) -> None:
    rp2, esp32 = blocks[6], blocks[7]
    duties = [[1600, 3200], [65535, 0]]
    expected = [(c << 4) | (c >> 8) for d in duties for g in (0.5, 0.25, 0.125) for c in [_model(d, g) >> 4]]
    assert rp2["samples"] == expected  # 4 reads average the zero-mean dither away; 12 bits on the u16 scale
    xfers = [w for w in rp2["writes"] if w[0] == "mcp3208"]
    assert len(xfers) == 2 * 3 * 4
    # start bit, single-ended, channel in D2 D1 D0: 0x06 | D2, D1 D0 << 6, 0
    assert xfers[:5] == [["mcp3208", 0, [0x06, 0x00, 0]]] * 4 + [["mcp3208", 5, [0x07, 0x40, 0]]]
    assert xfers[-1] == ["mcp3208", 7, [0x07, 0xC0, 0]]
    cs = [w for w in rp2["writes"] if w[0] == "pin" and w[1] == 13]
    assert cs == [["pin", 13, 0], ["pin", 13, 1]] * 24  # chip select low around every conversion
    assert sorted(rp2["reads"]) == ["('mcp3208', 0)", "('mcp3208', 5)", "('mcp3208', 7)"]  # no built-in ADC
    c = (_model([10 * 257, 20 * 257], 0.125) >> 4) - 2  # a single read keeps the dither
    assert esp32["samples"] == [(c << 4) | (c >> 8)]


def test_mcp3208_board_configs() -> None:
    cfg = board.check(board.resolve({"board": "rp2", "adc": "mcp3208"}))
    assert cfg["adc_pins"] == list(range(8)) and cfg["name"] == "rp2-pwm-mcp3208"
    assert (cfg["adc_bits"], cfg["adc_V_per_code"]) == (12, 3.3 / 65535)
    assert (cfg["adc_spi_id"], cfg["adc_sck_pin"], cfg["adc_mosi_pin"], cfg["adc_miso_pin"], cfg["adc_cs_pin"]) \
        == (1, 10, 11, 12, 13)
    assert board.check(board.resolve({"board": "esp32", "adc": "mcp3208"}))["adc_spi_id"] == 2
    for bad, why in (({"adc_pins": [0, 8]}, "channels 0..7"), ({"adc_pins": [1, 1]}, "channels 0..7"),
                     ({"adc": "ads1115"}, "adc must be builtin or mcp3208")):
        with pytest.raises(ValueError, match=why):
            board.check(board.resolve({"board": "rp2", "adc": "mcp3208", **bad}))


@pytest.fixture(scope="module")
def sessions(mpvm: MicroPythonVM) -> list[Any]:
    cfg = {"board": "rp2", "limit_hi": [3000, 1000]}
    drive = "b'\\xff\\xff\\xff\\xff\\x10\\x00\\x20\\x00'"  # (65535, 65535), (16, 32)
    run = "%s('run', 2, n=2, k=2, drive=%s)" % (REQ, drive)
    return vm_calls(mpvm, [
        "session(%r, [%s('hello', 1), %s], tail=b'\\r\\x03\\x03')" % (cfg, REQ, run),
        "session(%r, [%s, %s('exit', 3), %s('hello', 4)])" % (cfg, run, REQ, REQ),
        "session(%r, [%s])" % (cfg, run),
        "session(%r, [%s('config', 1, timeout_ms=2000), %s], poll=True, idle=5)" % (cfg, REQ, run),
    ])


def test_loop_escapes_on_ctrl_c_and_clamps(sessions: list[Any]) -> None:
    s = sessions[0]
    assert s["why"] == "escape"
    hello, run = s["replies"]
    assert hello["op"] == "hello" and hello["limit_hi"] == [3000, 1000] and hello["k"] == 2 and hello["m"] == 3
    assert run["op"] == "run" and run["clamped"] == 2 and len(run["samples"]) == 6
    assert s["last_out"] == {"16": 0, "17": 0}  # leaving the loop zeroes the drive
    assert s["link"] == {"in": 2, "out": 2}
    assert s["feeds"] >= 2


def test_loop_exit_op_stops_reading(sessions: list[Any]) -> None:
    s = sessions[1]
    assert s["why"] == "exit"
    assert [r["op"] for r in s["replies"]] == ["run", "exit"]  # the hello after exit is left for the REPL


def test_clamped_drive_never_reaches_pins(mpvm: MicroPythonVM, sessions: list[Any]) -> None:
    code = ("import json, hal_probe as hp, fake_machine as fm\n"
            "hp.session({'board': 'rp2', 'limit_hi': [3000, 1000]}, "
            "[hp._req('run', 2, n=1, k=2, drive=b'\\xff\\xff\\xff\\xff')])\n"
            "print(json.dumps(max(e[2] for e in fm.LOG if e[0] == 'pwm' and e[1] == 16)))\n"
            "print(json.dumps(max(e[2] for e in fm.LOG if e[0] == 'pwm' and e[1] == 17)))\n")
    hi16, hi17 = [json.loads(x) for x in mpvm.run(code).split()]
    assert hi16 == (3000 << 4) | (3000 >> 8) and hi17 == (1000 << 4) | (1000 >> 8)
    assert sessions[2]["why"] == "eof"


def test_idle_loop_zeroes_drive_after_host_silence(sessions: list[Any]) -> None:
    s = sessions[3]
    assert s["why"] == "eof"
    assert s["trips"] == 1  # 5 idle polls of 1000 ms after a run with timeout_ms 2000
    assert s["last_out"] == {"16": 0, "17": 0}
    assert s["feeds"] >= 7  # the watchdog is fed on every wake-up, idle or not


JUNK = {
    "garbage": "b'garbage!'",
    "bad_crc": "hp._req('ping', 9)[:-1] + b'\\x00'",
    "unknown_op": "hp._req('dance', 9)",
    "wrong_type": "hp._req('run', 9, n='1', k=2, drive=b'')",
    "no_seq": "hp.framing.encode(hp.mpack.encode({'op': 'run'}))",
}


@pytest.fixture(scope="module")
def floods(mpvm: MicroPythonVM) -> list[Any]:
    cfg = {"board": "rp2"}
    return vm_calls(mpvm, [
        "flood(%r, [%s], 20, 1500)" % (cfg, JUNK["garbage"]),  # the hardest: no frame ever ends
        "flood(%r, [%s], 20, 1500)" % (cfg, ", ".join(JUNK.values())),  # every kind of junk in turn
    ])


@pytest.mark.parametrize("which", [0, 1], ids=["garbage", "every_kind"])
def test_junk_cannot_hold_off_the_watchdog(floods: list[Any], which: int) -> None:
    """config(timeout_ms=100), a run of non-zero codes, then junk every 20 ms for 1.5 s — garbage bytes, or
    in turn garbage, a bad-CRC frame, an unknown op, an ill-typed run and a request without seq: the drive
    is zero within timeout_ms + poll_ms (100 + 50 ms on the loop's clock) of the run, and status says so."""
    f = floods[which]
    assert f["replies"][:2] == ["config", "run"]
    assert f["zeroed"] and 100 < f["zeroed"][0] <= 150, f["zeroed"]
    assert f["status"]["op"] == "status" and f["status"]["driving"] is False
    assert f["status"]["watchdog_trips"] == 1
    assert f["last_out"] == {"16": 0, "17": 0}


def test_frame_timeout_and_resync(mpvm: MicroPythonVM) -> None:
    """A frame cut short is dropped after the frame timeout; Ctrl-C is data right after a dropped frame and
    honoured again once the line has been quiet."""
    hello = "%s('hello', 1)" % REQ
    run = "%s('run', 2, n=1, k=2, drive=b'\\x03\\x03\\x03\\x03')" % REQ
    cut, after_bad, after_quiet = vm_calls(mpvm, [
        # a hello, then the first 20 bytes of a run; silence; then Ctrl-C
        "session({'board': 'rp2'}, [%s, %s[:20]], poll=True, idle=3, after=b'\\x03')" % (hello, run),
        # a frame with a corrupt header followed at once by 03 bytes: they may be its rest, so they are data
        "session({'board': 'rp2'}, [%s, b'PG\\x01\\x00\\x05\\x00\\x00\\x00\\x00\\x00\\x00\\x00'], "
        "tail=b'\\x03\\x03', poll=True, idle=2)" % hello,
        # the same, but the line is quiet first: back in sync, Ctrl-C leaves the loop
        "session({'board': 'rp2'}, [%s, b'PG\\x01\\x00\\x05\\x00\\x00\\x00\\x00\\x00\\x00\\x00'], "
        "poll=True, idle=2, after=b'\\x03')" % hello,
    ])
    assert cut["why"] == "escape" and [r["op"] for r in cut["replies"]] == ["hello"]
    assert cut["dropped"].get("timeout") == 1
    assert after_bad["why"] == "eof" and after_bad["dropped"].get("bad_header") == 1
    assert after_quiet["why"] == "escape" and after_quiet["dropped"].get("bad_header") == 1


def test_main_boots_from_board_json(mpvm: MicroPythonVM) -> None:
    path = mpvm.put("probe_board.json", json.dumps({"board": "rp2", "wdt_ms": 4000, "poll_ms": 50}).encode())
    out = vm_calls(mpvm, ["main_boot(%r, [%s('hello', 1), b'\\x03'])" % (path, REQ)])[0]
    assert out["why"] == "escape"
    assert out["log0"][0] == "pwm_init"
    assert out["wdt"] == [["wdt", 0, 4000]]
    assert out["timers"] == [1000]  # after the loop: a timer keeps the watchdog fed for the REPL
    assert out["nbytes"] > 100


def test_board_config_defaults_and_checks() -> None:
    cfg = board.resolve({"board": "rp2"})
    assert cfg["limit_hi"] == [2047, 2047] and cfg["zero_code"] == [0, 0] and cfg["name"] == "rp2-pwm"
    assert board.resolve({"board": "esp32"})["limit_hi"] == [127, 127]
    mcp = board.resolve({"board": "esp32", "dac": "mcp4922"})
    assert mcp["dac_bits"] == 12 and mcp["drive_pins"] == [0, 1] and mcp["limit_hi"] == [2047, 2047]
    board.check(cfg)
    for bad in ({"board": "rp2", "wdt_ms": 9000}, {"board": "rp2", "limit_hi": [5000, 1]},
                {"board": "rp2", "zero_code": [10, 10], "limit_lo": [20, 0]}, {"board": "rp2", "dac": "builtin"},
                {"board": "esp32", "dac": "pwm"}, {"board": "rp2", "zero_code": [0]},
                {"board": "rp2", "dac": "mcp4922", "drive_pins": [16, 17]}):
        with pytest.raises(ValueError):
            board.check(board.resolve(bad))
    with pytest.raises(ValueError, match="unknown board"):
        board.resolve({}, platform="linux")


@pytest.mark.parametrize("cut", [5, 12, 16], ids=["inside_the_header", "after_the_header", "inside_the_body"])
def test_a_read_blocked_inside_a_frame_cannot_hold_off_the_watchdog(mpvm: MicroPythonVM, cut: int) -> None:
    """main() on a board's stdin, whose read blocks until its whole chunk has come: a host that stops inside a
    frame right after a run stops the loop inside that read; the read guard's soft timer still zeroes the drive
    within timeout_ms + poll_ms (100 + 50 ms, on the loop's clock), and the loop goes on when bytes come."""
    path = mpvm.put("blocked_board.json", json.dumps({"board": "rp2", "wdt_ms": 4000, "poll_ms": 50}).encode())
    out = vm_calls(mpvm, ["blocked_read(%r, %d)" % (path, cut)])[0]
    assert out["replies"] == ["config", "run", "ping", "status"], out
    assert len(out["zeroed"]) == 1 and 100 < out["zeroed"][0] <= 150, out
    assert out["trips"] == 1 and out["driving"] is False
    assert out["callbacks"] >= 19  # every 50 ms of the 1000 ms the read blocked
    assert out["timers"] == [1000]  # after the loop the same timer feeds the hardware watchdog, for the REPL
