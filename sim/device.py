"""The simulated board: the firmware's own ``Core`` over a ``SimHAL`` over a board-shaped ``Ring``.

``make_core`` is what every simulated transport serves (in-process ``sim://``, pty, TCP); its shape is a
board's (``pgt.sim.boards``: the default rp2 board, 2 drives and 3 taps, unless ``board``, ``channels`` or a
board.json ``config`` say otherwise). ``files`` is what its ``hello`` reports as the on-device source hashes
(the host passes ``pgt.device_files.file_hashes()``: sim does not import the host package).

In process, a host reaches it as it reaches a real board: a ``pgt.client.RingClient`` over
``pgt.link.InProcessLink`` (``sim://`` URLs; :func:`pgt.sim_board.open_sim_board`).
"""

from __future__ import annotations

import time
from typing import Any

from pgt.firmware.core import Core

from .boards import board_config, ring_params
from .hal import SimHAL
from .ring import Ring

__all__ = ["make_core", "monotonic_ms"]


def monotonic_ms() -> int:
    """Milliseconds of a monotonic clock (never wraps): the Core's clock."""
    return time.monotonic_ns() // 1_000_000


MIN_FRAME = 4096


def make_core(
    seed: int = 0, level: str = "A", noise_free: bool = False, settle: str = "skip", max_frame: int = 1 << 17,
    *, board: str | None = None, channels: tuple[int, int] | None = None, config: str | dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Core:
    """A fresh simulated board: ``Core(SimHAL(Ring(ring_params(cfg), seed, level), cfg), ...)``.

    ``noise_free`` switches off noise, drift and hysteresis (the ADC still quantises); ``settle`` is
    ``"skip"`` (answer at once) or ``"sleep"`` (take the simulated device time of each block). Raises
    :class:`pgt.sim.boards.BoardConfigError` (a ValueError) for a board that cannot be.
    """
    if level not in ("A", "B"):
        raise ValueError(f"model must be A or B, not {level!r}")
    if max_frame < MIN_FRAME:  # smaller cannot hold a hello reply (its file hashes take about 2 KB)
        raise ValueError(f"max_frame must be at least {MIN_FRAME}, got {max_frame}")
    cfg = board_config(board, channels, config)
    params = ring_params(cfg)
    if noise_free:
        params = params.noise_free()
    hal = SimHAL(Ring(params, seed=seed, level=level), settle=settle, cfg=cfg)
    return Core(hal, monotonic_ms, max_frame=max_frame, files=files)
