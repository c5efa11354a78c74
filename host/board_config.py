"""The board.json that ``pgt flash --config`` writes and ``pgt sim --config`` serves: read, typed, checked.

The keys and their defaults are the firmware's (``pgt.firmware.board``); the consistency check is the one the
firmware runs at boot, so a config refused here would be refused on the board too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgt.errors import UserError

BOARDS = ("rp2", "esp32")


def config_keys() -> set[str]:
    """Every key a board.json may hold (``firmware/board.py``'s ``keys()``)."""
    from pgt.firmware import board as fwboard

    return set(fwboard.keys())


def read_config(path: Path, option: str = "--config") -> dict[str, Any]:
    """The JSON object in the board config file ``path``; UserError if it is unreadable, not a JSON object,
    holds a key the firmware does not know (a misspelt key would otherwise be ignored silently) or a value of
    the wrong type (``pgt.firmware.board.check_given``: the firmware's own check)."""
    from pgt.firmware import board as fwboard

    try:
        cfg = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{option} {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{option} {path}: not JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{option} {path}: expected a JSON object")
    try:
        fwboard.check_given(cfg)
    except ValueError as exc:
        raise UserError(f"{option} {path}: {exc}") from None
    return cfg


def board_config(board: str | None, config_file: Path | None) -> dict[str, Any]:
    """The board.json to write: the file's keys, with ``board`` set from ``--board`` if given; validated."""
    from pgt.firmware import board as fwboard

    cfg: dict[str, Any] = read_config(config_file) if config_file is not None else {}
    if board is not None:
        if cfg.get("board") not in (None, board):
            raise UserError(f"--board {board} contradicts \"board\": {cfg['board']!r} in {config_file}")
        cfg["board"] = board
    kinds = [cfg["board"]] if "board" in cfg else list(BOARDS)  # no board: the device picks by sys.platform
    for kind in kinds:
        try:
            fwboard.check(fwboard.resolve(dict(cfg, board=kind)))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"board config ({kind}): {exc}") from None
    return cfg


