"""The physical layer: digital activations -> drive currents -> the reservoir -> normalised readings.

``drive = clip(center + scale * a, drive_low, drive_high)`` maps an activation (the model puts a ``tanh`` in
front, so ``a`` lies in (-1, 1)) into the device's safe range; the measured volts are normalised per channel by
a fixed affine map ``z = (y - mu) / sd`` calibrated once from a probe batch (those queries are counted like any
other). The layer does not differentiate the device: how a gradient crosses it is the estimator's business
(:mod:`pgt.estimators`); the layer only offers the two digital ends of that crossing (``drive_backward`` and
``normalise_backward``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DeviceError, UserError
from .reservoir import Reservoir

Array = np.ndarray


class PhysicalLayer:
    """Wraps a :class:`~pgt.reservoir.Reservoir` with an input affine map + clipping and output normalisation."""

    def __init__(self, reservoir: Reservoir, margin: float = 0.9) -> None:
        self.reservoir: Reservoir | None = None
        self.k = int(reservoir.n_inputs)
        self.m = int(reservoir.n_outputs)
        low = np.asarray(reservoir.drive_low, dtype=float)
        high = np.asarray(reservoir.drive_high, dtype=float)
        finite = np.isfinite(low) & np.isfinite(high)
        self.low = low
        self.high = high
        self.center = np.where(finite, 0.5 * (np.where(finite, low, 0.0) + np.where(finite, high, 0.0)), 0.0)
        self.scale = np.where(finite, 0.5 * (np.where(finite, high, 1.0) - np.where(finite, low, -1.0)) * margin,
                              1.0)
        self.mu = np.zeros(self.m)
        self.sd = np.ones(self.m)
        self.calibrated = False
        self.attach(reservoir)

    def attach(self, reservoir: Reservoir) -> None:
        """(Re)connect to a device, e.g. after resuming a checkpoint; shapes must match."""
        if reservoir.n_inputs != self.k or reservoir.n_outputs != self.m:
            raise UserError(
                f"reservoir has {reservoir.n_inputs} inputs/{reservoir.n_outputs} outputs, "
                f"the model expects {self.k}/{self.m}"
            )
        self.reservoir = reservoir
        info = getattr(reservoir, "info", None) or {}
        high = info.get("volts_high")
        self.v_high: float | None = float(high) if isinstance(high, (int, float)) else None

    def state(self) -> dict[str, Any]:
        """What calibration measured (normalisation, ...) as plain values and arrays, for checkpoints, and the
        device's ADC averaging if it has that setting. The drive map follows from the device's range."""
        derived = ("reservoir", "low", "high", "center", "scale", "k", "m")
        out: dict[str, Any] = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in vars(self).items()
                               if k not in derived and (v is None or isinstance(v, (np.ndarray, bool, int, float)))}
        out["device_n_avg"] = (getattr(self.reservoir, "info", None) or {}).get("n_avg")
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`; a device with an ADC averaging setting gets the checkpointed one back."""
        state = dict(state)
        n_avg = state.pop("device_n_avg", None)
        for key, value in state.items():
            setattr(self, key, np.array(value) if isinstance(value, np.ndarray) else value)
        configure = getattr(self.reservoir, "configure", None)
        current = (getattr(self.reservoir, "info", None) or {}).get("n_avg")
        if n_avg is not None and callable(configure) and current != n_avg:
            configure(n_avg=int(n_avg))

    # -- the digital ends -------------------------------------------------------------------------
    def drive(self, a: Array) -> tuple[Array, Array]:
        """Activations ``(n, k)`` -> drive currents (mA) and the mask of rows/channels not clipped."""
        u = self.center + self.scale * a
        clipped = np.clip(u, self.low, self.high)
        return clipped, clipped == u

    def drive_backward(self, grad_u: Array, mask: Array) -> Array:
        """Gradient with respect to the drive -> gradient with respect to the activation."""
        return grad_u * self.scale * mask

    def normalise(self, y: Array) -> Array:
        return (y - self.mu) / self.sd

    def normalise_backward(self, grad_z: Array) -> Array:
        return grad_z / self.sd

    # -- the device ---------------------------------------------------------------------------------
    def query(self, u: Array) -> Array:
        """Send one block of drives; return the volts, checked for NaN and saturation."""
        if self.reservoir is None:
            raise DeviceError("no device attached to the physical layer")
        try:
            y = np.asarray(self.reservoir.forward(u), dtype=np.float64)
        except (OSError, ConnectionError, EOFError) as exc:
            raise DeviceError(f"device query failed: {exc}") from exc
        if y.shape != (u.shape[0], self.m):
            raise DeviceError(f"device returned shape {y.shape}, expected ({u.shape[0]}, {self.m})")
        if not np.all(np.isfinite(y)):
            raise DeviceError("device returned NaN or infinite readings")
        if self.v_high is not None and y.size >= 64 and np.mean(y >= self.v_high) > 0.5:
            raise DeviceError(f"device readings are saturated (most at the {self.v_high:g} V rail)")
        if self.calibrated and y.shape[0] >= 8:
            # Readings stuck at one value on every channel: a saturated or dead detector.
            if np.all(np.ptp(y, axis=0) == 0.0) and np.any(np.ptp(u, axis=0) > 0):
                raise DeviceError("device readings are saturated (constant on every channel)")
        return y

    def calibrate(self, rng: np.random.Generator, n_probe: int = 256) -> tuple[int, Array, Array]:
        """Fix the output normalisation from a probe batch of random drives.

        Returns the queries spent and the probe (drives, volts) so that a surrogate can learn from them.
        """
        a = rng.uniform(-1.0, 1.0, size=(n_probe, self.k))
        u, _ = self.drive(a)
        y = self.query(u)
        sd = y.std(axis=0)
        if np.all(sd == 0.0):
            raise DeviceError("device readings do not respond to the drive (saturated or disconnected)")
        self.mu = y.mean(axis=0)
        self.sd = np.where(sd > 1e-6 * max(float(sd.max()), 1e-30), sd, 1.0)
        self.calibrated = True
        return n_probe, u, y
