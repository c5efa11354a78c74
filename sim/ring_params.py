"""The ring model's parameters (:class:`RingParams`, every one with the source of its default) and the error
for a drive block of the wrong shape: a leaf module, so the board description, the ring and its level-B map
can all import it (the physics is in :mod:`pgt.sim.ring`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["DriveShapeError", "RingParams"]


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
        if not np.isfinite([self.drive_low_mA, self.drive_high_mA]).all() or self.drive_high_mA <= self.drive_low_mA:
            raise ValueError("the drive range needs finite drive_low_mA < drive_high_mA")
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
