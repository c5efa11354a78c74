"""``SimHAL``: the block-level HAL of ``pgt.firmware.hal_base`` over the numpy ring model.

The simulated board has a 12-bit DAC per drive channel, mapped linearly onto the ring's drive range
(code 0 = ``drive_low``, code 4095 = ``drive_high``), and a 12-bit ADC per detector tap over the ring's volt
range, whose samples are scaled to 16 bits as MicroPython's ``ADC.read_u16`` does (code 65535 = full scale).

The HAL is the ADC: it owns the read noise and the quantisation. A ring whose parameters carry read noise or
ADC bits has them moved here (its ``params`` are replaced by a copy without them) so that they are not applied
twice. Averaging ``n_avg`` reads lowers the read noise by sqrt(n_avg) and, with noise to dither, resolves
1/n_avg of an LSB; both are simulated in closed form, without a loop over reads. The whole block is one
``Ring.forward`` call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

import numpy as np

from pgt.firmware.hal_base import HAL

from .ring import Ring

__all__ = ["SimHAL", "DAC_BITS", "ADC_BITS", "SETTLE_MODES"]

DAC_BITS = 12
ADC_BITS = 12
DAC_MAX = (1 << DAC_BITS) - 1
ADC_MAX = (1 << ADC_BITS) - 1
U16_MAX = 0xFFFF
SETTLE_MODES = ("skip", "sleep")


class SimHAL(HAL):
    """A simulated board around ``ring``. ``settle="sleep"`` really waits the simulated device time of a block.

    ``read_us`` is the time of one read of all m inputs (default 2 us per input, an RP2040's 500 ksps), so a
    block of n vectors takes ``n * (settle_us + n_avg * read_us)`` microseconds of device time.
    """

    def __init__(
        self,
        ring: Ring,
        settle: str = "skip",
        *,
        read_us: float | None = None,
        max_batch: int = 4096,
        uid: str | None = None,
    ) -> None:
        if settle not in SETTLE_MODES:
            raise ValueError(f"settle must be one of {SETTLE_MODES}, got {settle!r}")
        self.ring = ring
        self.settle = settle
        p = ring.params
        self.read_noise_V = float(p.read_noise_V)
        if p.read_noise_V or p.adc_bits:
            ring.params = dataclasses.replace(p, read_noise_V=0.0, adc_bits=0)
        self.k = int(ring.n_inputs)
        self.m = int(ring.n_outputs)
        self.read_us = 2.0 * self.m if read_us is None else float(read_us)
        self.max_batch = int(max_batch)
        lo_mA = float(np.min(ring.drive_low))
        hi_mA = float(np.max(ring.drive_high))
        self.dac_mA_offset = lo_mA
        self.dac_mA_per_code = (hi_mA - lo_mA) / DAC_MAX
        self.adc_V_offset = float(ring.volts_low)
        self.adc_V_per_code = (float(ring.volts_high) - float(ring.volts_low)) / U16_MAX
        self._lsb12_V = (float(ring.volts_high) - float(ring.volts_low)) / ADC_MAX
        if uid is None:
            uid = hashlib.sha256(f"pgt-sim:{ring.level}:{ring.seed}".encode()).hexdigest()[:16]
        self.uid = uid
        self._rng = np.random.default_rng(np.random.SeedSequence([int(ring.seed) & 0xFFFFFFFF, 0x5A1]))
        zero_code = int(np.clip(round(-lo_mA / self.dac_mA_per_code), 0, DAC_MAX))
        self.zero_code = zero_code
        self.applied = np.full(self.k, zero_code, dtype=np.uint16)  # the drive codes on the outputs now
        self.elapsed_us = 0
        self.blocks = 0

    def info(self) -> dict[str, Any]:
        return {
            "board": "sim",
            "uid": self.uid,
            "k": self.k,
            "m": self.m,
            "dac_bits": DAC_BITS,
            "adc_bits": ADC_BITS,
            "dac_mA_per_code": self.dac_mA_per_code,
            "dac_mA_offset": self.dac_mA_offset,
            "adc_V_per_code": self.adc_V_per_code,
            "adc_V_offset": self.adc_V_offset,
            "limit_lo": [0] * self.k,
            "limit_hi": [DAC_MAX] * self.k,
            "max_batch": self.max_batch,
        }

    def state(self) -> dict[str, Any]:
        """The board's evolving state (read-noise generator, applied codes, the ring's state), for checkpoints."""
        return {"rng": dict(self._rng.bit_generator.state), "applied": self.applied.copy(),
                "ring": self.ring.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.applied[:] = state["applied"]
        self.ring.load_state(state["ring"])

    def zero(self) -> None:
        self.applied[:] = self.zero_code

    def codes_to_mA(self, codes: np.ndarray) -> np.ndarray:
        """DAC codes -> drive currents (mA)."""
        return self.dac_mA_offset + np.asarray(codes, dtype=np.float64) * self.dac_mA_per_code

    def volts_to_codes(self, volts: np.ndarray, n_avg: int = 1) -> np.ndarray:
        """Detector volts -> averaged 16-bit ADC codes (uint16), quantised as the ADC would."""
        x = np.clip((np.asarray(volts, dtype=np.float64) - self.adc_V_offset) / self._lsb12_V, 0.0, ADC_MAX)
        if self.read_noise_V > 0.0 and n_avg > 1:
            x = np.round(x * n_avg) / n_avg  # the mean of n_avg dithered 12-bit reads
        else:
            x = np.round(x)
        return np.round(x * (U16_MAX / ADC_MAX)).astype("<u2")

    def apply_and_sample(self, drive: Any, n: int, settle_us: int, n_avg: int) -> bytes:
        """Apply n drive vectors (n*k uint16 codes) and return n*m uint16 LE samples, one vectorised pass."""
        codes = np.frombuffer(drive, dtype="<u2", count=n * self.k).reshape(n, self.k)
        volts = self.ring.forward(self.codes_to_mA(codes))
        if self.read_noise_V > 0.0:
            volts = volts + (self.read_noise_V / np.sqrt(n_avg)) * self._rng.standard_normal(volts.shape)
        samples = self.volts_to_codes(volts, n_avg)
        self.applied[:] = codes[-1]
        elapsed_us = int(round(n * (settle_us + n_avg * self.read_us)))
        extra_s = elapsed_us * 1e-6 - n * self.ring.settle_s
        if extra_s > 0:
            self.ring.idle(extra_s)  # the ring's drift clock follows the device's time
        self.elapsed_us = elapsed_us
        self.blocks += 1
        if self.settle == "sleep":
            time.sleep(elapsed_us * 1e-6)
        return samples.tobytes()
