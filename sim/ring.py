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

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DriveShapeError",
    "RingParams",
    "Ring",
    "RingReservoir",
    "make_ring_reservoir",
]

_LN10_10 = np.log(10.0) / 10.0  # d(G)/d(G_dB) = G * ln(10)/10
_WINDOW = 10  # mode-hop steps evaluated around h (+-5 spacings: sigmoid(-60) ~ 1e-26 at sharpness 12)


class DriveShapeError(ValueError):
    """A drive block (or gradient block) of the wrong shape or with non-finite values."""


@dataclass(frozen=True)
class RingParams:
    """Every parameter of the ring model in one place, with the source of each default."""

    # --- channels and drive limits -------------------------------------------------------------------
    # The defaults are the default rp2 board's (firmware/board.py; pgt.sim.boards.ring_params derives them
    # from any board config): 2 PWM drive channels (gain control and bias coil), 3 ADC taps, and the drive
    # range of the board's safe code range 0..2047 at 100/4095 mA per code (its current sources give 100 mA
    # at full scale: what a small op-amp/transistor stage delivers to a bias coil, ~0.5 mT, without heating).
    n_inputs: int = 2  # drive channels: DAC/PWM current sources (rp2 board: GP16, GP17)
    n_outputs: int = 3  # detector taps read by the ADC (rp2 board: ADC0..ADC2)
    drive_low_mA: float = 0.0  # unipolar current source (a DAC into a V->I stage) cannot sink
    drive_high_mA: float = 2047 * 100.0 / 4095  # rp2 board: safe limit 2047 of 4095 codes (half scale)

    # --- loop gain (level A) -------------------------------------------------------------------------
    threshold_gain: float = 1.0  # auto-oscillation starts at round-trip power gain 1 (docs/ring-model.md)
    # per-tap small-signal loop gain at mid drive, uniform in [low, high] dB. Typical: rings are operated
    # within ~1-2 dB of threshold (Watt & Kostylev 2020)
    bias_db_low: float = -0.5
    bias_db_high: float = 1.5
    gain_span_db: float = 3.0  # loop-gain change per unit of the gain-control mix (std of mix ~0.58): typical
    # VGA control ranges are 10-30 dB; a few dB of it spans below-threshold..saturation, as used here
    coil_modes_span: float = 3.0  # std of the coil mix, in ring-mode spacings: mode spacing 1/tau_rt ~ 5 MHz
    # (tau_rt ~ 200 ns, Watt & Kostylev 2020), gamma/2pi = 28 GHz/T, so ~0.18 mT per mode; a small coil
    # giving ~0.5 mT moves the comb by ~3 modes
    passband_modes: float = 10.0  # half-width of the YIG delay-line passband in mode spacings (~50 MHz):
    # typical transmission bands of 20-100 MHz (Watt & Kostylev 2020, Anderson et al. 2022)
    passband_db: float = 1.0  # gain lost at +-passband_modes from the passband centre (typical)
    detune_db: float = 0.3  # gain lost by the selected mode half a spacing off its 2-pi condition (typical)
    ripple_db: float = 0.4  # std of per-mode transmission ripple (steps at mode hops): YIG delay lines show
    # ~1 dB ripple from antenna reflections / multiple spin-wave modes (Anderson et al. 2022)
    mode_step_sharpness: float = 12.0  # sigmoid slope per mode spacing for the smoothed staircase (model
    # choice: steep enough to look like hops, smooth enough for an exact, finite Jacobian)
    threshold_sharpness: float = 60.0  # softplus sharpness in units of (G0 - 1) (model choice, see above)
    hysteresis_band: float = 0.02  # bistable band below threshold, in G0: typical few-% subcritical
    # behaviour of active rings from nonlinear spin-wave damping (Kalinikos/Ustinov active-ring papers)

    # --- power and detector --------------------------------------------------------------------------
    p_eff_mW: float = 1.0  # detector power per unit excess gain: amplifier P1dB ~ +20 dBm through a -20 dB
    # coupler gives ~1 mW at the detector (typical microwave amplifier/coupler figures)
    p_sat_mW: float = 2.0  # amplifier compression referred to the detector (typical, as above)
    kappa_V_per_mW: float = 1.0  # zero-bias Schottky detector ~0.5 V/mW (datasheet typical) x2 video amp
    v_sat: float = 2.0  # detector + video amplifier compress towards ~2 V (typical)
    v_offset: float = 0.02  # detector/op-amp offset so read noise at zero signal is not clipped (typical)

    # --- noise, drift, ADC ---------------------------------------------------------------------------
    read_noise_V: float = 0.005  # detector noise per ADC read, white (pgt.sim.adc adds it with the converter's
    # own noise); 20 log10(0.5 V / 5 mV) = 40 dB SNR, mid of 30-50 dB (docs/ring-model.md)
    gain_noise_rel: float = 0.005  # multiplicative noise per query (typical amplifier gain jitter, 0.5 %)
    drift_rel_per_min: float = 0.003  # random walk of G0: RMS 0.3 %/min (docs/ring-model.md: 0.1-1 %/min)
    settle_s: float = 1e-3  # device seconds per forward row: coil and ring settle in 0.1-10 ms (docs/ring-model.md)

    # --- level B: virtual-node round-trip map (see pgt.sim.ring_memory) ------------------------------
    # Envelope units: |a|^2 = 1 is the amplifier's saturation power. The five marked (*) were tuned together
    # so that STM ~ 4.7 and PC ~ 1.6 (measured by Watt & Kostylev 2020-21: STM 4.68-4.77, PC 1.47-1.74).
    b_nodes: int = 32  # virtual nodes per round trip (Watt et al. 2021 use tens of nodes)
    b_loop_gain: float = 0.95  # (*) small-signal round-trip amplitude gain, delay-line loss included:
    # just below threshold, memory ~ 1/(1 - g) round trips (less once the amplifier compresses)
    b_phase: float = 0.7  # round-trip carrier phase offset in rad (any value; sets interference of steps)
    b_nl_phase: float = 5.0  # (*) nonlinear phase per round trip per unit |a|^2: spin-wave self-phase
    # modulation reaches several rad at high power in active rings (soliton formation, Kalinikos et al.)
    b_nl_loss: float = 0.3  # (*) nonlinear loss per unit |a|^2 (four-magnon scattering; typical)
    b_p_sat: float = 1.0  # amplifier saturation |s|^2 (defines the envelope unit)
    b_coupling: float = 0.6  # (*) fraction mixed in from the previous node: the node length is shorter
    # than the amplifier/YIG response time (finite bandwidth), as in Watt et al. 2021
    b_input_scale: float = 0.8  # (*) amplitude of the injected masked input, in envelope units
    b_input_bias: float = 0.5  # carrier injected with the input, so the square-law readout sees it linearly
    b_amp_noise: float = 0.003  # amplifier noise per node per round trip (envelope units; ~40-50 dB SNR)
    b_read_noise: float = 0.003  # detector noise on |a|^2 (envelope units; ~40 dB SNR, docs/ring-model.md)
    b_volts_per_unit: float = 2.0  # detector volts per unit |a|^2 in forward(): the amplifier's largest
    # output, |a|^2 = g^2/4 ~ 0.23 at the peak of g s/(1+|s|^2), reads ~0.45 V, inside the detector's
    # square-law range like level A's outputs (kappa, v_sat above)

    def __post_init__(self) -> None:
        if self.n_inputs < 1 or self.n_outputs < 1:
            raise ValueError("the ring needs at least one drive channel and one output")
        if not self.drive_high_mA > self.drive_low_mA:
            raise ValueError("drive_high_mA must exceed drive_low_mA")
        if self.b_nodes < 1:
            raise ValueError("level B needs at least one virtual node")
        for name in (
            "hysteresis_band",
            "read_noise_V",
            "gain_noise_rel",
            "drift_rel_per_min",
            "b_amp_noise",
            "b_read_noise",
            "settle_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")

    def noise_free(self) -> RingParams:
        """A copy with every noise, drift and hysteresis switched off (a pure function)."""
        return dataclasses.replace(
            self,
            hysteresis_band=0.0,
            read_noise_V=0.0,
            gain_noise_rel=0.0,
            drift_rel_per_min=0.0,
            b_amp_noise=0.0,
            b_read_noise=0.0,
        )

    @property
    def is_noise_free(self) -> bool:
        """True if the map is a deterministic, history-free function (level A) of the drive."""
        return (
            self.hysteresis_band == 0.0
            and self.read_noise_V == 0.0
            and self.gain_noise_rel == 0.0
            and self.drift_rel_per_min == 0.0
            and self.b_amp_noise == 0.0
            and self.b_read_noise == 0.0
        )


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
            from .ring_memory import VirtualNodeRing

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


