"""The acquisition settings a host may change: their ranges and defaults, the check of a ``config``
request, and the clamp that keeps every drive code inside the safe range. Runs unchanged on MicroPython.
"""

from pgt.protocol import messages as m

# Configurable ranges (inclusive).
SETTLE_US_MAX = 1000000
N_AVG_MAX = 1024
TIMEOUT_MS_MIN = 50
TIMEOUT_MS_MAX = 600000

DEFAULT_SETTLE_US = 1000
DEFAULT_N_AVG = 4
DEFAULT_TIMEOUT_MS = 2000


def check_config(req, current, limit_lo, limit_hi):
    """Check a config request against the ranges and the board's safe limits.

    ``current`` is (settle_us, n_avg, timeout_ms, drive_lo, drive_hi); fields the request leaves out keep
    their value. Returns (None, new values) or ((error code, message), None): all checks pass or nothing
    changes.
    """
    settle = req.get("settle_us", current[0])
    n_avg = req.get("n_avg", current[1])
    timeout = req.get("timeout_ms", current[2])
    lo = req.get("drive_lo", current[3])
    hi = req.get("drive_hi", current[4])
    if settle > SETTLE_US_MAX:
        return (m.E_BAD_VALUE, "settle_us above %d" % SETTLE_US_MAX), None
    if not 1 <= n_avg <= N_AVG_MAX:
        return (m.E_BAD_VALUE, "n_avg must be 1..%d" % N_AVG_MAX), None
    if not TIMEOUT_MS_MIN <= timeout <= TIMEOUT_MS_MAX:
        return (m.E_BAD_VALUE, "timeout_ms must be %d..%d" % (TIMEOUT_MS_MIN, TIMEOUT_MS_MAX)), None
    k = len(limit_lo)
    if len(lo) != k or len(hi) != k:
        return (m.E_BAD_SHAPE, "drive_lo and drive_hi need %d values" % k), None
    for j in range(k):
        if lo[j] > hi[j]:
            return (m.E_BAD_VALUE, "drive_lo above drive_hi on channel %d" % j), None
        if lo[j] < limit_lo[j] or hi[j] > limit_hi[j]:
            return (m.E_BAD_VALUE, "drive range of channel %d outside the board's safe limits %d..%d"
                    % (j, limit_lo[j], limit_hi[j])), None
    return None, (settle, n_avg, timeout, list(lo), list(hi))


def clamp_block(drive, k, lo, hi):
    """Clamp each channel of the flat (n*k) code block in place to [lo[j], hi[j]]; return how many moved."""
    moved = 0
    total = len(drive)
    for j in range(k):
        a = lo[j]
        b = hi[j]
        for i in range(j, total, k):
            v = drive[i]
            if v < a:
                drive[i] = a
                moved += 1
            elif v > b:
                drive[i] = b
                moved += 1
    return moved
