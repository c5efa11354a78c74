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
        proc.communicate(timeout=10)


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err


def test_serves_on_tcp_and_stops_on_sigint(start_sim: Any) -> None:
    proc, lines = start_sim("--tcp", "0", "--seed", "3", "--model", "B", "--noise-free")
    assert lines["port"].startswith("socket://127.0.0.1:")
    with serial.serial_for_url(lines["port"], timeout=10) as ser:
        hello = _hello(ser)
    assert hello["op"] == "hello" and hello["board"] == "sim" and hello["m"] == 32
    code, err = _interrupt(proc)
    assert code == 0 and "stopped" in err and "Traceback" not in err


def test_serves_on_a_pty_with_a_link(start_sim: Any, tmp_path: Path) -> None:
    link = tmp_path / "ttySIM"
    proc, lines = start_sim("--link", str(link))
    assert lines["port"].startswith("/dev/") and lines["link"].startswith(str(link))
    assert link.is_symlink()
    with serial.Serial(str(link), timeout=10) as ser:
        assert _hello(ser)["op"] == "hello"
    code, err = _interrupt(proc)
    assert code == 0 and "stopped" in err
    assert not link.exists() and not link.is_symlink()


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sim", "--tcp", "0", "--link", str(tmp_path / "x")]) == 1
    assert main(["sim", "--characterize", str(tmp_path), "--tcp", "0"]) == 1
    assert main(["sim", "--tcp", "70000"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("pgt sim: error: ") for line in err)


def test_characterize_calls_the_model_and_says_where(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[Path, int, str]] = []

    def fake(out_dir: Path, seed: int = 0, level: str = "A") -> dict[str, Any]:
        calls.append((Path(out_dir), seed, level))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "summary.txt").write_text("STM 4.7\n")
        return {"stm": 4.7}

    module = ModuleType("pgt.sim.characterize")
    module.characterize = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pgt.sim.characterize", module)
    assert main(["sim", "--characterize", str(tmp_path / "out"), "--seed", "2", "--model", "B"]) == 0
    assert calls == [(tmp_path / "out", 2, "B")]
    assert "STM 4.7" in capsys.readouterr().out


def test_board_hands_over_to_the_virtual_board(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    module = ModuleType("pgt.sim.virtual_board")
    module.serve = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pgt.sim.virtual_board", module)
    assert main(["sim", "--board", "--seed", "4", "--model", "B"]) == 0
    assert calls == [{"seed": 4, "level": "B", "announce": print}]
