"""End to end: ``pgt flash`` copies the firmware to the virtual board with the real mpremote, the board boots
the unmodified main.py in a MicroPython VM, and a RingClient handshakes, runs blocks and takes a few
perturbative training steps through the firmware's own serve loop and HAL (the ring model behind fake pins).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sim_output import served_port

from pgt.cli import main as pgt_main


@pytest.fixture(scope="module")
def port(virtual_board: str) -> str:
    return virtual_board


ROOT = Path(__file__).resolve().parent.parent


def mpremote(port: str, *args: str) -> str:
    from pgt.flash import mpremote_exe

    proc = subprocess.run([*mpremote_exe(), "connect", port, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_info_on_a_fresh_board_says_it_is_not_flashed_and_leaves_its_friendly_repl(
        port: str, capsys: pytest.CaptureFixture[str]) -> None:
    # (runs first: the board's filesystem is still empty) a frame's version byte is Ctrl-A, which moves the
    # cursor of a typed line and must not put the board into its raw REPL
    import serial

    assert pgt_main(["info", port, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "a MicroPython REPL answered, not the pgt firmware" in err and "raw" not in err
    with serial.Serial(port, 115200, timeout=1.0) as ser:
        ser.write(b"\r")  # a friendly REPL with an empty line answers with its prompt; a raw REPL would not
        heard, deadline = b"", time.monotonic() + 30
        while time.monotonic() < deadline and ((more := ser.read(256)) or not heard.endswith(b">>> ")):
            heard += more
    assert heard.endswith(b">>> ") and b"Traceback" not in heard, heard  # (nothing our frames typed was run)


def test_mpremote_against_the_virtual_board(port: str, tmp_path: Path) -> None:
    # exec after mpremote's own soft reset (raw REPL, raw-paste), and filesystem commands
    assert mpremote(port, "exec", "print(6 * 7)").strip() == "42"
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hi from', sys.implementation.name)\n")
    assert "hi from micropython" in mpremote(port, "run", str(script))
    mpremote(port, "resume", "fs", "cp", str(script), ":hello.py")
    assert "hello.py" in mpremote(port, "resume", "fs", "ls", ":")
    mpremote(port, "resume", "fs", "rm", ":hello.py")
    # mip from the checkout's package.json puts the same tree on the board
    mpremote(port, "resume", "mip", "install", "--target", "/", "package.json")
    listing = mpremote(port, "resume", "fs", "ls", ":pgt/firmware")
    assert "serve.py" in listing and "hal_rp2.py" in listing
    assert "main.py" in mpremote(port, "resume", "fs", "ls", ":")


def test_package_json_matches_the_device_file_set() -> None:
    from pgt.device_files import package_json

    assert json.loads((ROOT / "package.json").read_text()) == package_json(ROOT)


@pytest.mark.slow
def test_flash_then_train(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pgt.device import open_device

    assert pgt_main(["flash", port, "--board", "rp2"]) == 0
    out = capsys.readouterr().out
    assert "files verified" in out and "rp2-pwm" in out
    # flashing again works on a board that is running the firmware (mpremote's Ctrl-C leaves the loop)
    assert pgt_main(["flash", port, "--board", "rp2"]) == 0

    with open_device(port, timeout=5.0) as client:
        assert client.info["board"] == "rp2-pwm" and client.n_inputs == 2 and client.n_outputs == 3
        assert "pgt/firmware/serve.py" in client.info["files"]
        x = np.array([[10.0, 20.0], [40.0, 5.0], [10.0, 20.0]])
        y = client.run(x)
        assert y.shape == (3, 3) and np.all(np.isfinite(y))
        assert not np.allclose(y[0], y[1])  # the drive reaches the ring through the PWM pins
        # a few two-sided perturbative steps that push output channel 1 up
        rng = np.random.default_rng(0)
        w = np.array([20.0, 20.0])
        start = float(client.run(w[None, :])[0, 1])
        for _ in range(4):
            d = rng.choice([-1.0, 1.0], size=2) * 4.0
            ya = client.run(np.stack([w + d, w - d]))
            g = (ya[0, 1] - ya[1, 1]) / 2.0 * d / 16.0
            w = np.clip(w + 4.0 * g / (np.abs(g).max() + 1e-9), 5.0, 44.0)
        assert client.queries >= 10
        end = float(client.run(w[None, :])[0, 1])
        assert np.isfinite(end) and np.isfinite(start)
        status = client.status()
        assert status["link"]["frames_in"] >= 8 and status["runs"] >= 7
        # host silence: the idle loop (select.poll on stdin, every poll_ms) zeroes the drive
        client.configure(timeout_ms=50)
        client.run(w[None, :])
        time.sleep(1.5)
        status = client.status()
        assert status["watchdog_trips"] == 1 and status["driving"] is False


@pytest.mark.slow
def test_flash_precompiled(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pgt.device import open_device

    assert pgt_main(["flash", port, "--board", "rp2", "--mpy"]) == 0
    assert "files verified" in capsys.readouterr().out
    with open_device(port, timeout=5.0) as client:
        assert "pgt/firmware/serve.mpy" in client.info["files"]
        assert "pgt/firmware/serve.py" not in client.info["files"]  # flash removed the old tree first
        assert client.run(np.array([[10.0, 20.0]])).shape == (1, 3)


def test_every_tap_of_the_virtual_board_responds_and_averaging_lowers_its_noise(port: str) -> None:
    """The flashed rp2 board (2 drives, 3 taps): each tap's spread over random drives is far above its repeat
    noise, and the firmware's n_avg averages independent ADC reads (the noise is not fixed per query)."""
    from pgt.device import open_device

    with open_device(port, timeout=5.0) as client:
        assert (client.n_inputs, client.n_outputs) == (2, 3)
        x = np.random.default_rng(1).uniform(client.drive_low, client.drive_high, (60, 2))
        span = client.run(x).std(axis=0)
        noise = {}
        for n_avg in (1, 64):
            client.configure(n_avg=n_avg, settle_us=1000)  # (a settled drive: the spread is the noise alone)
            noise[n_avg] = client.run(np.repeat(x[:4], 30, axis=0)).reshape(4, 30, 3).std(axis=1).mean(axis=0)
    assert np.all(span > 20 * noise[1]), (span, noise)  # measured (seed 0): spans 0.21-0.26 V, noise 5-6 mV at n_avg 1
    assert np.all(noise[64] < 0.6 * noise[1]), noise  # measured: 1.1-1.6 mV (the ring's gain noise per query remains)


