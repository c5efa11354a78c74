"""Numpy model of the magnonic auto-oscillation ring (background and sources: docs/ring-model.md).

Level A (default) is the quasi-static map from drive currents (mA) to detector voltages (V): each output is
one detector tap that sees one ring mode group with its own (seeded, random) mixing of the drive channels into
loop gain (amplifier gain control) and bias field (coil). Per output ``j``, in dB of round-trip power gain::

    G0_dB = bias_j + gain_span_db * s_j - passband_db * ((h_j - hc_j) / passband_modes)**2
            - detune_db * sin(pi h_j)**2 + ripple_j(round(h_j)) + drift_j

with ``s = z @ Wg.T`` (gain-control mix), ``h = z @ Wh.T + h0`` (coil field in units of the mode spacing) and
``z`` the drive scaled to [-1, 1]. The 2-pi phase condition selects the mode nearest the passband centre;
``round(h)`` is a sum of steep sigmoids (a smoothed staircase, slope ``mode_step_sharpness`` per mode
spacing), so a coil sweep gives step-like mode hops and the noise-free map stays differentiable. Above
threshold (``G0 > 1``) the steady power is ``P = P_eff e / (1 + P_eff e / P_sat)`` with excess ``e`` a
softplus of ``G0 - 1`` (sharpness ``threshold_sharpness``: a smoothed kink, ~1e-6 of P_eff below
threshold). The detector is square law at low power and compresses at high power:
``V = V_off + V_sat tanh(kappa P / V_sat)``. Then multiplicative gain noise (per query). The detector's read
noise and the ADC (quantisation, the converter's own noise) are the board's: :mod:`pgt.sim.adc` models them,
once, for every simulated board; ``forward`` returns the detector volts before them. Drift is a random
walk of ``G0`` (in dB) that evolves with the simulated device clock (``settle_s`` per forward row).
Hysteresis: with a band ``hb > 0`` the ring, once oscillating, stays on (with excess ``G0 - 1 + hb``)
until ``G0 < 1 - hb``; off, it starts only at ``G0 > 1``.

Taps. Each of the m detector taps sees its own mode group (its own row of the mixes ``Wg``, ``Wh``, its own
passband centre, ripple and bias): the taps are distinct nonlinear features of the ring, not copies. So that
every tap responds on a board with few drive channels (the default rp2 board: k = 2 drives, m = 3 taps),
each row of ``Wg`` and ``Wh`` is scaled to the norm its N(0, 1/k) entries have on average (``sqrt(k)`` times
the entry scale), so a tap's loop gain always spans about ``gain_span_db`` dB and its coil field about
``coil_modes_span`` mode spacings over the drive range; the rows' directions stay random.

Shape. ``n_inputs`` / ``n_outputs`` and the drive range are the board's (:mod:`pgt.sim.boards` derives them
from the firmware's board config: the default rp2 board drives 2 channels over its safe range of 0..50 mA and
reads 3 taps); the named "wide" board is the 16-drive, 32-tap ring.

Level B (``level="B"``) is the time-multiplexed virtual-node round-trip map of :mod:`pgt.sim.ring_memory`;
``forward`` treats each row as one input step (one round trip) of a running series (the state persists
across calls, so it is history-dependent and has no vjp) and reads node powers through the detector
(``v_offset + b_volts_per_unit |a|^2``): tap j reads node ``j * b_nodes // n_outputs`` (taps at different
times of the round trip); ``run_series`` returns the powers of all nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ring_memory import VirtualNodeRing
from .ring_params import DriveShapeError, RingParams

__all__ = ["DriveShapeError", "RingParams", "Ring"]

_LN10_10 = np.log(10.0) / 10.0  # d(G)/d(G_dB) = G * ln(10)/10
_WINDOW = 10  # mode-hop steps evaluated around h (+-5 spacings: sigmoid(-60) ~ 1e-26 at sharpness 12)


def _unit_rows(w: np.ndarray) -> np.ndarray:
    return np.asarray(w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@dataclass
class _Mixing:
    """The seeded random structure of one ring (level A)."""

    wg: np.ndarray  # (m, k) gain-control mix
    wh: np.ndarray  # (m, k) coil mix (mode spacings per unit z)
    h0: np.ndarray  # (m,) coil offset
    hc: np.ndarray  # (m,) passband centre
    bias_db: np.ndarray  # (m,)
    ripple: np.ndarray  # (m, K+1) per-mode transmission ripple in dB
    k_lo: int  # lowest mode index represented
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) half-integer step positions
    dripple: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (m, K) ripple change per hop


def _make_mixing(p: RingParams, rng: np.random.Generator) -> _Mixing:
    m, k = p.n_outputs, p.n_inputs
    # Random directions, rows of norm 1 (gain) and sqrt(3) coil_modes_span (coil): for uniform z in [-1, 1]^k
    # each tap's gain mix has std 1/sqrt(3) and its coil field std coil_modes_span, whatever k is.
    wg = _unit_rows(rng.normal(0.0, 1.0, size=(m, k)))
    wh = np.sqrt(3.0) * p.coil_modes_span * _unit_rows(rng.normal(0.0, 1.0, size=(m, k)))
    h0 = rng.uniform(-0.5, 0.5, size=m)
    hc = rng.uniform(-0.5 * p.passband_modes, 0.5 * p.passband_modes, size=m) * 0.3
    bias_db = rng.uniform(p.bias_db_low, p.bias_db_high, size=m)
    reach = np.abs(h0) + np.abs(wh).sum(axis=1)  # |h| can never exceed this
    k_max = int(np.ceil(reach.max())) + 1
    k_lo = -k_max
    steps = np.arange(k_lo, k_max) + 0.5  # K steps between modes k_lo .. k_max
    ripple = rng.normal(0.0, p.ripple_db, size=(m, steps.size + 1))
    dripple = np.diff(ripple, axis=1)
    return _Mixing(wg=wg, wh=wh, h0=h0, hc=hc, bias_db=bias_db, ripple=ripple, k_lo=k_lo, steps=steps, dripple=dripple)


class Ring:
    """The simulated ring: ``forward(drive_mA (n, k)) -> volts (n, m)``, seeded and vectorised.

    Each forward row advances the simulated device clock by ``settle_s``; drift evolves with that clock.
    ``vjp`` is the exact vector-Jacobian product of the noise-free (mean) level-A map at the current drift
    state; it is the exact gradient of ``forward`` only when ``params.is_noise_free``.
    """

    def __init__(self, params: RingParams | None = None, seed: int = 0, level: str = "A") -> None:
        if level not in ("A", "B"):
            raise ValueError(f"level must be 'A' or 'B', got {level!r}")
        self.params = params if params is not None else RingParams()
        self.seed = seed
        self.level = level
        p = self.params
        structure_rng, self._noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        self._mix = _make_mixing(p, structure_rng)
        self.n_inputs = p.n_inputs
        self.n_outputs = p.n_outputs
        self.drive_low = np.full(p.n_inputs, p.drive_low_mA)
        self.drive_high = np.full(p.n_inputs, p.drive_high_mA)
        self.settle_s = p.settle_s
        self.clock_s = 0.0
        self._drift_db = np.zeros(p.n_outputs)
        self._on = np.zeros(p.n_outputs, dtype=bool)  # hysteresis state per tap
        self._b: Any = None
        if level == "B":
            self._b = VirtualNodeRing(p, structure_rng, self._noise_rng)
            self._taps = np.arange(p.n_outputs) * p.b_nodes // p.n_outputs

    # ---------------------------------------------------------------------------------------------------
    def _check(self, x: np.ndarray, width: int, what: str) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise DriveShapeError(f"{what} must have shape (n, {width}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise DriveShapeError(f"{what} contains NaN or infinite values")
        return arr

    def normalise(self, drive_mA: np.ndarray) -> np.ndarray:
        """Clip the drive to its limits and scale it to z in [-1, 1]."""
        lo, hi = self.drive_low, self.drive_high
        return 2.0 * (np.clip(drive_mA, lo, hi) - lo) / (hi - lo) - 1.0

    def loop_gain(self, drive_mA: np.ndarray) -> np.ndarray:
        """Small-signal round-trip power gain G0 per tap (n, m) at the current drift state (level A)."""
        x = self._check(drive_mA, self.n_inputs, "drive block")
        return np.asarray(self._mean_map(self.normalise(x), self._drift_db[None, :])["g0"])

    def _mean_map(self, z: np.ndarray, drift_db: np.ndarray, want_grad: bool = False) -> dict[str, np.ndarray]:
        """Noise-free level-A map from z (n, k); returns intermediates (and local derivatives)."""
        p, mx = self.params, self._mix
        s = z @ mx.wg.T
        h = z @ mx.wh.T + mx.h0
        # Smoothed staircase ripple(h) = r_0 + sum_k sigmoid(beta (h - step_k)) (r_{k+1} - r_k). Steps more
        # than _WINDOW/2 mode spacings away are exactly 0 or 1 in float64 at the default sharpness, so only a
        # window of steps around h is evaluated (the ones below it telescope into r_lo).
        win = min(_WINDOW, mx.steps.size)
        lo = np.floor(h - mx.steps[0]).astype(np.intp) - win // 2 + 1
        lo = np.clip(lo, 0, mx.steps.size - win)
        cols = lo[..., None] + np.arange(win)  # (n, m, W) step indices
        rows = np.arange(h.shape[1])[None, :, None]
        dr = mx.dripple[rows, cols]  # (n, m, W)
        sig = _sigmoid(p.mode_step_sharpness * (h[..., None] - mx.steps[cols]))
        ripple = mx.ripple[np.arange(h.shape[1])[None, :], lo] + np.sum(sig * dr, axis=-1)
        u = (h - mx.hc) / p.passband_modes
        sin_ph = np.sin(np.pi * h)
        g_db = mx.bias_db + p.gain_span_db * s - p.passband_db * u**2 - p.detune_db * sin_ph**2 + ripple + drift_db
        g0 = np.exp(_LN10_10 * g_db)
        out: dict[str, np.ndarray] = {"s": s, "h": h, "g_db": g_db, "g0": g0}
        if want_grad:
            dripple_dh = p.mode_step_sharpness * np.sum(sig * (1.0 - sig) * dr, axis=-1)
            dgdb_dh = (
                -2.0 * p.passband_db * u / p.passband_modes
                - p.detune_db * 2.0 * sin_ph * np.cos(np.pi * h) * np.pi
                + dripple_dh
            )
            out["dgdb_ds"] = np.full_like(s, p.gain_span_db)
            out["dgdb_dh"] = dgdb_dh
        return out

    def _power_volts(self, excess: np.ndarray, want_grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Excess gain -> detector volts (noise-free), and dV/d(excess) if asked."""
        p = self.params
        b = p.threshold_sharpness
        e = _softplus(b * excess) / b
        pe = p.p_eff_mW * e
        power = pe / (1.0 + pe / p.p_sat_mW)
        t = np.tanh(p.kappa_V_per_mW * power / p.v_sat)
        v = p.v_offset + p.v_sat * t
        if not want_grad:
            return v, None
        de = _sigmoid(b * excess)
        dp_dpe = 1.0 / (1.0 + pe / p.p_sat_mW) ** 2
        dv = (1.0 - t**2) * p.kappa_V_per_mW * dp_dpe * p.p_eff_mW * de
        return v, dv

    # ---------------------------------------------------------------------------------------------------
    def forward(self, drive_mA: np.ndarray) -> np.ndarray:
        """Drive with a block (n, n_inputs) of currents in mA; return detector volts (n, n_outputs), before
        the detector's read noise and the ADC (:mod:`pgt.sim.adc`)."""
        x = self._check(drive_mA, self.n_inputs, "drive block")
        n = x.shape[0]
        p = self.params
        if self._b is not None:
            powers = np.asarray(self._b.forward(self.normalise(x)))
            self.clock_s += n * self.settle_s
            return np.asarray(p.v_offset + p.b_volts_per_unit * powers[:, self._taps])
        drift = self._advance_drift(n)
        mm = self._mean_map(self.normalise(x), drift)
        g0 = mm["g0"]
        excess = g0 - p.threshold_gain
        if p.hysteresis_band > 0.0 and n > 0:
            on = self._hysteresis_state(g0)
            excess = np.where(on, excess + p.hysteresis_band, -np.inf)
            excess = np.maximum(excess, -1e3)
        v, _ = self._power_volts(excess)
        if p.gain_noise_rel > 0.0:
            v = p.v_offset + (v - p.v_offset) * (1.0 + p.gain_noise_rel * self._noise_rng.standard_normal(v.shape))
        self.clock_s += n * self.settle_s
        return np.asarray(v)

    def idle(self, seconds: float) -> None:
        """Let simulated device time pass without a query (the drift keeps walking)."""
        if seconds < 0:
            raise ValueError("idle time must be non-negative")
        p = self.params
        if p.drift_rel_per_min > 0.0 and seconds > 0:
            sigma = self._drift_sigma_db(seconds)
            step = np.sqrt(0.5) * self._noise_rng.standard_normal() + np.sqrt(0.5) * self._noise_rng.standard_normal(
                p.n_outputs
            )
            self._drift_db = self._drift_db + sigma * step
        self.clock_s += seconds

    def gain_axis(self, tap: int) -> np.ndarray:
        """A drive direction (mA, max |entry| = 1) that raises tap's loop gain without moving its coil field.

        Useful for threshold and hysteresis sweeps: ``mid + t * axis`` for t in a mA range.
        """
        mx = self._mix
        wg, wh = mx.wg[tap], mx.wh[tap]
        v = wg - (wg @ wh) / (wh @ wh) * wh
        v = v * (self.drive_high - self.drive_low) / 2.0  # back from z to mA per unit z
        return np.asarray(v / np.abs(v).max())

    def coil_axis(self, tap: int) -> np.ndarray:
        """A drive direction (mA, max |entry| = 1) that moves tap's coil field without moving its gain control.

        A sweep along it shows the mode hops: ``mid + t * axis`` for t in a mA range.
        """
        mx = self._mix
        wg, wh = mx.wg[tap], mx.wh[tap]
        v = wh - (wh @ wg) / (wg @ wg) * wg
        v = v * (self.drive_high - self.drive_low) / 2.0
        return np.asarray(v / np.abs(v).max())

    def coil_field(self, drive_mA: np.ndarray) -> np.ndarray:
        """Coil field per tap (n, m) in ring-mode spacings; the oscillating mode is its nearest integer."""
        x = self._check(drive_mA, self.n_inputs, "drive block")
        return np.asarray(self.normalise(x) @ self._mix.wh.T + self._mix.h0)

    def _drift_sigma_db(self, seconds: float) -> float:
        """RMS drift of G0 in dB over ``seconds`` (random walk)."""
        p = self.params
        return float(10.0 * np.log10(1.0 + p.drift_rel_per_min) * np.sqrt(seconds / 60.0))

    def _advance_drift(self, n: int) -> np.ndarray:
        """Drift (dB) for each of n rows, advancing the random walk by settle_s per row."""
        p = self.params
        m = self.params.n_outputs
        if p.drift_rel_per_min <= 0.0 or n == 0:
            return np.broadcast_to(self._drift_db, (n, m))
        # RMS relative change of G0 per minute -> dB per row; half common (temperature), half per tap.
        sigma = self._drift_sigma_db(self.settle_s)
        common = self._noise_rng.standard_normal((n, 1))
        own = self._noise_rng.standard_normal((n, m))
        steps = sigma * (np.sqrt(0.5) * common + np.sqrt(0.5) * own)
        walk = self._drift_db + np.cumsum(steps, axis=0)
        self._drift_db = walk[-1].copy()
        return walk

    def _hysteresis_state(self, g0: np.ndarray) -> np.ndarray:
        """Oscillating (True) or not per row and tap: on above threshold, off below threshold - band,
        otherwise as it was (forward-filled over the block, vectorised)."""
        p = self.params
        n = g0.shape[0]
        up = g0 > p.threshold_gain
        down = g0 < p.threshold_gain - p.hysteresis_band
        decided = up | down
        idx = np.where(decided, np.arange(n)[:, None], -1)
        last = np.maximum.accumulate(idx, axis=0)  # last deciding row so far, -1 if none
        state = np.where(last >= 0, up[np.maximum(last, 0), np.arange(g0.shape[1])], self._on[None, :])
        self._on = state[-1].copy()
        return np.asarray(state)

    def vjp(self, drive_mA: np.ndarray, grad_volts: np.ndarray) -> np.ndarray:
        """Exact ``d<grad_volts, V(drive)>/d drive`` (n, n_inputs) of the noise-free level-A map.

        Zero for channels beyond their limits (clipping gives flat regions); at a limit itself the one-sided
        interior derivative is returned. Does not advance the clock and is not a query.
        """
        if self.level != "A":
            raise NotImplementedError("vjp is available for level A only")
        x = self._check(drive_mA, self.n_inputs, "drive block")
        gy = self._check(grad_volts, self.n_outputs, "gradient block")
        if gy.shape[0] != x.shape[0]:
            raise DriveShapeError(f"gradient block has {gy.shape[0]} rows, drive block {x.shape[0]}")
        p, mx = self.params, self._mix
        mm = self._mean_map(self.normalise(x), self._drift_db[None, :], want_grad=True)
        g0 = mm["g0"]
        _, dv_dex = self._power_volts(g0 - p.threshold_gain, want_grad=True)
        assert dv_dex is not None
        gdb = gy * dv_dex * g0 * _LN10_10  # dL/dG_dB, (n, m)
        gz = (gdb * mm["dgdb_ds"]) @ mx.wg + (gdb * mm["dgdb_dh"]) @ mx.wh
        inside = (x >= self.drive_low) & (x <= self.drive_high)
        return np.asarray(gz * inside * (2.0 / (self.drive_high - self.drive_low)))

    def run_series(self, u: np.ndarray) -> np.ndarray:
        """Level B: run a series ``u`` (T,) or (T, n_inputs), dimensionless in [-1, 1] (not mA), one input
        step per round trip; return the virtual-node powers (T, n_outputs). Advances the clock by settle_s
        per step."""
        if self._b is None:
            raise ValueError("run_series needs level='B'")
        arr = np.asarray(u, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise DriveShapeError("series contains NaN or infinite values")
        out = np.asarray(self._b.run_series(arr))
        self.clock_s += arr.shape[0] * self.settle_s
        return out

    def state(self) -> dict[str, Any]:
        """What evolves (noise generator, clock, drift, hysteresis, level-B nodes) as plain data and arrays."""
        out = {"noise_rng": dict(self._noise_rng.bit_generator.state), "clock_s": self.clock_s,
               "drift_db": self._drift_db.copy(), "on": self._on.copy()}
        if self._b is not None:
            out["nodes"] = self._b.state.copy()
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned, on a ring built with the same parameters, seed and level."""
        self._noise_rng.bit_generator.state = state["noise_rng"]
        self.clock_s = float(state["clock_s"])
        self._drift_db = np.array(state["drift_db"])
        self._on = np.array(state["on"], dtype=bool)
        if self._b is not None:
            self._b.state = np.array(state["nodes"])

    def reset(self) -> None:
        """Back to the initial state (clock, drift, hysteresis, level-B state); the noise stream continues."""
        self.clock_s = 0.0
        self._drift_db = np.zeros(self.params.n_outputs)
        self._on = np.zeros(self.params.n_outputs, dtype=bool)
        if self._b is not None:
            self._b.reset()
