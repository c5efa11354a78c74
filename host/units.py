"""One unit scale: DAC codes <-> mA and ADC codes <-> V, with the safe code limits, from a ``hello`` reply.

The device speaks codes and reports its calibration in ``hello`` (DESIGN principle 3): ``mA = dac_mA_offset +
code * dac_mA_per_code`` and ``V = adc_V_offset + code * adc_V_per_code`` (ADC codes on the 16-bit
``read_u16`` scale), drive codes within ``limit_lo .. limit_hi``. A board config (``pgt.firmware.board``)
carries the same keys, so the simulated board builds the same object from its config. The host client,
the simulated HAL, its ADC and the ring's drive range all convert through :class:`UnitScale`; nothing else
multiplies by a calibration. Imports only numpy: the simulator may use it without importing the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["UnitScale", "U16_MAX", "CALIBRATION_KEYS"]

U16_MAX = 0xFFFF  # ADC codes are on the 16-bit read_u16 scale, whatever the converter's resolution
CALIBRATION_KEYS = ("dac_mA_per_code", "dac_mA_offset", "adc_V_per_code", "adc_V_offset", "limit_lo", "limit_hi")


@dataclass(frozen=True)
class UnitScale:
    """A device's calibration. Build it with :meth:`from_hello` (a hello reply or a board config)."""

    dac_mA_per_code: float
    dac_mA_offset: float
    adc_V_per_code: float
    adc_V_offset: float
    limit_lo: tuple[int, ...]
    limit_hi: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("dac_mA_per_code", "dac_mA_offset", "adc_V_per_code", "adc_V_offset"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, not {getattr(self, name)!r}")
        if self.dac_mA_per_code == 0 or self.adc_V_per_code == 0:
            raise ValueError("dac_mA_per_code and adc_V_per_code must not be zero")
        if len(self.limit_lo) != len(self.limit_hi) or not self.limit_lo:
            raise ValueError("limit_lo and limit_hi need one code per drive channel")

    @classmethod
    def from_hello(cls, hello: Mapping[str, Any]) -> UnitScale:
        """From a ``hello`` reply (or a board config: the same keys). ValueError naming a missing or bad key."""
        missing = [k for k in CALIBRATION_KEYS if k not in hello]
        if missing:
            raise ValueError(f"no {', '.join(missing)} in the calibration")
        try:
            dac, dac_off, adc, adc_off = (float(hello[k]) for k in CALIBRATION_KEYS[:4])
            lo, hi = (tuple(int(c) for c in hello[k]) for k in CALIBRATION_KEYS[4:])
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"calibration is not numbers: {exc}") from None
        return cls(dac, dac_off, adc, adc_off, lo, hi)

    # -- drive ----------------------------------------------------------------------------------------

    def codes_to_mA(self, codes: Sequence[int] | np.ndarray) -> np.ndarray:
        """DAC codes -> drive currents (mA)."""
        return self.dac_mA_offset + np.asarray(codes, dtype=np.float64) * self.dac_mA_per_code

    def mA_to_codes(self, drive_mA: Sequence[float] | np.ndarray) -> np.ndarray:
        """The nearest DAC code (as float, unclipped) for each drive value in mA."""
        return np.rint(self.mA_to_code_position(drive_mA))

    def mA_to_code_position(self, drive_mA: Sequence[float] | np.ndarray) -> np.ndarray:
        """Drive in mA -> position on the DAC's code scale (float, not rounded)."""
        return (np.asarray(drive_mA, dtype=np.float64) - self.dac_mA_offset) / self.dac_mA_per_code

    @property
    def limit_low_mA(self) -> np.ndarray:
        """The safe limit ``limit_lo`` of each channel, in mA."""
        return self.codes_to_mA(self.limit_lo)

    @property
    def limit_high_mA(self) -> np.ndarray:
        """The safe limit ``limit_hi`` of each channel, in mA."""
        return self.codes_to_mA(self.limit_hi)

    @property
    def drive_range_mA(self) -> tuple[float, float]:
        """(lowest, highest) mA any channel may be driven to: the widest safe range, through the calibration."""
        ends = np.concatenate([self.limit_low_mA, self.limit_high_mA])
        return float(ends.min()), float(ends.max())

    # -- samples --------------------------------------------------------------------------------------

    def codes_to_volts(self, codes: Sequence[int] | np.ndarray) -> np.ndarray:
        """ADC codes (16-bit scale) -> volts."""
        return self.adc_V_offset + np.asarray(codes, dtype=np.float64) * self.adc_V_per_code

    def volts_to_code_position(self, volts: Sequence[float] | np.ndarray) -> np.ndarray:
        """Volts -> position on the 16-bit ADC scale (float, neither rounded nor clipped)."""
        return (np.asarray(volts, dtype=np.float64) - self.adc_V_offset) / self.adc_V_per_code

    @property
    def volts_low(self) -> float:
        """The volts of ADC code 0."""
        return self.adc_V_offset

    @property
    def volts_high(self) -> float:
        """The volts of the top ADC code (the rail a saturated reading sits at)."""
        return self.adc_V_offset + U16_MAX * self.adc_V_per_code
