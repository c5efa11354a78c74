"""Gradient estimators: strategies turning (model, batch) into (loss, gradients, device queries spent).

Every estimator runs the digital layers exactly and differs only in how it crosses the device:

* :class:`Backprop` — the reference: the reservoir's exact ``vjp`` (noise-free simulator only).
* :class:`NodePGT` — perturbs the reservoir's *inputs*: each sample (token) gets its own random direction per
  step, the device's directional derivative ``J v`` is measured from the block, and
  ``g_u = (v / c^2) (g_y . J v)`` is backpropagated exactly through the digital layers in front; the layers
  after the device get their exact gradient from the measured outputs. Variance is that of a d=k (drive
  channels) estimate divided by the number of rows in the batch.
* :class:`SurrogatePGT` — forward through the device only, backward through a differentiable surrogate of
  the device fitted online (ridge regression on random features) to every (drive, volts) pair seen so far.
* :class:`TwinPGT` — twin first: probe the device, fit a twin, train through it with no device rows, check
  on the device and correct with device-in-the-loop steps where the twin is wrong (:mod:`.twin`).
* :class:`ParameterPGT` — the PGT paper's method: random directions in parameter space, loss differences,
  antithetic pairs on a shared batch. By default only the layers in front of the device are perturbed and
  those after it get their exact gradient; ``params="all"`` is the paper's all-parameter variant.

Baseline and perturbed rows go to the device interleaved in one block (one ``forward`` call), so slow drift
cancels in their differences; when calibration finds that a reading depends on the previous row, each
version's rows go in a block of their own instead (:mod:`pgt.calibration`). Randomness comes from the
estimator's own generator (checkpointed with it). ``fit_to_device`` measures the device's repeat noise, slope,
resolution and memory (counted queries) and chooses a perturbation size that cannot fall below the readout's
resolution; during training, a perturbation whose differences round to zero or sink into the noise is
enlarged. Options are checked by one validator (:mod:`pgt.estimator_options`) wherever they come from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UserError
from ..estimator_options import validate
from .backprop import Backprop
from .base import Array, Batch, Estimator, measure_noise
from .node import NodePGT
from .param import ParameterPGT
from .perturbative import ORDERS
from .surrogate import RandomFeatureSurrogate, SurrogatePGT
from .twin import TwinPGT

ESTIMATORS: dict[str, type[Estimator]] = {
    "backprop": Backprop, "node": NodePGT, "surrogate": SurrogatePGT, "param": ParameterPGT, "twin": TwinPGT,
}


def _class(name: str) -> type[Estimator]:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise UserError(f"unknown estimator {name!r} (choose from {', '.join(ESTIMATORS)})") from None


def check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of estimator ``name`` checked and converted (one-line UserError otherwise), before any query."""
    return validate(name, _class(name), options)


def make_estimator(name: str, seed: int | np.random.Generator = 0, **options: Any) -> Estimator:
    """An estimator by name (see :data:`ESTIMATORS`) with its options, checked by :func:`check_options`."""
    return _class(name)(seed, **check_options(name, options))


__all__ = ["ESTIMATORS", "ORDERS", "Array", "Backprop", "Batch", "Estimator", "NodePGT", "ParameterPGT",
           "RandomFeatureSurrogate", "SurrogatePGT", "TwinPGT", "check_options", "make_estimator", "measure_noise"]
