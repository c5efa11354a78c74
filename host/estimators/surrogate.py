"""The surrogate estimator: forward through the device, backward through a model of it fitted online."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import Grads
from ..models import HybridModel
from .base import Array, Batch, Estimator, forward_loss


class RandomFeatureSurrogate:
    """A differentiable stand-in for the device: ``y ~ [1, x, tanh(x A + b)] W`` by ridge regression.

    ``x`` is the drive scaled to roughly [-1, 1] (``(u - center) / half_range``); W is refitted in closed form.
    """

    def __init__(self, k: int, m: int, rng: np.random.Generator, features: int = 384, ridge: float = 1e-4,
                 width: float = 2.5) -> None:
        self.k, self.m = k, m
        self.A = rng.normal(0.0, width / np.sqrt(k), size=(k, features))
        self.b = rng.uniform(-width, width, size=features) * 0.5
        self.ridge = ridge
        self.W: Array | None = None
        self.center = np.zeros(k)
        self.half = np.ones(k)

    def set_range(self, low: Array, high: Array) -> None:
        finite = np.isfinite(low) & np.isfinite(high)
        self.center = np.where(finite, 0.5 * (low + high), 0.0)
        self.half = np.where(finite, 0.5 * (high - low), 1.0)

    def _features(self, u: Array) -> tuple[Array, Array, Array]:
        x = (u - self.center) / self.half
        phi = np.tanh(x @ self.A + self.b)
        return np.concatenate([np.ones((u.shape[0], 1)), x, phi], axis=1), x, phi

    def fit(self, u: Array, y: Array) -> float:
        """Refit on (drives, normalised readings); returns the RMS training residual."""
        f, _, _ = self._features(u)
        scale = np.mean(f * f, axis=0)
        gram = f.T @ f + self.ridge * u.shape[0] * np.diag(scale + 1e-12)
        self.W = np.linalg.solve(gram, f.T @ y)
        return float(np.sqrt(np.mean((f @ self.W - y) ** 2)))

    def predict(self, u: Array) -> Array:
        if self.W is None:
            raise RuntimeError("surrogate not fitted")
        f, _, _ = self._features(u)
        return f @ self.W

    def vjp(self, u: Array, grad_y: Array) -> Array:
        if self.W is None:
            raise RuntimeError("surrogate not fitted")
        _, _, phi = self._features(u)
        gf = grad_y @ self.W.T  # (n, 1 + k + F)
        gx = gf[:, 1 : 1 + self.k] + ((gf[:, 1 + self.k :] * (1.0 - phi * phi)) @ self.A.T)
        return gx / self.half


class SurrogatePGT(Estimator):
    """Forward through the device, backward through a surrogate refitted online from all device data seen.

    Costs one query per row: the data to fit on are the forward passes training makes anyway (plus the
    calibration probe). The surrogate is refitted every ``refit_every`` steps on the last ``buffer`` pairs.
    """

    name = "surrogate"

    def __init__(self, seed: int | np.random.Generator = 0, refit_every: int = 10, buffer: int = 6000,
                 features: int = 384, ridge: float = 1e-4, width: float = 2.5) -> None:
        super().__init__(seed)
        self._options(refit_every=refit_every, buffer=buffer, features=features, ridge=ridge, width=width)
        self.width = float(width)
        self.refit_every = int(refit_every)
        self.buffer = int(buffer)
        self.features = int(features)
        self.ridge = float(ridge)
        self.surrogate: RandomFeatureSurrogate | None = None
        self._u: list[Array] = []
        self._y: list[Array] = []
        self._since_fit = 0
        self.fit_error: float | None = None

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "refit_every": self.refit_every, "buffer": self.buffer,
                "features": self.features, "ridge": self.ridge, "width": self.width}

    def diagnostics(self) -> dict[str, Any]:
        return super().diagnostics() | {"surrogate_rmse": self.fit_error}

    def state(self) -> dict[str, Any]:
        sur = self.surrogate
        fitted = None if sur is None else {"A": sur.A, "b": sur.b, "W": sur.W, "center": sur.center,
                                           "half": sur.half}
        return super().state() | {"u": list(self._u), "y": list(self._y), "since_fit": self._since_fit,
                                  "fit_error": self.fit_error, "surrogate": fitted}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._u, self._y = list(state["u"]), list(state["y"])
        self._since_fit, self.fit_error = state["since_fit"], state["fit_error"]
        fitted = state["surrogate"]
        self.surrogate = None
        if fitted is not None:
            k, features = fitted["A"].shape
            m = 0 if fitted["W"] is None else fitted["W"].shape[1]
            sur = RandomFeatureSurrogate(k, m, np.random.default_rng(0), features, self.ridge, self.width)
            sur.A, sur.b, sur.W, sur.center, sur.half = (fitted[n] for n in ("A", "b", "W", "center", "half"))
            self.surrogate = sur

    def observe(self, u: Array, y: Array) -> None:
        self._u.append(np.array(u, dtype=np.float64))
        self._y.append(np.array(y, dtype=np.float64))
        total = sum(len(b) for b in self._u)
        while len(self._u) > 1 and total - len(self._u[0]) >= self.buffer:
            total -= len(self._u.pop(0))
            self._y.pop(0)

    def recent_pairs(self, model: HybridModel) -> tuple[RandomFeatureSurrogate, Array, Array]:
        """The surrogate (made on first use) and the last ``buffer`` (drive, normalised reading) pairs seen."""
        ph = model.physical
        if self.surrogate is None:
            self.surrogate = RandomFeatureSurrogate(ph.k, ph.m, self.rng, self.features, self.ridge, self.width)
            self.surrogate.set_range(ph.low, ph.high)
        return (self.surrogate, np.concatenate(self._u)[-self.buffer :],
                ph.normalise(np.concatenate(self._y)[-self.buffer :]))

    def refit(self, model: HybridModel) -> None:
        surrogate, u, y = self.recent_pairs(model)
        self.fit_error = surrogate.fit(u, y)
        self._since_fit = 0

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        x, labels = batch
        ph = model.physical
        a, pre_cache = model.pre(x)
        u, mask = ph.drive(a)
        y = ph.query(u)
        self.observe(u, y)
        self._since_fit += 1
        if self.surrogate is None or self._since_fit >= self.refit_every:
            self.refit(model)
        assert self.surrogate is not None
        loss, grads, gz, skip = forward_loss(model, ph.normalise(y), pre_cache, labels)
        gu = self.surrogate.vjp(u, gz)  # the surrogate maps drives to *normalised* readings
        grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pre_cache)
        return loss, grads, u.shape[0]
