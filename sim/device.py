"""The simulated device: the firmware's own ``Core`` over a ``SimHAL`` over a board-shaped ``Ring``.

``make_core`` is what every simulated transport serves (in-process ``sim://``, pty, TCP); its shape is a
board's (``pgt.sim.boards``: the default rp2 board, 2 drives and 3 taps, unless ``board``, ``channels`` or a
board.json ``config`` say otherwise). ``files`` is what its ``hello`` reports as the on-device source hashes
(the host passes ``pgt.device_files.file_hashes()``: sim does not import the host package).

:class:`SimDevice` is the in-process simulated device as a Reservoir (mA in, V out): every query is a
``run`` request handled by the Core, so noise, quantisation and clamping are the simulated board's. It is
what :func:`pgt.sim.ring.make_ring_reservoir` returns for a noisy ring.
"""

from __future__ import annotations

import time
from typing import Any

import msgpack
import numpy as np

from pgt.firmware.core import Core

from .boards import board_config, ring_params
from .hal import SimHAL
from .ring import DriveShapeError, Ring

__all__ = ["make_core", "monotonic_ms", "SimDevice", "SimDeviceError"]


def monotonic_ms() -> int:
    """Milliseconds of a monotonic clock (never wraps): the Core's clock."""
    return time.monotonic_ns() // 1_000_000


MIN_FRAME = 4096


def make_core(
    seed: int = 0, level: str = "A", noise_free: bool = False, settle: str = "skip", max_frame: int = 1 << 17,
    *, board: str | None = None, channels: tuple[int, int] | None = None, config: str | dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Core:
    """A fresh simulated board: ``Core(SimHAL(Ring(ring_params(cfg), seed, level), cfg), ...)``.

    ``noise_free`` switches off noise, drift and hysteresis (the ADC still quantises); ``settle`` is
    ``"skip"`` (answer at once) or ``"sleep"`` (take the simulated device time of each block). Raises
    :class:`pgt.sim.boards.BoardConfigError` (a ValueError) for a board that cannot be.
    """
    if level not in ("A", "B"):
        raise ValueError(f"model must be A or B, not {level!r}")
    if max_frame < MIN_FRAME:  # smaller cannot hold a hello reply (its file hashes take about 2 KB)
        raise ValueError(f"max_frame must be at least {MIN_FRAME}, got {max_frame}")
    cfg = board_config(board, channels, config)
    params = ring_params(cfg)
    if noise_free:
        params = params.noise_free()
    hal = SimHAL(Ring(params, seed=seed, level=level), settle=settle, cfg=cfg)
    return Core(hal, monotonic_ms, max_frame=max_frame, files=files)


class SimDeviceError(RuntimeError):
    """The simulated device answered a request with an error reply."""


class SimDevice:
    """A simulated board (a ``Core`` from :func:`make_core`) as a Reservoir: ``forward(mA (n, k)) -> V (n, m)``.

    Drives are rounded to the nearest DAC code and clipped to the board's safe range (as a client in
    ``out_of_range="clip"`` mode does); blocks are cut to the device's ``max_batch``. Counts queries (rows) and
    the device time the board reports. No vjp: it is the noisy device.
    """

    exact_vjp = False

    def __init__(self, core: Core) -> None:
        self.core = core
        self._seq = 0
        hello = self._call({"op": "hello"})
        self.hello = hello
        self.n_inputs = int(hello["k"])
        self.n_outputs = int(hello["m"])
        self._per, self._off = float(hello["dac_mA_per_code"]), float(hello["dac_mA_offset"])
        self._lo = np.asarray(hello["limit_lo"], dtype=np.int64)
        self._hi = np.asarray(hello["limit_hi"], dtype=np.int64)
        self.drive_low = self._off + self._per * self._lo
        self.drive_high = self._off + self._per * self._hi
        self._v_per, self._v_off = float(hello["adc_V_per_code"]), float(hello["adc_V_offset"])
        self.queries = 0
        self.device_seconds = 0.0

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        reply = msgpack.unpackb(bytes(self.core.handle(msgpack.packb({**msg, "seq": self._seq}))))
        if reply.get("op") == "error":
            raise SimDeviceError(f"simulated device: {reply.get('msg')} (code {reply.get('code')})")
        return dict(reply)

    @property
    def info(self) -> dict[str, Any]:
        hal = self.core.hal
        return {"kind": "sim-device", "board": self.hello["board"], "uid": self.hello["uid"],
                "level": hal.ring.level, "seed": hal.ring.seed, "n_inputs": self.n_inputs,
                "n_outputs": self.n_outputs, "noise_free": hal.ring.params.is_noise_free, "exact_vjp": False,
                "volts_low": hal.adc.volts_low, "volts_high": hal.adc.volts_high, "board_config": dict(hal.cfg)}

    def state(self) -> dict[str, Any]:
        """The simulated board's evolving state (noise generators, drift, ...), for checkpoints."""
        return dict(self.core.hal.state())

    def load_state(self, state: dict[str, Any]) -> None:
        self.core.hal.load_state(state)

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Send a ``config`` request (settle_us, n_avg, timeout_ms, drive_lo, drive_hi); its reply."""
        return self._call({"op": "config", **fields})

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Drive with ``x`` (n, n_inputs) mA; return volts (n, n_outputs); counts n queries."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_inputs or not np.all(np.isfinite(arr)):
            raise DriveShapeError(f"drive block must be finite with shape (n, {self.n_inputs}), got {arr.shape}")
        codes = np.clip(np.rint((arr - self._off) / self._per), self._lo, self._hi).astype("<u2")
        out = np.empty((arr.shape[0], self.n_outputs))
        step = int(self.core.max_batch)
        for i in range(0, arr.shape[0], step):
            block = codes[i:i + step]
            reply = self._call({"op": "run", "n": block.shape[0], "k": self.n_inputs, "drive": block.tobytes()})
            samples = np.frombuffer(reply["samples"], dtype="<u2").reshape(block.shape[0], self.n_outputs)
            out[i:i + step] = self._v_off + self._v_per * samples
            self.device_seconds += float(reply["t_us"]) * 1e-6
        self.queries += arr.shape[0]
        return out
