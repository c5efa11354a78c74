"""One board.json check (firmware/board_check.py, board.check_given) for every entry point: `pgt flash --config`,
`pgt sim --config`, `sim://?config=` and the firmware itself in a real MicroPython VM give the same one-line
reason; every number finite, every limit consistent (issue 18 row 4: "dac_mA_per_code": Infinity)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mpvm import MicroPythonVM

from pgt.cli import main
from pgt.firmware import board

# (board.json text, the reason every entry point gives)
BAD = [
    ('{"dac_mA_per_code": Infinity}', "dac_mA_per_code must be a finite number, not Infinity"),
    ('{"adc_V_offset": NaN}', "adc_V_offset must be a finite number, not NaN"),
    ('{"dac_mA_per_code": 0}', "need dac_mA_per_code other than 0 and adc_V_per_code above 0"),
    ('{"adc_V_per_code": -0.001}', "need dac_mA_per_code other than 0 and adc_V_per_code above 0"),
    ('{"limit_lo": [7, 7], "limit_hi": [7, 7], "zero_code": [7, 7]}',
     "channel 0: limit_lo equals limit_hi (a single code drives nothing)"),
    ('{"dac_bits": 64}', "dac_bits must be 1..16, not 64"),
    ('{"drive_pins": [16, 16]}', "drive_pins: each pin (or channel) at most once, none negative"),
    ('{"max_batch": 1000000}', "need max_batch 1..65535 and max_frame 512..1048576"),
    ('{"poll_ms": 0}', "poll_ms must be at least 1, not 0"),
    ('{"name": "%s"}' % ("x" * 65), "need board rp2 or esp32 and a name of at most 64 characters"),
    ('{"wdt_ms": 1.5}', "wdt_ms must be an integer, not 1.5"),
    ('{"limits_hi": [1, 1]}', "unknown key(s) limits_hi (docs/hardware.md lists the keys)"),
]


@pytest.mark.parametrize("text, reason", BAD, ids=[r.split(" ")[0] for _, r in BAD])
def test_every_host_entry_point_refuses_a_bad_board_json_with_one_line(
        text: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "board.json"
    path.write_text('{"board": "rp2", ' + text[1:])
    assert main(["flash", "/dev/pgt-no-such-port", "--config", str(path), "--dry-run"]) == 1
    assert main(["sim", "--config", str(path), "--tcp", "0"]) == 1
    assert main(["info", f"sim://?config={path}"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.endswith(reason) for line in err), err
    assert [line.split(":")[0] for line in err] == ["pgt flash", "pgt sim", "pgt info"]


def test_pgt_sim_names_the_infinite_calibration_not_the_ring(tmp_path: Path) -> None:
    """As a user runs it: one line naming the key, not "drive_high_mA must exceed drive_low_mA"."""
    path = tmp_path / "f.json"
    path.write_text('{"dac_mA_per_code": Infinity}')
    out = subprocess.run([sys.executable, "-m", "pgt.cli", "sim", "--config", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"pgt sim: error: --config {path}: dac_mA_per_code must be a finite number, not Infinity"]


def test_the_firmware_gives_the_same_reasons_in_micropython(mpvm: MicroPythonVM) -> None:
    """The very check the hosts ran, on the board: the same verdict and words for each config (MicroPython's json
    has no Infinity/NaN, so the values are built in the VM)."""
    configs = [json.loads(text) for text, _ in BAD]
    code = ("from pgt.firmware import board\n"
            "inf = float('inf')\n"
            "for given in %s:\n"
            "    given['board'] = 'rp2'\n"
            "    try:\n"
            "        board.check(board.resolve(given))\n"
            "        print('ok')\n"
            "    except ValueError as exc:\n"
            "        print(exc)\n"
            "print(board.check(board.resolve({'board': 'esp32'}))['name'])\n"
            % repr(configs).replace("nan", "(inf - inf)"))
    got = mpvm.run(code).splitlines()
    want = [reason.replace("Infinity", "inf").replace("NaN", "nan") for _, reason in BAD] + ["esp32-builtin"]
    assert got == want


def test_a_good_config_passes_and_resolve_checks_types_before_using_them() -> None:
    cfg = board.check(board.resolve({"board": "rp2", "limit_hi": [4095, 4095], "dac_mA_offset": -1.5}))
    assert cfg["limit_hi"] == [4095, 4095]
    with pytest.raises(ValueError, match="dac_bits must be an integer, not \"12\""):
        board.resolve({"board": "rp2", "dac_bits": "12"})  # would fail deep inside (1 << "12") otherwise


def test_the_virtual_board_survives_a_bad_board_json_and_locks_its_filesystem(tmp_path: Path) -> None:
    """The board's host side keeps its ring (the firmware reports the config itself) instead of dying at every boot;
    a second board on the same directory is refused while the first runs, and welcome after it stopped."""
    from pgt.sim.virtual_board import FsInUse, VirtualBoard

    (tmp_path / "board.json").write_text('{"dac_mA_per_code": Infinity}')
    vb = VirtualBoard(fs=tmp_path)
    try:
        ring = vb.ring
        vb._wire()  # what each boot does first
        assert vb.ring is ring
        with pytest.raises(FsInUse, match="another virtual board"):
            VirtualBoard(fs=tmp_path)
    finally:
        vb.stop()
    VirtualBoard(fs=tmp_path).stop()
