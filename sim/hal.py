"""``SimHAL``: the block-level HAL of ``pgt.firmware.hal_base`` for a simulated board over the ring model.

The board is described by a firmware board config (``pgt.sim.boards.board_config``; default: the rp2 board
of the ring's shape): drive codes of ``dac_bits`` become mA through its calibration
(:class:`pgt.units.UnitScale`, as the host converts), and its ADC (:class:`pgt.sim.adc.ADC`, the one model of read
noise and quantisation) reads the ring's detector volts as 16-bit ``read_u16`` codes averaged ``n_avg``
times. ``hello`` reports the config's channel counts, limits, bits and calibration, as the board would. The
whole block is one ``Ring.forward`` call. The ring and its parameters are not modified.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from pgt.firmware.hal_base import HAL
from pgt.units import UnitScale

from .adc import ADC
from .boards import board_config
from .drive_filter import DriveFilter
from .ring import Ring

__all__ = ["SimHAL", "SETTLE_MODES"]

SETTLE_MODES = ("skip", "sleep")


class SimHAL(HAL):
    """A simulated board ``cfg`` around ``ring``. ``settle="sleep"`` really waits the simulated device time.

    The drive reaches the ring through the board's drive filter (:class:`pgt.sim.drive_filter.DriveFilter`): a
    row sampled before its drive settled reads a mix of the old and the new drive. A block of n vectors takes
    ``n * (k write_us + settle_us + n_avg m read_us)`` microseconds of device time (the board config's call
    costs), with ``settle_us`` never below the board's ``settle_min_us``, as the firmware waits. ``loopback()``
    reads drive channel 0's filter output (0 .. 3.3 V over the DAC's codes) through the ADC, as a board with a
    loopback wire does. ``max_batch`` is the simulator's (larger than a board's: the block is one numpy call),
    unless given.
    """

    def __init__(
        self,
        ring: Ring,
        settle: str = "skip",
        *,
        cfg: dict[str, Any] | None = None,
        max_batch: int = 4096,
        uid: str | None = None,
    ) -> None:
        if settle not in SETTLE_MODES:
            raise ValueError(f"settle must be one of {SETTLE_MODES}, got {settle!r}")
        if cfg is None:
            cfg = board_config(channels=(ring.n_inputs, ring.n_outputs))
        if (len(cfg["drive_pins"]), len(cfg["adc_pins"])) != (ring.n_inputs, ring.n_outputs):
            raise ValueError(f"board has {len(cfg['drive_pins'])} drives and {len(cfg['adc_pins'])} taps, "
                             f"the ring {ring.n_inputs} and {ring.n_outputs}")
        self.ring = ring
        self.cfg = cfg
        self.settle = settle
        self.k = int(ring.n_inputs)
        self.m = int(ring.n_outputs)
        self.filter = DriveFilter(cfg)
        self.max_batch = int(max_batch)
        self.units = UnitScale.from_hello(cfg)
        self.adc = ADC(cfg, ring.params.read_noise_V, noise_free=ring.params.is_noise_free)
        if uid is None:
            uid = hashlib.sha256(f"pgt-sim:{cfg['name']}:{ring.level}:{ring.seed}".encode()).hexdigest()[:16]
        self.uid = uid
        self._rng = np.random.default_rng(np.random.SeedSequence([int(ring.seed) & 0xFFFFFFFF, 0x5A1]))
        self.zero_code = np.asarray(cfg["zero_code"], dtype=np.uint16)
        self.applied = self.zero_code.copy()  # the drive codes on the outputs now
        self.elapsed_us = 0
        self.blocks = 0

    def info(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "board": "sim-" + str(cfg["name"]),
            "uid": self.uid,
            "k": self.k,
            "m": self.m,
            "dac_bits": cfg["dac_bits"],
            "adc_bits": cfg["adc_bits"],
            "dac_mA_per_code": self.units.dac_mA_per_code,
            "dac_mA_offset": self.units.dac_mA_offset,
            "adc_V_per_code": self.units.adc_V_per_code,
            "adc_V_offset": self.units.adc_V_offset,
            "limit_lo": list(cfg["limit_lo"]),
            "limit_hi": list(cfg["limit_hi"]),
            "max_batch": self.max_batch,
            "settle_us": cfg["settle_us"],
            "settle_min_us": cfg["settle_min_us"],
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
        self.filter.set(self.zero_code)

    def loopback(self) -> int:
        """One ADC read (16-bit code) of drive channel 0's filter output: 0 .. 3.3 V over its codes."""
        volts = 3.3 * self.filter.output()[0] / self.filter.full
        return int(self.adc.read(np.array([volts]), 1, self._rng)[0, 0])

    def apply_and_sample(self, drive: Any, n: int, settle_us: int, n_avg: int) -> bytes:
        """Apply n drive vectors (n*k uint16 codes) and return n*m uint16 LE samples, one vectorised pass."""
        codes = np.frombuffer(drive, dtype="<u2", count=n * self.k).reshape(n, self.k)
        settle = max(int(settle_us), int(self.cfg["settle_min_us"]))
        seen, device_us = self.filter.block(codes, settle, n_avg, self.m)
        volts = self.ring.forward(self.units.codes_to_mA(seen))
        samples = self.adc.average(volts, n_avg, self._rng)
        self.applied[:] = codes[-1]
        elapsed_us = int(round(device_us))
        extra_s = elapsed_us * 1e-6 - n * self.ring.settle_s
        if extra_s > 0:
            self.ring.idle(extra_s)  # the ring's drift clock follows the device's time
        self.elapsed_us = elapsed_us
        self.blocks += 1
        if self.settle == "sleep":
            time.sleep(elapsed_us * 1e-6)
        return samples.tobytes()
