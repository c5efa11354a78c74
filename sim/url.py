"""``sim://`` URLs: the one parser of the simulated device's options.

``sim://?board=rp2&channels=2,3&seed=0&model=A&noise_free=1`` -> keyword arguments of
:func:`pgt.sim.device.make_core`. Options: ``board`` (rp2, esp32, wide), ``channels`` (K,M), ``config`` (a
board.json path), ``seed``, ``model`` (or ``level``: A or B), ``noise_free`` (0/1), ``settle`` (skip,
sleep), ``max_frame`` (bytes). A URL of another form (``sim:?seed=1``, ``sim://host``) or anything else is a
:class:`SimUrlError` (a ValueError) naming the known ones;
an option given twice (or as both ``model`` and ``level``) is one too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from .boards import BOARDS
from .hal import SETTLE_MODES

__all__ = ["OPTIONS", "SimUrlError", "parse", "channels"]


FORM = "sim:// or sim://?OPTION=VALUE&... (e.g. sim://?seed=1&noise_free=1)"


class SimUrlError(ValueError):
    """A sim:// URL that names an unknown option or gives a bad value."""


def channels(text: str) -> tuple[int, int]:
    """``"K,M"`` -> (K, M) drive channels and taps (each at least 1)."""
    parts = text.replace("x", ",").split(",")
    try:
        k, m = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"channels must be K,M (drives, taps), e.g. 2,3; got {text!r}") from None
    if k < 1 or m < 1:
        raise ValueError(f"channels must be at least 1,1; got {text!r}")
    return k, m


def _level(text: str) -> str:
    level = text.upper()
    if level not in ("A", "B"):
        raise ValueError(f"model must be A or B, not {text!r}")
    return level


def _choice(known: tuple[str, ...]) -> Any:
    def check(text: str) -> str:
        if text not in known:
            raise ValueError(f"{text!r} is not one of {', '.join(known)}")
        return text

    return check


def _flag(text: str) -> bool:
    if text not in ("0", "1", "true", "false"):
        raise ValueError(f"{text!r} is not 0 or 1")
    return text in ("1", "true")


# URL option -> (keyword of make_core, parser of its value)
OPTIONS: dict[str, tuple[str, Any]] = {
    "board": ("board", _choice(BOARDS)),
    "channels": ("channels", channels),
    "config": ("config", str),
    "seed": ("seed", int),
    "model": ("level", _level),
    "level": ("level", _level),
    "noise_free": ("noise_free", _flag),
    "settle": ("settle", _choice(SETTLE_MODES)),
    "max_frame": ("max_frame", int),
}


def parse(url: str) -> dict[str, Any]:
    """``sim://?seed=1&model=B&noise_free=1`` -> keyword arguments of ``pgt.sim.device.make_core``."""
    parts = urlsplit(url)
    if parts.scheme != "sim":
        raise SimUrlError(f"not a simulator URL: {url}")
    if not url.startswith("sim://") or parts.netloc or parts.path or parts.fragment:
        raise SimUrlError(f"malformed simulator URL {url!r}: write {FORM}")
    kwargs: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in OPTIONS:
            raise SimUrlError(f"unknown simulator option {key!r} in {url} (known: {', '.join(OPTIONS)})")
        name, parser = OPTIONS[key]
        if len(values) > 1 or name in given:
            both = key if len(values) > 1 else f"{given[name]} and {key} (the same option)"
            raise SimUrlError(f"simulator option {both} given more than once in {url}: give it once")
        given[name] = key
        try:
            kwargs[name] = parser(values[0])
        except ValueError as exc:
            raise SimUrlError(f"bad value for {key} in {url}: {exc}") from None
    return kwargs
