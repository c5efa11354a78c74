"""The trainer's view of a physical layer: a black box that maps drive vectors to measurements.

A :class:`Reservoir` takes a block of drive vectors in physical units (mA), shape ``(n, k)``, and returns the
measured block in physical units (V), shape ``(n, m)``. It counts every forward pass (one row = one query),
because device queries are what training pays for. The device client, the in-process simulator and any user
callable (:func:`from_callable`) are reservoirs. A reservoir that can also give its exact vector-Jacobian
product (the noise-free simulator) offers ``vjp`` and so can serve as the backpropagation reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import UserError


@runtime_checkable
class Reservoir(Protocol):
    """What a trainer needs from a physical layer."""

    n_inputs: int
    n_outputs: int
    queries: int
    """Forward passes so far (rows of every block sent)."""
    device_seconds: float
    """Device time spent so far (settling and sampling), as reported by the device or estimated."""
    drive_low: np.ndarray
    """Safe drive range per input channel, in mA, shape ``(n_inputs,)``."""
    drive_high: np.ndarray

    @property
    def info(self) -> dict[str, Any]: ...

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Drive with ``x`` (n, n_inputs) mA; return the measurements (n, n_outputs) V."""
        ...


@runtime_checkable
class DifferentiableReservoir(Reservoir, Protocol):
    """A reservoir that knows its exact vector-Jacobian product (only a noise-free model can)."""

    def vjp(self, x: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
        """Return d<grad_y, forward(x)>/dx, shape (n, n_inputs); does not count as a query."""
        ...


def check_block(x: np.ndarray, n_inputs: int) -> np.ndarray:
    """Return ``x`` as a float64 (n, n_inputs) array, or raise UserError saying what is wrong."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_inputs:
        raise UserError(f"drive block must have shape (n, {n_inputs}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise UserError("drive block contains NaN or infinite values")
    return arr


class CallableReservoir:
    """Wraps a Python callable ``fn((n, k) array) -> (n, m) array`` as a :class:`Reservoir`."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        n_inputs: int,
        n_outputs: int,
        drive_low: float | np.ndarray = -np.inf,
        drive_high: float | np.ndarray = np.inf,
        seconds_per_query: float = 0.0,
        name: str = "callable",
    ) -> None:
        if n_inputs < 1 or n_outputs < 1:
            raise UserError("a reservoir needs at least one input and one output")
        self._fn = fn
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.drive_low = np.broadcast_to(np.asarray(drive_low, dtype=float), (n_inputs,)).copy()
        self.drive_high = np.broadcast_to(np.asarray(drive_high, dtype=float), (n_inputs,)).copy()
        self.seconds_per_query = seconds_per_query
        self.queries = 0
        self.device_seconds = 0.0
        self._name = name

    @property
    def info(self) -> dict[str, Any]:
        return {"kind": self._name, "n_inputs": self.n_inputs, "n_outputs": self.n_outputs}

    def forward(self, x: np.ndarray) -> np.ndarray:
        arr = check_block(x, self.n_inputs)
        y = np.asarray(self._fn(arr), dtype=np.float64)
        if y.shape != (arr.shape[0], self.n_outputs):
            raise UserError(
                f"reservoir callable returned shape {y.shape}, expected ({arr.shape[0]}, {self.n_outputs})"
            )
        self.queries += arr.shape[0]
        self.device_seconds += arr.shape[0] * self.seconds_per_query
        return y


def from_callable(
    fn: Callable[[np.ndarray], np.ndarray], n_inputs: int, n_outputs: int, **kwargs: Any
) -> CallableReservoir:
    """Make any black box a reservoir: ``fn`` maps an (n, n_inputs) block to an (n, n_outputs) block."""
    return CallableReservoir(fn, n_inputs, n_outputs, **kwargs)
