"""What the perturbative estimators share: K directions, one- or two-sided, their law, size and row order."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..calibration import Calibration
from .base import Array, Estimator, log

ORDERS = ("auto", "interleaved", "blocks")


class _Perturbative(Estimator):
    """What the perturbative estimators share: K directions, one- or two-sided, their law, size and row order.

    ``order``: ``"interleaved"`` sends the versions of each row next to each other (slow drift cancels in
    their differences); ``"blocks"`` sends each version's rows as a block of their own, so on a device with
    memory no perturbed row follows its own sibling; ``"auto"`` chooses blocks when calibration finds memory.
    A size chosen by calibration (``sigma=None``) is enlarged during training whenever the differences round
    to zero or sink into the noise; a size set by hand is kept, with a warning.
    """

    lr_rel = 0.03

    def __init__(
        self, seed: int | np.random.Generator, directions: int, two_sided: bool, dist: str,
        sigma: float | None, snr: float, sigma_range: tuple[float, float], order: str,
    ) -> None:
        super().__init__(seed)
        o = self._options(directions=directions, two_sided=two_sided, dist=dist, sigma=sigma, snr=snr,
                          sigma_range=sigma_range, order=order)
        directions, sigma, sigma_range = o["directions"], o["sigma"], o["sigma_range"]
        lo, hi = float(sigma_range[0]), float(sigma_range[1])
        sigma = None if sigma is None else float(sigma)
        snr = float(snr)
        self.directions = int(directions)
        self.two_sided = two_sided
        self.dist = dist
        self.sigma = sigma
        self.auto_sigma = sigma is None
        self.snr = snr
        self.sigma_range = (lo, hi)
        self.order = order
        self.blocks = order == "blocks"
        self.raised = 0
        self._warned: set[str] = set()

    def device_rows_per_batch_row(self) -> int:
        return 2 * self.directions if self.two_sided else self.directions + 1

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "directions": self.directions, "two_sided": self.two_sided,
                "dist": self.dist, "sigma": self.sigma, "snr": self.snr, "order": self.order}

    def diagnostics(self) -> dict[str, Any]:
        return super().diagnostics() | {"sigma": self.sigma, "sigma_raised": self.raised,
                                        "order": "blocks" if self.blocks else "interleaved"}

    def _use_calibration(self, cal: Calibration) -> None:
        if self.order == "auto":
            self.blocks = cal.memory_detected
        self.calibration = cal

    def _query(self, ph: Any, block: Array) -> Array:
        """Readings ``(n, V, m)`` for drives ``(n, V, k)``: versions interleaved per row, or one block each."""
        n, v, k = block.shape
        if self.blocks:
            y = ph.query(block.transpose(1, 0, 2).reshape(-1, k)).reshape(v, n, ph.m)
            return np.ascontiguousarray(y.transpose(1, 0, 2))
        return ph.query(block.reshape(-1, k)).reshape(n, v, ph.m)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s: %s", self.name, text)

    def _enlarge(self, why: str, factor: float = 2.0) -> bool:
        """Grow a calibrated sigma (up to the top of its range); a hand-set one stays, with a warning."""
        hi = self.sigma_range[1]
        if not self.auto_sigma or self.sigma is None:
            self._warn_once("fixed", f"{why} at sigma {self.sigma:g}, set by hand; leave sigma unset to let it adapt")
            return False
        if self.sigma >= hi:
            self._warn_once("top", f"{why} at sigma {self.sigma:g}, the top of sigma_range: the gradient is unreliable")
            return False
        new = min(self.sigma * factor, hi)
        log.warning("%s: %s; sigma %.3g -> %.3g", self.name, why, self.sigma, new)
        self.sigma = new
        self.raised += 1
        if self.calibration is not None:
            self.calibration.sigma = new
        return True

    def state(self) -> dict[str, Any]:
        return super().state() | {"sigma": self.sigma, "blocks": self.blocks, "raised": self.raised,
                                  "warned": sorted(self._warned)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.sigma, self.blocks, self.raised = state["sigma"], state["blocks"], state["raised"]
        self._warned = set(state["warned"])
