"""The simulated device: the firmware's own ``Core`` over a ``SimHAL`` over a ``Ring``.

``make_core`` is what every simulated transport serves (in-process ``sim://``, pty, TCP). The ``files`` of
its ``hello`` reply are the hashes of the on-device sources it runs (``pgt.device_files``), as a flashed
board reports its own.
"""

from __future__ import annotations

import hashlib
import time

from pgt.firmware.core import Core

from .hal import SimHAL
from .ring import Ring, RingParams

__all__ = ["make_core", "monotonic_ms", "device_file_hashes"]


def monotonic_ms() -> int:
    """Milliseconds of a monotonic clock (never wraps): the Core's clock."""
    return time.monotonic_ns() // 1_000_000


_HASHES: dict[str, str] | None = None


def device_file_hashes() -> dict[str, str]:
    """On-device path -> sha256 hex of the protocol and firmware sources this process runs."""
    global _HASHES
    if _HASHES is None:
        from pgt.device_files import device_files

        _HASHES = {rel: hashlib.sha256(src.read_bytes()).hexdigest() for rel, src in device_files().items()}
    return dict(_HASHES)


def make_core(
    seed: int = 0, level: str = "A", noise_free: bool = False, settle: str = "skip", max_frame: int = 1 << 17
) -> Core:
    """A fresh simulated board: ``Core(SimHAL(Ring(params, seed, level), settle), monotonic_ms, max_frame)``.

    ``noise_free`` switches off noise, drift and hysteresis (the ADC still quantises); ``settle`` is
    ``"skip"`` (answer at once) or ``"sleep"`` (take the simulated device time of each block).
    """
    params = RingParams()
    if noise_free:
        params = params.noise_free()
    ring = Ring(params, seed=seed, level=level)
    hal = SimHAL(ring, settle=settle)
    return Core(hal, monotonic_ms, max_frame=max_frame, files=device_file_hashes())
