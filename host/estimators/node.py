"""Node perturbation: perturb the device's inputs, one random direction per row, exact layers around it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..calibration import Calibration, node_sigma, sigma_floor, zero_fraction
from ..layers import Grads
from ..models import HybridModel
from .base import Array, Batch, draw_directions, forward_loss, measure_noise
from .perturbative import _Perturbative


class NodePGT(_Perturbative):
    """Perturb the device inputs, one independent direction per row (sample or token) and direction.

    ``directions`` K per row; ``two_sided`` uses +v and -v (2K rows per row, the mean is the baseline),
    otherwise a baseline plus K perturbed rows ((K+1) rows per row). ``sigma`` is the perturbation size in
    activation units (the drive moves by ``sigma * scale`` mA); None = chosen by :meth:`fit_to_device` from the
    noise, the slope and the readout's resolution, and enlarged when more than ``zero_tolerance`` of the
    differences (per output) are exactly zero or, over 20 steps, their signal-to-noise ratio falls below
    ``snr / 2``.
    """

    name = "node"

    def __init__(
        self, seed: int | np.random.Generator = 0, directions: int = 1, two_sided: bool = True,
        dist: str = "rademacher", sigma: float | None = None, snr: float = 6.0,
        sigma_range: tuple[float, float] = (1e-3, 0.3), order: str = "auto", zero_tolerance: float = 0.75,
    ) -> None:
        super().__init__(seed, directions, two_sided, dist, sigma, snr, sigma_range, order)
        self.zero_tolerance = float(self._options(zero_tolerance=zero_tolerance)["zero_tolerance"])
        self._snr_ms: list[float] = []

    def state(self) -> dict[str, Any]:
        return super().state() | {"snr_ms": list(self._snr_ms)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._snr_ms = list(state["snr_ms"])

    def fit_to_device(self, model: HybridModel, batch: Batch) -> Calibration:
        cal = measure_noise(model, batch[0], self.rng)
        if self.sigma is None:
            self.sigma = node_sigma(cal, self.snr, *self.sigma_range)
        elif self.sigma < sigma_floor(cal):
            self._warn_once("floor", f"sigma {self.sigma:g} is below the readout's resolution floor "
                            f"{sigma_floor(cal):.3g}: most differences will round to zero")
        cal.sigma = self.sigma
        self._use_calibration(cal)
        return cal

    def _watch(self, jv: Array) -> None:
        """Enlarge sigma when differences round to zero or (over 20 steps) sink into the noise."""
        zero = zero_fraction(jv)
        if zero > self.zero_tolerance:
            self._enlarge(f"{zero:.0%} of the perturbation differences were exactly zero")
            self._snr_ms.clear()
            return
        cal = self.calibration
        if cal is None or cal.effective_noise == 0.0:
            return
        # Noise variance of one difference: two-sided 0.5 (y+ - y-) -> noise^2 / 2; one-sided -> 2 noise^2.
        noise_var = cal.effective_noise**2 * (0.5 if self.two_sided else 2.0)
        self._snr_ms.append(float(np.mean(jv**2)) / noise_var)
        if len(self._snr_ms) >= 20:
            snr_now = float(np.sqrt(max(float(np.mean(self._snr_ms)) - 1.0, 0.0)))
            self._snr_ms.clear()
            if snr_now < self.snr / 2:  # the difference grows with sigma: aim at snr (at most 4x at once)
                factor = float(np.clip(self.snr / max(snr_now, 1e-9), 1.5, 4.0))
                self._enlarge(f"the differences sank into the noise (signal-to-noise {snr_now:.1f})", factor)

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        x, labels = batch
        ph = model.physical
        sigma = self.sigma if self.sigma is not None else 0.01
        a, pre_cache = model.pre(x)
        n, k = a.shape
        u, mask = ph.drive(a)
        K = self.directions
        d = draw_directions(self.rng, (n, K, k), self.dist)
        v = sigma * ph.scale * d  # drive perturbations, mA
        if self.two_sided:
            rows = np.stack([u[:, None, :] + v, u[:, None, :] - v], axis=2).reshape(n, 2 * K, k)
        else:
            rows = np.concatenate([u[:, None, :], u[:, None, :] + v], axis=1)
        rows = np.clip(rows, ph.low, ph.high)
        y = self._query(ph, rows)
        if self.two_sided:
            y_base = y.mean(axis=1)
            jv = 0.5 * (y[:, 0::2] - y[:, 1::2])  # (n, K, m)
        else:
            y_base = y[:, 0]
            jv = y[:, 1:] - y_base[:, None, :]
        v_eff = (rows[:, 0::2] - rows[:, 1::2]) * 0.5 if self.two_sided else rows[:, 1:] - u[:, None, :]
        loss, grads, gz, skip = forward_loss(model, ph.normalise(y_base), pre_cache, labels)
        gy = ph.normalise_backward(gz)
        proj = np.einsum("nkm,nm->nk", jv, gy)  # g_y . J v, per row and direction
        # E[v v^T] = diag((sigma*scale)^2) for unit-variance directions: g_u = mean_K v proj / c^2.
        c2 = (sigma * ph.scale) ** 2
        gu = np.einsum("nK,nKk->nk", proj, v_eff) / (K * c2)
        grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pre_cache)
        self._watch(jv / ph.sd)  # in normalised units, like the calibration
        return loss, grads, int(rows.shape[0] * rows.shape[1])
