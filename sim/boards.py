"""Which board the simulator mirrors: the firmware's own board configuration (``pgt.firmware.board``).

``board_config(board, channels, config)`` is the complete, checked config a flashed board would load: the
defaults of ``board`` ("rp2", the default, or "esp32"), then a ``board.json`` file (``config``, the file
``pgt flash --config`` sends; or a dict of its keys), then ``channels=(K, M)`` for experiments (K drive
channels, M taps). The named configuration "wide" is an rp2 with external multi-channel DAC and ADC chips:
16 drives, 32 taps, full-scale safe limits (0..100 mA).
``ring_params(cfg)`` is the ring that board drives: its channel counts, and its drive range in mA is the
board's safe code range through its calibration (the ring is built to be driven over the range the board
may drive it). Errors are :class:`BoardConfigError` (a ValueError) with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from pgt.firmware import board as fw_board
from pgt.units import UnitScale

from .ring_params import RingParams

__all__ = ["BOARDS", "DEFAULT_BOARD", "BoardConfigError", "board_config", "ring_params"]

DEFAULT_BOARD = "rp2"
# Named configurations beyond the firmware's board types: overrides over a firmware board's defaults.
# "wide": external DAC and ADC chips, its current sources checked, so its safe range is the full scale.
NAMED = {"wide": ("rp2", {"name": "wide", "drive_pins": list(range(16)), "adc_pins": list(range(32)),
                          "limit_hi": [4095] * 16})}
BOARDS = tuple(sorted(fw_board.DEFAULTS)) + tuple(NAMED)


class BoardConfigError(ValueError):
    """A board name, channel count or board.json that cannot describe a board."""


def board_config(board: str | None = None, channels: tuple[int, int] | None = None,
                 config: str | dict[str, Any] | None = None) -> dict[str, Any]:
    """The checked board config of ``board`` (default rp2) + ``config`` (a board.json path, or its keys as a
    dict) + ``channels`` (K, M)."""
    given: dict[str, Any] = {}
    if isinstance(config, dict):
        given = dict(config)
    elif config is not None:
        if not os.path.isfile(config):
            raise BoardConfigError(f"{config}: no such board config file")
        try:
            given = dict(fw_board.read_file(config))
        except ValueError as exc:  # json.JSONDecodeError is one
            raise BoardConfigError(f"{config}: not a board config ({exc})") from None
    try:
        fw_board.check_given(given)  # the firmware's own check, as `pgt flash --config` makes it
    except ValueError as exc:
        raise BoardConfigError(f"{config if isinstance(config, str) else 'board config'}: {exc}") from None
    kind = board
    if kind is not None and kind not in BOARDS:
        raise BoardConfigError(f"unknown board {kind!r} (known: {', '.join(BOARDS)})")
    if kind is not None and given.get("board") not in (None, NAMED.get(kind, (kind,))[0]):
        raise BoardConfigError(f"{config} is for board {given['board']!r}, not {kind!r}")
    kind = kind or given.get("board") or DEFAULT_BOARD
    over: dict[str, Any] = {}
    if kind in NAMED:
        kind, over = NAMED[kind][0], dict(NAMED[kind][1])
    over.update(given)
    over["board"] = kind
    if channels is not None:
        k, m = channels
        if not (1 <= k <= 256 and 1 <= m <= 256):
            raise BoardConfigError(f"channels {k},{m}: need 1..256 drive channels and 1..256 taps")
        over["drive_pins"] = list(range(k))
        over["adc_pins"] = list(range(m))
        for key in ("zero_code", "limit_lo", "limit_hi"):  # per-channel lists: widen or cut to k
            if key in over:
                over[key] = [over[key][min(j, len(over[key]) - 1)] for j in range(k)]
    try:
        return dict(fw_board.check(fw_board.resolve(over)))
    except (ValueError, KeyError, TypeError) as exc:
        raise BoardConfigError(f"board config: {exc}") from None


def ring_params(cfg: dict[str, Any], base: RingParams | None = None) -> RingParams:
    """The ring ``cfg``'s board drives: ``base`` (default RingParams()) with the board's channel counts and
    its safe drive range in mA (the lowest ``limit_lo`` to the highest ``limit_hi``, through the calibration)."""
    low, high = UnitScale.from_hello(cfg).drive_range_mA
    return dataclasses.replace(base if base is not None else RingParams(), n_inputs=len(cfg["drive_pins"]),
                               n_outputs=len(cfg["adc_pins"]), drive_low_mA=low, drive_high_mA=high)
