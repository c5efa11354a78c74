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

:meth:`ADC.read` gives single reads (the virtual board's ``machine.ADC``); :meth:`ADC.average` the mean of
``n_avg`` reads in closed form (``SimHAL``): with the noise above half an LSB (always so here) the mean of
n dithered reads resolves 1/n of an LSB, ``round(n x) / n``. With ``noise_free`` the ADC only quantises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pgt.units import U16_MAX, UnitScale

__all__ = ["ADC"]


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
        return self._u16(np.round(self._raw(v)))

    def average(self, volts: np.ndarray, n_avg: int, rng: np.random.Generator) -> np.ndarray:
        """The mean of ``n_avg`` reads of each value of ``volts`` (uint16 codes, same shape), in closed form."""
        v = np.asarray(volts, dtype=np.float64)
        if self.noise_V > 0.0:
            v = v + (self.noise_V / np.sqrt(n_avg)) * rng.standard_normal(v.shape)
            return self._u16(np.round(self._raw(v) * n_avg) / n_avg)
        return self._u16(np.round(self._raw(v)))
