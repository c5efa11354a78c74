"""The settle time a run uses: the board's (``settle_us`` in its board.json, as ``pgt selftest --write`` measured
it) or the firmware's default; a requested one is refused below the board's floor ``settle_min_us``."""

from __future__ import annotations

from typing import Any

from .errors import UserError


def describe(info: dict[str, Any]) -> str:
    """``settle 4.1 ms (measured)`` or ``(default)``, from a device's hello fields; "" if it has none."""
    if "settle_us" not in info:
        return ""
    source = "measured" if int(info.get("settle_board_us") or 0) > 0 else "default"
    return f"settle {int(info['settle_us']) / 1000:.1f} ms ({source})"


def apply(reservoir: Any, settle_us: int) -> None:
    """Configure the device to wait ``settle_us``; UserError (one line) below its ``settle_min_us``."""
    info = dict(getattr(reservoir, "info", {}) or {})
    floor = int(info.get("settle_min_us") or 0)
    if settle_us < floor:
        raise UserError(f"settle_us {settle_us} is below the board's settle_min_us {floor} (its drive has not "
                        "settled by then: rows would mix); use at least that, or run pgt selftest")
    configure = getattr(reservoir, "configure", None)
    if not callable(configure):
        raise UserError("settle_us needs a device with a config op (a board or sim://)")
    configure(settle_us=int(settle_us))
