"""What the device tells about itself: the fields of the ``hello``, ``status`` and ``config`` replies.

Each function reads a Core's state and returns a new dict. Runs unchanged on MicroPython.
"""

from pgt.protocol import messages as m

FIRMWARE_VERSION = "0.1.0"

def new_boot_id():
    """A random uint32 naming this boot: os.urandom, xor random, xor the ns clock — whichever the port has
    (a source that fails or is predictable on one port cannot spoil the others)."""
    out = 0
    try:
        import os

        b = os.urandom(4)
        out = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
    except Exception:  # noqa: BLE001 - no urandom, or no entropy source behind it
        pass
    try:
        import random

        out ^= random.getrandbits(32)
    except Exception:  # noqa: BLE001
        pass
    import time

    return (out ^ time.time_ns()) & 0xFFFFFFFF


# HAL info fields that hello passes on unchanged
_FROM_HAL = ("board", "uid", "dac_bits", "adc_bits", "dac_mA_per_code", "dac_mA_offset",
             "adc_V_per_code", "adc_V_offset")


def settings(core):
    """The current acquisition settings (the reply to ``config``, and part of ``hello``)."""
    return {"settle_us": core.settle_us, "n_avg": core.n_avg, "timeout_ms": core.timeout_ms,
            "drive_lo": core.drive_lo, "drive_hi": core.drive_hi}


def hello(core):
    """Who the device is: versions, files, board, channels, calibration, limits, sizes, settings."""
    out = settings(core)
    for key in _FROM_HAL:
        out[key] = core.info[key]
    out["proto"] = m.PROTOCOL_VERSION
    out["fw"] = FIRMWARE_VERSION
    out["files"] = core.files
    out["k"] = core.k
    out["m"] = core.m
    out["limit_lo"] = core.limit_lo
    out["limit_hi"] = core.limit_hi
    out["max_batch"] = core.max_batch
    out["max_frame"] = core.max_frame
    out["frame_timeout_ms"] = core.frame_timeout_ms
    out["poll_ms"] = core.poll_ms
    out["settle_board_us"] = core.info.get("settle_us", 0)  # board.json's settle time (0: none)
    out["settle_min_us"] = core.info.get("settle_min_us", 0)
    return out


def status(core):
    """Counters, uptime, whether the ring is driven, and the serve loop's link counters."""
    out = {"uptime_ms": core.clock() - core.started_ms, "driving": core.driving, "link": core.link}
    for name in core.counts:
        out[name] = core.counts[name]
    loop = getattr(core.hal, "loopback", None)  # drive channel 0's filter output, where a wire brings it back
    if loop is not None:
        out["loopback"] = loop()
    return out
