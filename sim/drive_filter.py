"""The drive path's timing: the filter between a drive write and the ring, and the cost of MicroPython calls.

A board's drive goes through ``filter_order`` equal, buffered RC stages of time constant ``filter_tau_us``
(board config; the rp2 default: PWM into two 1 kohm / 47 nF stages). A drive write steps the filter's input; a
row sampled before the filter has settled reads a mix of the old and the new drive, as on a board. For a
constant input ``c`` over ``dt`` the stages' deviations ``d = x - c`` evolve in closed form::

    d1 <- d1 e^(-dt/tau);   d2 <- (d2 + d1 dt/tau) e^(-dt/tau)

Timeline of one row of a block (what ``firmware/hal_common.BoardHAL.apply_and_sample`` does): write channel
0..k-1 (``write_us`` each), wait ``settle_us``, read m taps ``n_avg`` times (``read_us`` each). Channel j is
sampled ``(k - j) write_us + settle_us`` after its write; consecutive writes of a channel are one row apart.
Between blocks (and before a ``loopback`` read) the filter runs for the wall-clock time that passed.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["DriveFilter", "settle_time_us"]

NEGLIGIBLE = 1e-3  # codes: a residue below this is no drive change at all (a DAC step is 1 code)


def _decay(d: np.ndarray, dt: np.ndarray | float, tau: float) -> np.ndarray:
    """Deviations ``d`` (order, ...) of the stages from a constant input, ``dt`` microseconds later."""
    a = np.exp(-np.asarray(dt, dtype=np.float64) / tau)
    out = np.empty_like(d)
    out[0] = d[0] * a
    if d.shape[0] > 1:
        out[1] = (d[1] + d[0] * np.asarray(dt) / tau) * a
    return out


def residue_bound(order: int, dt_us: float, tau: float) -> float:
    """The largest fraction of a step still unsettled ``dt_us`` after it (any earlier state within the step)."""
    x = dt_us / tau
    return float(np.exp(-x) * (1.0 + x if order > 1 else 1.0))


def settle_time_us(order: int, tau: float, fraction: float) -> float:
    """Time for a step's residue to fall to ``fraction`` of the step (from rest)."""
    lo, hi = 0.0, 200.0 * tau
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if residue_bound(order, mid, tau) > fraction:
            lo = mid
        else:
            hi = mid
    return hi


class DriveFilter:
    """The k drive filters of board config ``cfg`` (codes in, filtered codes out), starting at ``zero_code``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.tau = float(cfg.get("filter_tau_us", 0.0)) or 1e-9
        self.order = int(cfg.get("filter_order", 1))
        if self.order not in (1, 2):
            raise ValueError(f"filter_order must be 1 or 2, not {self.order}")
        self.write_us = float(cfg.get("write_us", 0.0))
        self.read_us = float(cfg.get("read_us", 0.0))
        self.full = float((1 << int(cfg["dac_bits"])) - 1)
        self.input = np.asarray(cfg["zero_code"], dtype=np.float64)
        self.k = self.input.size
        self.state = np.repeat(self.input[None, :], self.order, axis=0)  # per stage, at the last write
        self.at = time.monotonic()

    def row_us(self, settle_us: float, n_avg: int, m: int) -> float:
        """Device time of one row: k writes, the settle wait, m x n_avg reads."""
        return self.k * self.write_us + settle_us + m * n_avg * self.read_us

    def idle(self, now: float | None = None) -> None:
        """Let the filters run (wall clock) up to ``now``."""
        now = time.monotonic() if now is None else now
        dt = max(now - self.at, 0.0) * 1e6
        self.at = now
        if residue_bound(self.order, dt, self.tau) * self.full < NEGLIGIBLE:
            self.state[:] = self.input
        else:
            self.state = self.input + _decay(self.state - self.input, dt, self.tau)

    def set(self, codes: np.ndarray, now: float | None = None) -> None:
        """New inputs at ``now`` (seconds of the filter's clock; default the wall clock)."""
        self.idle(now)
        self.input = np.asarray(codes, dtype=np.float64).copy()

    def output(self, now: float | None = None) -> np.ndarray:
        """The last stage's output at ``now`` (codes, float)."""
        self.idle(now)
        return np.asarray(self.state[-1]).copy()

    def block(self, codes: np.ndarray, settle_us: float, n_avg: int, m: int) -> tuple[np.ndarray, float]:
        """The filtered drive (n, k codes, float) at each row's sample instant, and the block's device time (us)."""
        self.idle()
        codes = np.asarray(codes, dtype=np.float64)
        n = codes.shape[0]
        row = self.row_us(settle_us, n_avg, m)
        to_sample = (self.k - np.arange(self.k)) * self.write_us + settle_us
        if residue_bound(self.order, float(to_sample.min()), self.tau) * self.full < NEGLIGIBLE:
            seen = codes  # every row settled before its sample: the drive is the codes themselves
            self.state[:] = codes[-1]
        else:
            seen = np.empty_like(codes)
            state = self.state
            for i in range(n):
                c = codes[i]
                d = state - c
                seen[i] = c + _decay(d, to_sample, self.tau)[-1]
                state = c + _decay(d, row, self.tau)
            self.state = state
        self.input = codes[-1].copy()
        self.at = time.monotonic()
        return seen, n * row
