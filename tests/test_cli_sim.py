"""``pgt sim``: starts as a subprocess, prints the port, answers a hello, stops on SIGINT and says so."""

from __future__ import annotations

import binascii
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest
import serial

from pgt.cli import main
from pgt.errors import UserError
from pgt.firmware import board as fw_board
from pgt.link import InProcessLink

RP2 = fw_board.resolve({"board": "rp2"})  # the firmware's default board: what every simulator mirrors


def _is_the_rp2_board(hello: dict[str, Any]) -> None:
    assert (hello["k"], hello["m"]) == (len(RP2["drive_pins"]), len(RP2["adc_pins"])) == (2, 3)
    assert hello["limit_lo"] == RP2["limit_lo"] and hello["limit_hi"] == RP2["limit_hi"]
    assert hello["dac_bits"] == RP2["dac_bits"] and hello["adc_bits"] == RP2["adc_bits"]
    assert hello["dac_mA_per_code"] == RP2["dac_mA_per_code"] and hello["adc_V_per_code"] == RP2["adc_V_per_code"]


def _hello(ser: serial.SerialBase) -> dict[str, Any]:
    payload = msgpack.packb({"op": "hello", "seq": 1})
    head = struct.pack("<2sBBI", b"PG", 1, 0, len(payload))
    head += struct.pack("<I", binascii.crc32(head))
    ser.write(head + payload + struct.pack("<I", binascii.crc32(payload)))
    reply_head = ser.read(12)
    assert len(reply_head) == 12
    length = struct.unpack_from("<I", reply_head, 4)[0]
    reply: dict[str, Any] = msgpack.unpackb(ser.read(length + 4)[:length], raw=False)
    return reply


