"""Hostile black boxes: small ``from_callable`` devices with the faults real rigs have.

Each :class:`Box` maps drives in [0, 1] (``K`` channels) to volts in [0, 1] (``M`` taps) through one smooth
map ``mean`` (with an exact ``vjp``), then spoils it: quantisation, drift, memory of the previous row,
saturation, NaN bursts or slowness. ``box.reservoir()`` wraps it as a reservoir; it keeps its state (clock,
previous row) across calls, like a device.
"""

from __future__ import annotations

import time

import numpy as np

from pgt.reservoir import CallableReservoir, from_callable

K, M = 4, 8
Array = np.ndarray


class Box:
    """``mean(u) = 0.5 + 0.4 tanh((u - 0.5) W + b)``, spoiled by ``spoil`` (see the subclasses)."""

    kind = "clean"
    seconds_per_query = 0.0

    def __init__(self, seed: int = 0, noise: float = 0.002) -> None:
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(K, M)) * 1.5
        self.b = rng.normal(size=M) * 0.3
        self.noise = noise
        self.rng = np.random.default_rng(seed + 100)
        self.t = 0  # rows so far (the device clock)
        self.prev = np.full(K, 0.5)  # the last row driven

    def mean(self, u: Array) -> Array:
        return 0.5 + 0.4 * np.tanh((u - 0.5) @ self.W + self.b)

    def vjp(self, u: Array, gy: Array) -> Array:
        """Exact gradient of ``<gy, mean(u)>`` with respect to ``u``."""
        th = np.tanh((u - 0.5) @ self.W + self.b)
        return np.asarray((gy * 0.4 * (1.0 - th**2)) @ self.W.T)

    def spoil(self, u: Array, y: Array) -> Array:
        return y

    def __call__(self, u: Array) -> Array:
        y = self.mean(u)
        if self.noise:
            y = y + self.noise * self.rng.standard_normal(y.shape)
        y = self.spoil(u, y)
        self.t += u.shape[0]
        self.prev = u[-1].copy()
        return y

    def reservoir(self) -> CallableReservoir:
        return from_callable(self, K, M, drive_low=0.0, drive_high=1.0,
                             seconds_per_query=self.seconds_per_query, name=f"hostile-{self.kind}")


class Quantised(Box):
    """No noise at all, read by an ADC of ``bits`` bits over [0, 1] V."""

    kind = "quantised"

    def __init__(self, seed: int = 0, bits: int = 8) -> None:
        super().__init__(seed, noise=0.0)
        self.levels = 2**bits - 1

    def spoil(self, u: Array, y: Array) -> Array:
        return np.round(np.clip(y, 0.0, 1.0) * self.levels) / self.levels


class Drifting(Box):
    """Gain and offset wander with the device clock (a slow random walk plus a ramp)."""

    kind = "drifting"

    def __init__(self, seed: int = 0, per_kilorow: float = 0.01) -> None:
        super().__init__(seed)
        self.rate = per_kilorow
        self.walk = 0.0

    def spoil(self, u: Array, y: Array) -> Array:
        n = u.shape[0]
        steps = np.cumsum(self.rng.standard_normal(n)) * self.rate / np.sqrt(1000.0) + self.walk
        self.walk = float(steps[-1])
        clock = (self.t + np.arange(n)) / 1000.0
        gain = 1.0 + self.rate * clock + steps
        return np.asarray(y * gain[:, None] + 0.5 * self.rate * clock[:, None])


class Memory(Box):
    """A reading keeps ``m`` of the previous row's reading (a slow detector): ``(1 - m) y_t + m y_{t-1}``."""

    kind = "memory"

    def __init__(self, seed: int = 0, m: float = 0.4) -> None:
        super().__init__(seed)
        self.m = m

    def spoil(self, u: Array, y: Array) -> Array:
        prev = np.concatenate([self.mean(self.prev[None, :]), self.mean(u[:-1])])
        return (1.0 - self.m) * y + self.m * prev


class Saturating(Box):
    """An amplifier that clips: a third of the readings sit on a rail."""

    kind = "saturating"

    def spoil(self, u: Array, y: Array) -> Array:
        return np.clip(0.5 + 1.6 * (y - 0.5), 0.25, 0.75)


class Dead(Box):
    """Saturated for good: every reading on the rail, whatever the drive."""

    kind = "dead"

    def spoil(self, u: Array, y: Array) -> Array:
        return np.ones_like(y)


class NanBursts(Box):
    """Every ``every``-th call, a burst of rows comes back NaN (a glitching readout)."""

    kind = "nan-bursts"

    def __init__(self, seed: int = 0, every: int = 7) -> None:
        super().__init__(seed)
        self.every = every
        self.calls = 0

    def spoil(self, u: Array, y: Array) -> Array:
        self.calls += 1
        if self.calls % self.every == 0:
            y = y.copy()
            y[: max(1, len(y) // 4)] = np.nan
        return y


class Slow(Box):
    """Takes real time per call (``seconds`` of wall clock) and reports device time per row."""

    kind = "slow"
    seconds_per_query = 2e-3

    def __init__(self, seed: int = 0, seconds: float = 2e-3) -> None:
        super().__init__(seed)
        self.seconds = seconds

    def spoil(self, u: Array, y: Array) -> Array:
        time.sleep(self.seconds)
        return y


BOXES: dict[str, type[Box]] = {
    cls.kind: cls for cls in (Box, Quantised, Drifting, Memory, Saturating, Dead, NanBursts, Slow)
}
