"""The trainer's view of a physical layer: a black box that maps drive vectors to measurements.

A :class:`Reservoir` takes a block of drive vectors in physical units (mA), shape ``(n, k)``, and returns the
measured block in physical units (V), shape ``(n, m)``. It counts every forward pass (one row = one query),
because device queries are what training pays for. The device client, the in-process simulator and any user
callable (:func:`from_callable`) are reservoirs.

What the trainer relies on beyond :class:`Reservoir`, when present: ``exact_vjp`` (bool) and ``vjp`` — the
exact vector-Jacobian product of a noise-free model, which makes it a backpropagation reference
(:class:`DifferentiableReservoir`); ``state()`` / ``load_state(state)`` — the device's evolving state as plain
data and arrays, checkpointed with a run so that a resumed run on a simulator is bit-identical
(:class:`Snapshotting`); ``info`` keys ``url`` (reopened on resume) and ``volts_high`` (saturation check).
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

    exact_vjp: bool

    def vjp(self, x: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
        """Return d<grad_y, forward(x)>/dx, shape (n, n_inputs); does not count as a query."""
        ...


@runtime_checkable
class Snapshotting(Reservoir, Protocol):
    """A reservoir whose state a checkpoint can hold (the in-process simulator)."""

    def state(self) -> dict[str, Any] | None:
        """The evolving state as plain data and numpy arrays (None: nothing that can be restored)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def check_block(x: np.ndarray, n_inputs: int) -> np.ndarray:
    """Return ``x`` as a float64 (n, n_inputs) array, or raise UserError saying what is wrong."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_inputs:
        raise UserError(f"drive block must have shape (n, {n_inputs}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise UserError("drive block contains NaN or infinite values")
    return arr


class CallableReservoir:
    """Wraps a Python callable ``fn((n, k) array) -> (n, m) array`` as a :class:`Reservoir`.

    ``drive_low`` and ``drive_high`` (scalars or one value per input) are the device's safe drive range: the
    trainer drives only inside it, so they are required and must be finite with low < high.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        n_inputs: int,
        n_outputs: int,
        drive_low: float | np.ndarray,
        drive_high: float | np.ndarray,
        seconds_per_query: float = 0.0,
        name: str = "callable",
    ) -> None:
        if n_inputs < 1 or n_outputs < 1:
            raise UserError("a reservoir needs at least one input and one output")
        self._fn = fn
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        try:
            self.drive_low = np.broadcast_to(np.asarray(drive_low, dtype=float), (n_inputs,)).copy()
            self.drive_high = np.broadcast_to(np.asarray(drive_high, dtype=float), (n_inputs,)).copy()
        except ValueError:
            raise UserError(f"drive_low and drive_high must be numbers or {n_inputs} numbers each") from None
        if not (np.all(np.isfinite(self.drive_low)) and np.all(np.isfinite(self.drive_high))
                and np.all(self.drive_low < self.drive_high)):
            raise UserError("the safe drive range must be finite with drive_low < drive_high on every input, got "
                            f"{self.drive_low.tolist()}..{self.drive_high.tolist()}")
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
    fn: Callable[[np.ndarray], np.ndarray], n_inputs: int, n_outputs: int, *,
    drive_low: float | np.ndarray | None = None, drive_high: float | np.ndarray | None = None, **kwargs: Any,
) -> CallableReservoir:
    """Make any black box a reservoir: ``fn`` maps an (n, n_inputs) block to an (n, n_outputs) block.

    ``drive_low``/``drive_high`` are required: the safe drive range of the box, per input or one for all
    (e.g. ``drive_low=0.0, drive_high=1.0``). The trainer drives only inside it.
    """
    if drive_low is None or drive_high is None:
        raise UserError("from_callable needs the box's safe drive range: give drive_low= and drive_high= "
                        "(numbers, or one per input), e.g. drive_low=0.0, drive_high=1.0")
    return CallableReservoir(fn, n_inputs, n_outputs, drive_low, drive_high, **kwargs)