class RingReservoir:
    """The noise-free reference: a :class:`pgt.reservoir.Reservoir` that calls a :class:`Ring` directly (in
    process, counts queries) and offers its exact ``vjp`` — the backpropagation reference estimator's device.

    Noisy simulated queries do not come here: they go through the firmware's Core and the simulated board
    (:func:`make_ring_reservoir` returns :class:`pgt.sim.device.SimDevice` for them), where the ADC adds read
    noise and quantises. ``vjp`` is exact when the ring is noise-free; on a noisy ring it raises unless
    ``allow_model_vjp`` is set, in which case it returns the vjp of the ring's noise-free mean map (a digital
    twin's gradient). ``volts`` is the (low, high) range of the board's ADC, reported in ``info``.
    """

    def __init__(self, ring: Ring, allow_model_vjp: bool = False, volts: tuple[float, float] = (0.0, 3.3)) -> None:
        self.ring = ring
        self.n_inputs = ring.n_inputs
        self.n_outputs = ring.n_outputs
        self.drive_low = ring.drive_low.copy()
        self.drive_high = ring.drive_high.copy()
        self.queries = 0
        self.device_seconds = 0.0
        self.allow_model_vjp = allow_model_vjp
        self.volts = (float(volts[0]), float(volts[1]))

    @property
    def exact_vjp(self) -> bool:
        """True if ``vjp`` is the exact gradient of ``forward``."""
        return self.ring.level == "A" and self.ring.params.is_noise_free

    @property
    def info(self) -> dict[str, Any]:
        p = self.ring.params
        return {
            "kind": "sim-ring",
            "level": self.ring.level,
            "seed": self.ring.seed,
            "n_inputs": self.n_inputs,
            "n_outputs": self.n_outputs,
            "noise_free": p.is_noise_free,
            "exact_vjp": self.exact_vjp,
            "settle_s": self.ring.settle_s,
            "volts_low": self.volts[0],
            "volts_high": self.volts[1],
            "params": dataclasses.asdict(self.ring.params),
        }

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Drive with ``x`` (n, n_inputs) mA; return volts (n, n_outputs); counts n queries."""
        y = self.ring.forward(x)
        n = y.shape[0]
        self.queries += n
        self.device_seconds += n * self.ring.settle_s
        return y

    def state(self) -> dict[str, Any]:
        return self.ring.state()

    def load_state(self, state: dict[str, Any]) -> None:
        self.ring.load_state(state)

    def vjp(self, x: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
        """Return d<grad_y, forward(x)>/dx, shape (n, n_inputs); not a query."""
        if not (self.exact_vjp or (self.allow_model_vjp and self.ring.level == "A")):
            raise ValueError("this ring is not noise-free (level A): its forward map has no exact vjp")
        return self.ring.vjp(x, grad_y)


def make_ring_reservoir(seed: int = 0, level: str = "A", noise_free: bool = False, *, board: str | None = None,
                        channels: tuple[int, int] | None = None, config: str | dict[str, Any] | None = None
                        ) -> Any:
    """The simulated device of a board's shape (default: the rp2 board, 2 drives and 3 taps; ``board``,
    ``channels`` and ``config`` as in :func:`pgt.sim.boards.board_config`) as a Reservoir.

    ``noise_free``: the :class:`RingReservoir` reference (exact vjp, no ADC). Otherwise a
    :class:`pgt.sim.device.SimDevice`: every query through the firmware's Core and the simulated board's HAL.
    """
    from .boards import board_config, ring_params
    from .device import SimDevice, make_core

    if not noise_free:
        return SimDevice(make_core(seed=seed, level=level, board=board, channels=channels, config=config))
    cfg = board_config(board, channels, config)
    lo = float(cfg["adc_V_offset"])
    ring = Ring(ring_params(cfg).noise_free(), seed=seed, level=level)
    return RingReservoir(ring, volts=(lo, lo + 0xFFFF * float(cfg["adc_V_per_code"])))
