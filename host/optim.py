"""Optimizers as small composable (init, update) pairs, in the spirit of optax.

A :class:`Transform` maps gradients to updates: ``state = t.init(params)``, then
``updates, state = t.update(grads, state, params)``; ``apply_updates`` adds the updates to the parameters in
place. ``chain`` composes transforms. States are plain dicts/lists of numpy arrays and ints, so they go
into checkpoints; the transforms themselves are rebuilt from the run's config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UserError

Params = dict[str, np.ndarray]
Schedule = Callable[[int], float]


@dataclass(frozen=True)
class Transform:
    init: Callable[[Params], Any]
    update: Callable[[Params, Any, Params], tuple[Params, Any]]


def chain(*transforms: Transform) -> Transform:
    """Apply the transforms in order."""

    def init(params: Params) -> Any:
        return [t.init(params) for t in transforms]

    def update(grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        new_state = []
        for t, s in zip(transforms, state):
            grads, s = t.update(grads, s, params)
            new_state.append(s)
        return grads, new_state

    return Transform(init, update)


def clip_by_global_norm(max_norm: float) -> Transform:
    """Scale the whole gradient down so its global L2 norm is at most ``max_norm``."""

    def update(grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        if norm > max_norm:
            grads = {k: g * (max_norm / norm) for k, g in grads.items()}
        return grads, state

    return Transform(lambda p: None, update)


def trace(decay: float, nesterov: bool = False) -> Transform:
    """Momentum: ``m = decay m + g`` (heavy ball, or Nesterov's look-ahead)."""

    def init(params: Params) -> Any:
        return {k: np.zeros_like(v) for k, v in params.items()}

    def update(grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        m = {k: decay * state[k] + g for k, g in grads.items()}
        out = {k: g + decay * m[k] for k, g in grads.items()} if nesterov else m
        return out, m

    return Transform(init, update)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    def init(params: Params) -> Any:
        z = {k: np.zeros_like(v) for k, v in params.items()}
        return {"t": 0, "m": z, "v": {k: a.copy() for k, a in z.items()}}

    def update(grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        t = state["t"] + 1
        m = {k: b1 * state["m"][k] + (1 - b1) * g for k, g in grads.items()}
        v = {k: b2 * state["v"][k] + (1 - b2) * g * g for k, g in grads.items()}
        c1, c2 = 1 - b1**t, 1 - b2**t
        out = {k: (m[k] / c1) / (np.sqrt(v[k] / c2) + eps) for k in grads}
        return out, {"t": t, "m": m, "v": v}

    return Transform(init, update)


def scale_by_schedule(schedule: Schedule) -> Transform:
    """Multiply by ``-schedule(step)`` (descent)."""

    def update(grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        lr = schedule(state)
        return {k: -lr * g for k, g in grads.items()}, state + 1

    return Transform(lambda p: 0, update)


# -- schedules ------------------------------------------------------------------------------------------
def constant(lr: float) -> Schedule:
    return lambda step: lr


def cosine_decay(lr: float, steps: int, final: float = 0.1, warmup: int = 0) -> Schedule:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` down to ``final * lr`` at ``steps``."""

    def schedule(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        frac = min(1.0, (step - warmup) / max(1, steps - warmup))
        return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * frac)))

    return schedule


def make_schedule(name: str, lr: float, steps: int) -> Schedule:
    if name == "constant":
        return constant(lr)
    if name == "cosine":
        return cosine_decay(lr, steps)
    raise UserError(f"unknown schedule {name!r} (constant or cosine)")


# -- optimizers ---------------------------------------------------------------------------------------
def sgd(lr: float | Schedule, momentum: float = 0.0, nesterov: bool = False, clip: float | None = None) -> Transform:
    schedule = lr if callable(lr) else constant(lr)
    parts = [clip_by_global_norm(clip)] if clip else []
    if momentum:
        parts.append(trace(momentum, nesterov))
    return chain(*parts, scale_by_schedule(schedule))


def adam(lr: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         clip: float | None = None) -> Transform:
    schedule = lr if callable(lr) else constant(lr)
    parts = [clip_by_global_norm(clip)] if clip else []
    return chain(*parts, scale_by_adam(b1, b2, eps), scale_by_schedule(schedule))


def make_optimizer(name: str, schedule: Schedule, clip: float | None = None) -> Transform:
    """``sgd``, ``momentum`` (0.9) or ``adam`` with a learning-rate schedule and optional clipping."""
    if name == "sgd":
        return sgd(schedule, clip=clip)
    if name == "momentum":
        return sgd(schedule, momentum=0.9, clip=clip)
    if name == "adam":
        return adam(schedule, clip=clip)
    raise UserError(f"unknown optimizer {name!r} (sgd, momentum or adam)")


def apply_updates(params: Params, updates: Params) -> None:
    """Add the updates to the parameter arrays in place (models hold references to them)."""
    for k, u in updates.items():
        params[k] += u