@contextlib.contextmanager
def _board(fs: Path | None = None, uid: str | None = None) -> Iterator[str]:
    """A virtual board of its own (``pgt sim --board``), stopped by SIGINT as a user would; yields its port."""
    args = [sys.executable, "-m", "pgt.cli", "sim", "--board"]
    args += ["--fs", str(fs)] if fs is not None else []
    args += ["--uid", uid] if uid is not None else []
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        port = served_port(proc.stdout)
        assert port.startswith("/dev/")
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()


def _retrying(port: str, *args: str) -> str:
    """mpremote ``args``, tried again (up to 5 times) if a board that is still booting swallowed its request."""
    from pgt.flash import mpremote_exe

    for _ in range(5):
        try:
            proc = subprocess.run([*mpremote_exe(), "connect", port, *args], capture_output=True, text=True,
                                  timeout=15, cwd=ROOT)
        except subprocess.TimeoutExpired:
            continue
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout
    raise AssertionError(f"mpremote {' '.join(args)}: no answer in 5 tries")


UID = "import machine, binascii; print(binascii.hexlify(machine.unique_id()).decode())"
PLATFORM = "import sys; print(sys.platform)"


@pytest.mark.slow
def test_the_virtual_board_keeps_its_filesystem_and_identity_and_resets_like_a_pico(port: str, tmp_path: Path
                                                                                     ) -> None:
    module_board = port
    fs = tmp_path / "flash"
    main_py = tmp_path / "main.py"  # counts its boots in a file on the board
    main_py.write_text("try:\n    n = int(open('boots').read())\nexcept OSError:\n    n = 0\n"
                       "f = open('boots', 'w')\nf.write(str(n + 1))\nf.close()\n")
    with _board(fs) as port:
        uid = _retrying(port, "exec", UID).strip()  # (a fresh board under load may still be compiling its VM)
        mpremote(port, "resume", "fs", "cp", str(main_py), ":main.py")
        mpremote(port, "resume", "fs", "mkdir", ":lib")
        listing = mpremote(port, "resume", "fs", "ls", ":")
        assert re.search(r"^\s+%d main\.py$" % main_py.stat().st_size, listing, re.M)  # sizes, as on a board
        assert re.search(r"^\s+0 lib/$", listing, re.M)
        mpremote(port, "reset")  # machine.reset(): the board boots again and runs main.py
        time.sleep(1.0)  # (a real board's port is gone for a moment too; bytes sent meanwhile are lost)
        assert _retrying(port, "resume", "fs", "cat", ":boots").strip() == "1"
        df = mpremote(port, "resume", "df").splitlines()
        assert df[0].split() == ["filesystem", "size", "used", "avail", "use%", "mounted", "on"]
        size, used, avail = (int(v) for v in df[1].split()[1:4])
        assert size == 352 * 4096 and used + avail == size and 0 < used < size and df[1].split()[-1] == "/"
    with _board(fs) as port:  # the same flash after a restart: same files, same board
        assert _retrying(port, "exec", UID).strip() == uid
        assert mpremote(port, "resume", "exec", PLATFORM).strip() == "rp2"  # as a Pico says
        from pgt import repl

        assert repl.check_board(port, None, say=lambda s: None) == "rp2"  # so `pgt flash PORT` needs no --board
        assert "main.py" in mpremote(port, "resume", "fs", "ls", ":")
    other = mpremote(module_board, "exec", UID).strip()  # the module's board: another instance, another id
    with _board(uid="00112233445566ff") as port:
        assert _retrying(port, "exec", UID).strip() == "00112233445566ff"
    assert len({uid, other, "00112233445566ff"}) == 3 and len(uid) == 16


