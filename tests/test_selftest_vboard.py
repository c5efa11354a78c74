"""``pgt selftest`` on the virtual board (the real firmware in a MicroPython VM): the drive filter settles on the
board's device clock (settle waits and call costs), not on the VM's slow wall clock, so the step response gives
the same settle time as the in-process simulator; the watchdog check sees the drive go to zero on the built-in
loopback wire (GP29); ``--write`` stores the settle time in the board's board.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgt.cli import main as pgt_main

pytestmark = pytest.mark.slow(seconds=25)


def test_selftest_on_the_virtual_board(virtual_board: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "board.json"
    config.write_text(json.dumps({"board": "rp2", "loopback_pin": 29}))
    assert pgt_main(["flash", virtual_board, "--config", str(config)]) == 0
    assert pgt_main(["selftest", "sim://", "--out", str(tmp_path / "sim"), "--ramp-rows", "256"]) == 0
    assert pgt_main(["selftest", virtual_board, "--out", str(tmp_path / "vb"), "--ramp-rows", "256", "--write"]) == 0
    assert f"to {virtual_board}:board.json" in capsys.readouterr().out
    reps = {name: json.loads((tmp_path / name / "selftest.json").read_text()) for name in ("sim", "vb")}
    checks = {name: {c["name"]: c for c in rep["checks"]} for name, rep in reps.items()}
    settle = {name: c["settle"]["values"]["recommended_settle_us"] for name, c in checks.items()}
    assert abs(settle["vb"] - settle["sim"]) <= 0.25 * settle["sim"], settle  # measured: 400 and 400 us
    assert checks["vb"]["watchdog"]["verdict"] == "pass", checks["vb"]["watchdog"]
    assert checks["vb"]["handshake"]["verdict"] == "pass"
    # --write stored it in the board's board.json (mpremote), and the firmware starts with it after the reset
    from pgt.device import open_device

    with open_device(virtual_board, timeout=5.0) as client:
        assert client.info["settle_board_us"] == client.info["settle_us"] == settle["vb"]
        assert client.info["settle_min_us"] == settle["vb"]
