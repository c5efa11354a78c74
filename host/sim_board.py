"""The simulated board in process, opened from arguments rather than a URL: the one in-process simulated device.

:func:`open_sim_board` is a :class:`pgt.client.RingClient` over :class:`pgt.link.InProcessLink`, as
``pgt.device.open_device("sim://?seed=1&board=wide")`` is: every query is a ``run`` request the firmware's own Core
answers (DESIGN principle 1), through the same client code a real board is driven by. Drive outside the board's
safe range is clipped (``out_of_range="clip"``), as a trainer wants; the link's URL names the board, so a run
recorded on it reopens it (a ``config`` given as a dict is the exception: its keys are not in the URL).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pgt.client import RingClient
from pgt.device_files import file_hashes
from pgt.link import InProcessLink

__all__ = ["open_sim_board", "sim_url"]


def sim_url(seed: int = 0, level: str = "A", noise_free: bool = False, *, board: str | None = None,
            channels: tuple[int, int] | None = None, config: str | None = None) -> str:
    """The ``sim://`` URL of these options (the keys of :mod:`pgt.sim.url`)."""
    query: dict[str, Any] = {"seed": seed, "model": level}
    if noise_free:
        query["noise_free"] = 1
    if board is not None:
        query["board"] = board
    if channels is not None:
        query["channels"] = f"{channels[0]},{channels[1]}"
    if config is not None:
        query["config"] = config
    return "sim://?" + urlencode(query, safe=",/")


def open_sim_board(seed: int = 0, level: str = "A", noise_free: bool = False, *, board: str | None = None,
                   channels: tuple[int, int] | None = None, config: str | dict[str, Any] | None = None
                   ) -> RingClient:
    """The simulated board of a board's shape (default: the rp2 board, 2 drives and 3 taps; ``board``,
    ``channels`` and ``config`` as in :func:`pgt.sim.boards.board_config`), in process, as a RingClient.
    ``noise_free`` switches off noise, drift and hysteresis (the ADC still quantises)."""
    if isinstance(config, dict):
        from pgt.sim.device import make_core

        url = sim_url(seed, level, noise_free, board=board, channels=channels)
        core = make_core(seed=seed, level=level, noise_free=noise_free, board=board, channels=channels,
                         config=config, files=file_hashes())
        return RingClient(InProcessLink(url, core=core), out_of_range="clip")
    url = sim_url(seed, level, noise_free, board=board, channels=channels, config=config)
    return RingClient(InProcessLink(url), out_of_range="clip")
