"""The simulated ADC: the only place where read noise and quantisation are modelled.

A board's ADC (``pgt.firmware.board`` config: its calibration ``adc_V_offset``, ``adc_V_per_code`` on the
16-bit ``read_u16`` scale, as :class:`pgt.units.UnitScale` reads it; the converter's resolution ``adc_bits`` and
its ``adc_enob``) reads the ring's detector volts.
Each single read adds white noise and rounds to the converter's grid, then reports the code on the 16-bit
scale as MicroPython's ``read_u16`` does on an RP2040 (``c << 4 | c >> 8`` for 12 bits). The noise per
read is the detector's own read noise (``RingParams.read_noise_V``) and the converter's, from its effective
bits: a converter of N bits and ENOB E over a span S adds ``S / sqrt(12) * sqrt(2**-2E - 2**-2N)`` beyond
its quantisation step (the definition of ENOB). Both are white from read to read, so averaging ``n_avg``
reads lowers them by ``sqrt(n_avg)``.

The RP2040's built-in ADC (board ``rp2``, ``adc`` ``builtin`` on its pins GP26..29) has differential
non-linearity spikes (erratum RP2040-E11; datasheet section 4.9): the raw codes 512, 1536, 2560 and 3584 are
wide. Published correction tables measured on several Picos (kitanokitsune/rp2040adc_correction) jump by 9-12
LSB there; :func:`rp2040_widths` makes each of them ``1 + RP2040_DNL`` LSB wide and the other codes narrower to
keep the span (no missing codes). A single read quantises through those code edges; the mean of dithered reads
follows the piecewise-linear transfer through the code centres (:meth:`ADC.transfer`). The MCP3208 and the
ESP32 are modelled without DNL.

:meth:`ADC.read` gives single reads (the virtual board's ``machine.ADC``); :meth:`ADC.average` the mean of
``n_avg`` reads in closed form (``SimHAL``): with the noise above half an LSB (always so here) the mean of
n dithered reads resolves 1/n of an LSB, ``round(n x) / n``. With ``noise_free`` the ADC only quantises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pgt.units import U16_MAX, UnitScale

__all__ = ["ADC", "rp2040_widths"]

RP2040_SPIKES = (512, 1536, 2560, 3584)
RP2040_ADC_PINS = {26, 27, 28, 29}  # GP26..GP29: the RP2040's ADC inputs
RP2040_DNL = 8.0  # LSB beyond its own width at each spike code (the correction tables' jumps: 9-12 LSB)


def rp2040_widths(bits: int = 12) -> np.ndarray:
    """Width (LSB) of every code 1 .. 2**bits - 2 of an RP2040 ADC: the spike codes wide, the rest narrower."""
    full = (1 << bits) - 1
    w = np.ones(full - 1)
    spikes = [c - 1 for c in RP2040_SPIKES if 0 < c < full]
    w[spikes] += RP2040_DNL
    return np.asarray(w * (full - 1) / w.sum())


class ADC:
    """The ADC of board config ``cfg`` reading a detector with ``read_noise_V`` of its own (per read)."""

    def __init__(self, cfg: dict[str, Any], read_noise_V: float = 0.0, noise_free: bool = False) -> None:
        self.scale = UnitScale.from_hello(cfg)
        self.bits = int(cfg["adc_bits"])
        self.full = (1 << self.bits) - 1
        self.volts_low, self.volts_high = self.scale.volts_low, self.scale.volts_high
        self.span_V = self.volts_high - self.volts_low
        self.lsb_V = self.span_V / self.full
        enob = float(cfg["adc_enob"])
        own = self.span_V / np.sqrt(12.0) * np.sqrt(max(2.0 ** (-2 * enob) - 2.0 ** (-2 * self.bits), 0.0))
        self.noise_V = 0.0 if noise_free else float(np.hypot(own, read_noise_V))
        self.edges: np.ndarray | None = None  # input level (LSB) where code c begins, c = 1 .. full (DNL only)
        rp2040 = cfg.get("board") == "rp2" and cfg.get("adc") == "builtin" and self.bits == 12
        if rp2040 and set(cfg.get("adc_pins", ())) <= RP2040_ADC_PINS:  # (the "wide" board's 32 taps are not)
            self.edges = 0.5 + np.concatenate([[0.0], np.cumsum(rp2040_widths(self.bits))])

    def transfer(self, raw: np.ndarray) -> np.ndarray:
        """The mean code of dithered reads at input ``raw`` (LSB): ``raw`` itself for an ideal converter."""
        if self.edges is None:
            return raw
        centres = np.arange(1, self.full + 1) - 0.5  # code c spans c-1/2 .. c+1/2 of the output
        return np.asarray(np.interp(raw, self.edges, centres, left=0.0, right=float(self.full)))

    def quantise(self, raw: np.ndarray) -> np.ndarray:
        """Single reads: the code whose span holds ``raw``."""
        if self.edges is None:
            return np.round(raw)
        return np.searchsorted(self.edges, raw, side="right").astype(np.float64)

    def _raw(self, volts: np.ndarray) -> np.ndarray:
        """Volts -> position on the converter's grid (float, clipped to its range)."""
        return np.clip(self.scale.volts_to_code_position(volts) * (self.full / U16_MAX), 0.0, self.full)

    def _u16(self, raw: np.ndarray) -> np.ndarray:
        """Converter codes (or averages of them) -> the 16-bit scale: ``c << s | c >> (bits - s)`` with
        ``s = 16 - bits``, as MicroPython's rp2 ``read_u16`` does; for an average, the average of that."""
        shift = 16 - self.bits
        top = np.floor(raw / 2.0 ** (self.bits - shift)) if self.bits > shift else 0.0
        return np.asarray(np.floor(raw * 2.0**shift + top + 0.5).astype("<u2"))

    def read(self, volts: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` single reads of each value of ``volts``: uint16 codes of shape ``(count, *volts.shape)``."""
        v = np.broadcast_to(np.asarray(volts, dtype=np.float64), (count, *np.shape(volts)))
        if self.noise_V > 0.0:
            v = v + self.noise_V * rng.standard_normal(v.shape)
        return self._u16(self.quantise(self._raw(v)))

    def average(self, volts: np.ndarray, n_avg: int, rng: np.random.Generator) -> np.ndarray:
        """The mean of ``n_avg`` reads of each value of ``volts`` (uint16 codes, same shape), in closed form."""
        v = np.asarray(volts, dtype=np.float64)
        if self.noise_V > 0.0:
            v = v + (self.noise_V / np.sqrt(n_avg)) * rng.standard_normal(v.shape)
            return self._u16(np.round(self.transfer(self._raw(v)) * n_avg) / n_avg)
        return self._u16(self.quantise(self._raw(v)))
