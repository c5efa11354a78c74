"""The ``run`` op: check the block's shape, clamp every drive code to the safe range, drive and sample through the
HAL, count. ``run(core, seq, req)`` is called by ``Core`` with a request ``messages.validate`` accepted.
Runs unchanged on MicroPython (a little-endian machine is assumed: rp2, esp32 and x86 all are).
"""

from array import array

from pgt.protocol import messages as m

from .settings import clamp_block


def run(core, seq, req):
    """The reply to a valid ``run`` request."""
    n = req["n"]
    k = req["k"]
    drive_bytes = req["drive"]
    if k != core.k:
        return core.error(seq, m.E_BAD_SHAPE, "k must be %d" % core.k, m.RUN)
    if n < 1:
        return core.error(seq, m.E_BAD_VALUE, "n must be at least 1", m.RUN)
    if n > core.max_batch:
        return core.error(seq, m.E_TOO_LARGE, "n above max_batch %d" % core.max_batch, m.RUN)
    if len(drive_bytes) != 2 * n * k:
        return core.error(seq, m.E_BAD_SHAPE, "drive must hold n*k uint16 = %d bytes" % (2 * n * k), m.RUN)
    drive = array("H", bytes(drive_bytes))
    clamped = clamp_block(drive, k, core.drive_lo, core.drive_hi)
    core.driving = True
    try:
        samples = core.hal.apply_and_sample(drive, n, core.settle_us, core.n_avg)
    except Exception as e:  # a hardware fault leaves the ring undriven
        core.stop_drive()
        return core.error(seq, m.E_HAL_FAULT, "hal: " + type(e).__name__ + " " + str(e)[:80], m.RUN)
    core.counts["runs"] += 1
    core.counts["vectors"] += n
    core.counts["clamped"] += clamped
    return core.reply(m.RUN, seq, {"n": n, "m": core.m, "samples": samples,
                                    "t_us": core.hal.elapsed_us, "clamped": clamped})
