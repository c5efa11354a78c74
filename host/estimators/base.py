"""What every estimator shares: the base class, perturbation directions, the post-device loss, calibration."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..calibration import Calibration, measure_response
from ..errors import UserError
from ..estimator_options import validate
from ..layers import Grads
from ..models import HybridModel

Array = np.ndarray
Batch = tuple[Array, Array]
log = logging.getLogger("pgt.estimators")


def draw_directions(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> Array:
    """Random perturbation directions of unit variance per coordinate (``rademacher`` or ``gaussian``)."""
    if dist == "rademacher":
        return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    if dist == "gaussian":
        return rng.standard_normal(shape)
    raise UserError(f"unknown perturbation distribution {dist!r} (rademacher or gaussian)")


def measure_noise(
    model: HybridModel, x: Array, rng: np.random.Generator, rows: int = 24,
    observe: Callable[[Array, Array], None] | None = None,
) -> Calibration:
    """Measure the device (:func:`~pgt.calibration.measure_response`) at the activations the model gives the
    first ``rows`` samples of ``x``."""
    a, _ = model.pre(x)
    return measure_response(model.physical, a[: min(rows, a.shape[0])], rng, observe=observe)


def forward_loss(model: HybridModel, z: Array, pre_cache: Any, labels: Array) -> tuple[float, Grads, Array, Any]:
    """Post-device forward and exact backward: (loss, post grads, grad at z, skip-gradient)."""
    logits, post_cache = model.post(z, pre_cache)
    loss, g_logits = model.loss(logits, labels)
    gz, grads, skip = model.post_backward(g_logits, post_cache)
    return loss, grads, gz, skip


class Estimator:
    """Base class. Subclasses implement ``estimate``; ``observe`` lets them learn from any device data."""

    name = "estimator"
    needs_vjp = False
    lr_rel = 0.1
    """Adam's starting step relative to the RMS of the initial weights (when the config sets none)."""

    def __init__(self, seed: int | np.random.Generator = 0) -> None:
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.calibration: Calibration | None = None

    def _options(self, **options: Any) -> dict[str, Any]:
        """The constructor's options through the one validator (:func:`pgt.estimator_options.validate`)."""
        return validate(self.name, type(self), options)

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        raise NotImplementedError

    def device_rows_per_batch_row(self) -> int:
        """Device rows a step sends per row of the batch (baseline and perturbed copies)."""
        return 1

    def check(self, model: HybridModel, x: Array) -> None:
        """Refuse (UserError) options that do not fit ``model`` (``x``: a sample input), before any query."""

    def observe(self, u: Array, y: Array) -> None:
        """Device data gathered elsewhere (probe batches, evaluations): drives (mA) and volts."""

    def fit_to_device(self, model: HybridModel, batch: Batch) -> Calibration:
        """Measure the device (:func:`pgt.calibration.measure_response`); its rows also go to :meth:`observe`."""
        self.calibration = measure_noise(model, batch[0], self.rng, observe=self.observe)
        return self.calibration

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def describe(self) -> str:
        """What the estimator does, for the run header."""
        return f"estimator {self.name}"

    # Evaluation hooks: an estimator with a twin of the device (:class:`pgt.estimators.twin.TwinPGT`) lets
    # the trainer validate through the twin between device checks, and learns from the comparison.
    def twin_readings(self, u: Array) -> Array | None:
        """Normalised readings a twin of the device predicts for drives ``u`` (None: no twin)."""
        return None

    def eval_through_device(self, step: int, last: bool) -> bool:
        """Whether the validation at ``step`` (``last``: the run's end) goes through the device."""
        return True

    def checked(self, step: int, model: HybridModel, device_right: Array, twin_right: Array) -> None:
        """Which validation samples the device's and the twin's readings classified right (a check at ``step``)."""

    def state(self) -> dict[str, Any]:
        """What evolves during training (generator, calibration, ...) as plain data and arrays (checkpoints)."""
        cal = None if self.calibration is None else dataclasses.asdict(self.calibration)
        return {"rng": dict(self.rng.bit_generator.state), "calibration": cal}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (on an estimator built with the same options)."""
        self.rng.bit_generator.state = state["rng"]
        cal = state["calibration"]
        self.calibration = None if cal is None else Calibration(**cal)

    def diagnostics(self) -> dict[str, Any]:
        """Numbers worth logging with each evaluation (calibrated noise and sigma, surrogate fit...)."""
        cal = self.calibration
        return {} if cal is None else cal.summary()
