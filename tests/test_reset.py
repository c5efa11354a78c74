"""``pgt reset PORT`` on the simulated board over a pty: from the friendly REPL, the raw REPL and a running serve
loop back to a fresh firmware (a new boot id), saying what it found; user errors are one line."""

from __future__ import annotations

import pytest
import serial

from pgt.cli import main as pgt_main
from pgt.sim.device import make_core
from pgt.sim.serve import PROMPT, RAW_REPL, PtyServer


@pytest.mark.parametrize(("poke", "shown", "found"), [
    (b"\r\x03\x03", PROMPT, "at its MicroPython REPL"),
    (b"\r\x03\x03\x01", RAW_REPL, "showing no REPL prompt"),
    (b"", b"", "running a program, now stopped at its MicroPython REPL"),  # the serve loop: Ctrl-C leaves it
])
def test_reset_brings_the_firmware_back(capsys: pytest.CaptureFixture[str], poke: bytes, shown: bytes,
                                        found: str) -> None:
    with PtyServer(make_core(noise_free=True)) as srv:
        path = srv.start()
        first = srv.core
        if poke:
            with serial.serial_for_url(path, timeout=5) as ser:
                ser.write(poke)
                assert ser.read_until(shown).endswith(shown)
        assert pgt_main(["reset", path, "--timeout", "3"]) == 0
        out = capsys.readouterr().out
        assert srv.core is not first and srv.serving  # a soft reset: a fresh Core, serving
        assert "soft reset into main.py" in out and f"boot id {srv.core.boot_id:08x}" in out
        assert found in out


def test_reset_refuses_sim_and_a_missing_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert pgt_main(["reset", "sim://"]) == 1
    assert pgt_main(["reset", "/dev/does-not-exist-pgt"]) == 1
    assert pgt_main(["reset", "/dev/null", "--timeout", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("pgt reset: error: ") for line in err)


def test_a_simulated_reboot_passes_the_core_its_settings_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``reboot()`` once built the fresh Core from positional arguments: a Core whose settings are keyword-only
    (or reordered) would have been handed the wrong ones."""
    import pgt.sim.stream_board as serve
    from pgt.firmware.core import Core

    class KeywordCore(Core):
        def __init__(self, hal: object, clock: object, *, max_frame: int, files: dict[str, str], poll_ms: int,
                     frame_timeout_ms: int) -> None:
            super().__init__(hal, clock, max_frame=max_frame, files=files, poll_ms=poll_ms,
                             frame_timeout_ms=frame_timeout_ms)

    old = make_core(noise_free=True, max_frame=8192, files={"pgt/x.py": "ab"})
    old.poll_ms, old.frame_timeout_ms = 30, 700
    monkeypatch.setattr(serve, "Core", KeywordCore)
    new = serve.reboot(old)
    assert (new.max_frame, new.files, new.poll_ms, new.frame_timeout_ms) == (8192, {"pgt/x.py": "ab"}, 30, 700)
    assert new.hal is old.hal and new.boot_id != old.boot_id