def test_an_mcp3208_board_reads_eight_taps(port: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """board.json with an external MCP3208: the firmware reads its 8 channels over SPI, the virtual board's
    ring grows to 8 distinct taps."""
    from pgt.device import open_device

    config = tmp_path / "board.json"
    config.write_text(json.dumps({"board": "rp2", "adc": "mcp3208"}))
    assert pgt_main(["flash", port, "--board", "rp2", "--config", str(config)]) == 0
    assert "rp2-pwm-mcp3208" in capsys.readouterr().out
    with open_device(port, timeout=5.0) as client:
        assert client.info["board"] == "rp2-pwm-mcp3208" and (client.n_inputs, client.n_outputs) == (2, 8)
        x = np.random.default_rng(0).uniform(client.drive_low, client.drive_high, (40, 2))
        y = client.run(x)
        assert y.shape == (40, 8) and np.all(y.std(axis=0) > 0.02)  # every tap follows the drive
        assert len({round(float(v), 6) for v in y[0]}) == 8  # and no two are the same feature


def test_the_virtual_boards_modules_import_on_cpython() -> None:
    """The guest's machine/os/sys modules import on the host too (tools that walk the package, docs, the import
    graph): the readings file /vb/adc exists only inside the VM and is opened at the first ADC read."""
    code = "import pgt.sim.vboard_machine as m, pgt.sim.vboard_os, pgt.sim.vboard_sys; print(m.PWM.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "PWM", out.stderr