@pytest.fixture
def start_sim() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
        proc = subprocess.Popen([sys.executable, "-m", "pgt.cli", "sim", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        lines: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.partition(": ")
            lines[key] = value.strip()
            if line.startswith("serving until Ctrl-C"):
                break
        assert "port" in lines, f"no port line; stderr: {proc.stderr.read() if proc.stderr else ''}"
        return proc, lines

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_serves_on_tcp_and_stops_on_sigint(start_sim: Any) -> None:
    proc, lines = start_sim("--tcp", "0", "--seed", "3", "--model", "B", "--noise-free")
    assert lines["port"].startswith("socket://127.0.0.1:")
    with serial.serial_for_url(lines["port"], timeout=60) as ser:
        hello = _hello(ser)
    assert hello["op"] == "hello" and hello["board"] == "sim-rp2-pwm"
    _is_the_rp2_board(hello)
    assert "simulated rp2-pwm board, 2 drives, 3 taps" in lines["pgt sim"]
    code, err = _interrupt(proc)
    assert code == 0 and "stopped" in err and "Traceback" not in err


def test_serves_on_a_pty_with_a_link(start_sim: Any, tmp_path: Path) -> None:
    link = tmp_path / "ttySIM"
    proc, lines = start_sim("--link", str(link))
    assert lines["port"].startswith("/dev/") and lines["link"].startswith(str(link))
    assert link.is_symlink()
    with serial.Serial(str(link), timeout=60) as ser:
        assert _hello(ser)["op"] == "hello"
    code, err = _interrupt(proc)
    assert code == 0 and "stopped" in err
    assert not link.exists() and not link.is_symlink()


def test_other_shapes_on_request(start_sim: Any, tmp_path: Path) -> None:
    config = tmp_path / "board.json"
    config.write_text('{"adc_pins": [26, 27], "limit_hi": [1000, 3000]}')
    for args, expect in ((["--board", "wide"], (16, 32, [4095] * 16)), (["--channels", "4", "5"], (4, 5, [2047] * 4)),
                         (["--config", str(config)], (2, 2, [1000, 3000]))):
        proc, lines = start_sim("--tcp", "0", *args)
        with serial.serial_for_url(lines["port"], timeout=60) as ser:
            hello = _hello(ser)
        assert (hello["k"], hello["m"], hello["limit_hi"]) == expect, args
        assert _interrupt(proc)[0] == 0


def test_sim_urls_mirror_the_default_board_and_name_their_options() -> None:
    _is_the_rp2_board(InProcessLink("sim://").request({"op": "hello"}))
    _is_the_rp2_board(InProcessLink("sim://?board=rp2&seed=0&model=A&noise_free=1").request({"op": "hello"}))
    hello = InProcessLink("sim://?board=rp2&channels=16,32&seed=0&noise_free=1").request({"op": "hello"})
    assert (hello["k"], hello["m"]) == (16, 32)
    assert InProcessLink("sim://?board=esp32").request({"op": "hello"})["dac_bits"] == 8
    hello = InProcessLink("sim://").request({"op": "hello"})
    assert "pgt/firmware/core.py" in hello["files"] and len(hello["files"]["pgt/firmware/core.py"]) == 64
    with pytest.raises(UserError, match=r"unknown simulator option 'boards'.*known: board, channels, config, seed"):
        InProcessLink("sim://?boards=rp2")
    with pytest.raises(UserError, match=r"simulator option seed given more than once in sim://\?seed=1&seed=2"):
        InProcessLink("sim://?seed=1&seed=2")
    with pytest.raises(UserError, match="option model and level \\(the same option\\) given more than once"):
        InProcessLink("sim://?model=A&level=B")
    for bad in ("sim://?board=pico9", "sim://?channels=2", "sim://?noise_free=yes", "sim://?config=/nonexistent"):
        with pytest.raises(UserError):
            InProcessLink(bad)


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sim", "--tcp", "0", "--link", str(tmp_path / "x")]) == 1
    assert main(["sim", "--characterize", str(tmp_path), "--tcp", "0"]) == 1
    assert main(["sim", "--tcp", "70000"]) == 1
    assert main(["sim", "--board", "pico9"]) == 1
    assert main(["sim", "--config", str(tmp_path / "none.json")]) == 1
    assert main(["sim", "--board", "--channels", "2", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("pgt sim: error: ") for line in err)
    assert "unknown board 'pico9'" in err[3] and "none.json: No such file or directory" in err[4]


def test_a_negative_seed_or_a_file_as_the_filesystem_is_a_one_line_error(capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["sim", "--seed", "-1", "--tcp", "0"]) == 1  # was a numpy traceback
    assert main(["sim", "--seed", "-1", "--characterize", str(tmp_path / "ch")]) == 1
    assert main(["sim", "--board", "--seed", "-1"]) == 1
    assert main(["sim", "--board", "--fs", str(afile)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["pgt sim: error: --seed must be an integer >= 0, got -1"] * 3 + [
        f"pgt sim: error: --fs {afile}: not a directory (the board's filesystem is a directory)"]
    assert not (tmp_path / "ch").exists()


def test_characterize_calls_the_model_and_says_where(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[Path, int, str]] = []

    def fake(out_dir: Path, seed: int = 0, level: str = "A", cfg: Any = None) -> dict[str, Any]:
        calls.append((Path(out_dir), seed, level))
        assert cfg["name"] == "wide"
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "summary.txt").write_text("STM 4.7\n")
        return {"stm": 4.7}

    module = ModuleType("pgt.sim.characterize")
    module.characterize = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pgt.sim.characterize", module)
    assert main(["sim", "--characterize", str(tmp_path / "out"), "--seed", "2", "--model", "B", "--board", "wide"]) == 0
    assert calls == [(tmp_path / "out", 2, "B")]
    assert "STM 4.7" in capsys.readouterr().out


def test_board_hands_over_to_the_virtual_board(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[dict[str, Any]] = []
    module = ModuleType("pgt.sim.virtual_board")
    module.serve = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pgt.sim.virtual_board", module)
    assert main(["sim", "--board", "--seed", "4", "--model", "B"]) == 0
    announce = calls[0].pop("announce")
    assert calls == [{"seed": 4, "level": "B", "fs": None, "uid": None}]
    announce("/dev/pts/9")  # the port is said as plain `pgt sim` says it
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pgt sim: virtual MicroPython board") and "ring model B, seed 4" in out[0]
    assert out[1:] == ["port: /dev/pts/9", "serving until Ctrl-C"]
    fs = tmp_path / "flash"
    assert main(["sim", "--board", "--fs", str(fs), "--uid", "00112233445566ff"]) == 0
    assert calls[-1]["fs"] == fs and fs.is_dir() and calls[-1]["uid"] == bytes.fromhex("00112233445566ff")


def test_virtual_board_options_are_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = tmp_path / "flash"
    assert main(["sim", "--board", "--fs", str(fs), "--uid", "12"]) == 1
    assert main(["sim", "--fs", str(fs)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "need 16 hex digits" in err[0] and "add --board" in err[1] and not fs.exists()


def test_no_import_cycle_between_host_and_sim() -> None:
    """sim loads only the firmware and protocol packages and the host's unit scale (numpy only); the host reaches
    sim lazily, in its sim openers (tests/test_import_graph.py checks the whole graph, lazy imports included)."""
    sim_side = ("import sys, pgt.sim.ring, pgt.sim.device, pgt.sim.url, pgt.sim.hal, pgt.sim.boards, pgt.sim.adc, "
                "pgt.sim.serve, pgt.sim.virtual_board\n"
                "print(' '.join(m for m in sys.modules if m.startswith('pgt.')))")
    host_side = ("import sys, pgt.link, pgt.client, pgt.cli\n"
                 "print(' '.join(m for m in sys.modules if m.startswith('pgt.')))")
    loaded = subprocess.run([sys.executable, "-c", sim_side], capture_output=True, text=True, check=True).stdout
    assert loaded.split() and all(m.split(".")[1] in ("sim", "firmware", "protocol", "units") for m in loaded.split())
    loaded = subprocess.run([sys.executable, "-c", host_side], capture_output=True, text=True, check=True).stdout
    assert "pgt.link" in loaded.split() and not [m for m in loaded.split() if m.startswith("pgt.sim")]


def test_a_second_virtual_board_on_the_same_filesystem_is_refused(start_sim: Any, tmp_path: Path) -> None:
    """Issue 18 row 11: one board per --fs directory; a board killed outright leaves no lock behind."""
    fs = tmp_path / "flash"
    first, lines = start_sim("--board", "--fs", str(fs))
    assert Path(lines["port"]).exists()
    second = subprocess.run([sys.executable, "-m", "pgt.cli", "sim", "--board", "--fs", str(fs)],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.splitlines() == [f"pgt sim: error: --fs {fs}: another virtual board is running on this "
                                          "filesystem (one board per filesystem): stop it, or give another --fs"]
    first.kill()  # no clean-up at all: the lock goes with the process
    first.communicate(timeout=60)
    third, lines = start_sim("--board", "--fs", str(fs))
    assert Path(lines["port"]).exists()
    code, err = _interrupt(third)
    assert code == 0 and "Traceback" not in err
