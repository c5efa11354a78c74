"""The noise-free reference ring as a Reservoir: :class:`RingReservoir` and :func:`reference_ring`.

Every noisy simulated query goes through the firmware's Core instead (``sim://`` URLs, or
:func:`pgt.sim_board.open_sim_board` in process); this is the differentiable ring the backpropagation
reference trains through, of a board's shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pgt.units import UnitScale

from .boards import board_config, ring_params
from .ring import Ring

__all__ = ["RingReservoir", "reference_ring"]


class RingReservoir:
    """The noise-free reference: a :class:`pgt.reservoir.Reservoir` that calls a :class:`Ring` directly (in
    process, counts queries) and offers its exact ``vjp`` — the backpropagation reference estimator's device.

    Noisy simulated queries do not come here: they go through the firmware's Core and the simulated board
    (:func:`pgt.sim_board.open_sim_board`, a ``RingClient`` over the in-process link), where the ADC adds read
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


def reference_ring(seed: int = 0, level: str = "A", *, board: str | None = None,
                   channels: tuple[int, int] | None = None, config: str | dict[str, Any] | None = None
                   ) -> RingReservoir:
    """The noise-free ring of a board's shape (default: the rp2 board, 2 drives and 3 taps; ``board``,
    ``channels`` and ``config`` as in :func:`pgt.sim.boards.board_config`): exact vjp, no ADC."""
    cfg = board_config(board, channels, config)
    units = UnitScale.from_hello(cfg)
    ring = Ring(ring_params(cfg).noise_free(), seed=seed, level=level)
    return RingReservoir(ring, volts=(units.volts_low, units.volts_high))
