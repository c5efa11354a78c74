"""Parameter perturbation (the PGT paper's method), with its sigma search and loss evaluation as pure functions.

:func:`version_losses` evaluates the losses of several versions of the model (baseline and perturbed) in one
device block; :func:`choose_sigma` and :func:`linear_limit` pick the perturbation size from them. They take what
they need and return results; the estimator keeps its own options untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..calibration import Calibration, sigma_floor
from ..errors import UserError
from ..layers import Grads
from ..models import HybridModel
from .base import Array, Batch, draw_directions, log, measure_noise
from .perturbative import _Perturbative

LINEAR = 1.8
"""Smallest ratio of the loss differences at 2 sigma and sigma (2: linear) at which ParameterPGT still grows sigma."""

Query = Callable[[Any, Array], Array]
"""(physical layer, drives ``(n, V, k)``) -> readings ``(n, V, m)``: how a block of versions reaches the device."""
Directions = list[dict[str, Array]]


def post_names(model: HybridModel, x: Array) -> set[str]:
    """Names of the parameters after the device (those ``post_backward`` gives a gradient for)."""
    a, pc = model.pre(x[:1])
    logits, cache = model.post(np.zeros((a.shape[0], model.physical.m)), pc)
    return set(model.post_backward(np.zeros_like(logits), cache)[1])


def params_rms(model: HybridModel, names: list[str]) -> float:
    return float(np.sqrt(np.mean(np.concatenate([model.params[n].ravel() ** 2 for n in names]))))


def draw_param_directions(model: HybridModel, names: list[str], count: int, rng: np.random.Generator,
                          dist: str) -> Directions:
    return [{n: draw_directions(rng, model.params[n].shape, dist) for n in names} for _ in range(count)]


def version_losses(
    model: HybridModel, batch: Batch, names: list[str], sigma: float, dirs: Directions, two_sided: bool,
    query: Query, extra_baselines: int = 0,
) -> tuple[list[float], Grads, int, float]:
    """Losses of every version of the model on ``batch``, sent to the device as one block.

    Versions: ``extra_baselines`` (+1 when one-sided) unperturbed copies, then ``+c v`` and ``-c v`` (or ``+c v``)
    for each direction ``v`` in ``dirs``, ``c = sigma * RMS`` of the perturbed parameters. Returns the losses,
    the exact gradients of the parameters after the device averaged over the versions, the rows sent and ``c``.
    The model's parameters are as they were on return.
    """
    x, labels = batch
    ph = model.physical
    base = {n: model.params[n].copy() for n in names}
    c = sigma * max(params_rms(model, names), 1e-3)
    signs = [(i, s) for i in range(len(dirs)) for s in ((1.0, -1.0) if two_sided else (1.0,))]
    versions: list[tuple[int, float]] = [(-1, 0.0)] * (extra_baselines + (0 if two_sided else 1)) + signs

    def set_version(i: int, s: float) -> None:
        for n in names:
            model.params[n][...] = base[n] if i < 0 else base[n] + s * c * dirs[i][n]

    drives, caches = [], []
    post: Grads = {}
    losses = []
    try:
        for i, s in versions:
            set_version(i, s)
            a, pc = model.pre(x)
            drives.append(ph.drive(a)[0])
            caches.append(pc)
        block = np.stack(drives, axis=1)  # (rows, V, k)
        y = query(ph, block)
        for j, (i, s) in enumerate(versions):
            set_version(i, s)
            logits, post_cache = model.post(ph.normalise(y[:, j]), caches[j])
            loss, g_logits = model.loss(logits, labels)
            losses.append(loss)
            _, g_post, _ = model.post_backward(g_logits, post_cache)
            for n, g in g_post.items():
                post[n] = post[n] + g / len(versions) if n in post else g / len(versions)
    finally:
        set_version(-1, 0.0)
    return losses, post, int(block.shape[0] * block.shape[1]), c


def relative_floor(model: HybridModel, x: Array, names: list[str], floor_a: float, rng: np.random.Generator,
                   dist: str) -> float:
    """Relative sigma below which the drive moves the readout by less than ``floor_a`` (activation units)."""
    if floor_a == 0.0:
        return 0.0
    base = {n: model.params[n].copy() for n in names}
    rms = params_rms(model, names)
    t = 1e-2
    a0, _ = model.pre(x)
    try:
        for n in names:
            model.params[n][...] = base[n] + t * max(rms, 1e-3) * draw_directions(rng, base[n].shape, dist)
        a1, _ = model.pre(x)
    finally:
        for n in names:
            model.params[n][...] = base[n]
    per_unit = float(np.sqrt(np.mean((a1 - a0) ** 2))) / t
    return floor_a / per_unit if per_unit > 0.0 else 0.0


def linear_limit(
    model: HybridModel, batch: Batch, names: list[str], s: float, top: float, repeats: int, loss_noise: float,
    rng: np.random.Generator, dist: str, query: Query, linear: float = LINEAR,
) -> tuple[float, int]:
    """The largest size in ``s`` .. ``top`` at which the loss differences still grow linearly: halving from
    the top, the same ``repeats`` directions at ``t / 2`` (at least ``s``) and ``t``, until their
    noise-corrected RMS ratio is at least ``linear / 2`` times the ratio of the sizes. Returns the size and
    the rows spent (``s`` itself when no larger size is linear)."""
    if top <= s:
        return s, 0
    noise2 = 2.0 * loss_noise**2
    dirs = draw_param_directions(model, names, repeats, rng, dist)
    queries = 0

    def signal(size: float) -> float:
        nonlocal queries
        losses, _, q, _ = version_losses(model, batch, names, size, dirs, True, query)
        queries += q
        d = np.asarray(losses[0::2]) - np.asarray(losses[1::2])
        return float(np.mean(d**2)) - noise2

    t = top
    big = signal(t)
    while t > s:
        u = max(t / 2.0, s)
        small = signal(u)
        if small > 0.0 and big >= (linear / 2.0 * t / u) ** 2 * small:
            log.debug("param: loss differences linear up to sigma %.3g", t)
            return t, queries
        t, big = u, small
    return s, queries


def choose_sigma(
    model: HybridModel, batch: Batch, names: list[str], previous: float | None, sigma_range: tuple[float, float],
    repeats: int, snr: float, rng: np.random.Generator, dist: str, query: Query, floor_a: float,
    linear: float = LINEAR,
) -> tuple[float, float, int]:
    """The perturbation size from the loss noise and the loss-difference slope (never below ``previous``).

    The loss noise comes from ``repeats`` repeats of the unperturbed batch; the slope from ``repeats``
    antithetic pairs in the same block, from 0.05 (or 4x ``previous``) upwards until the differences stand
    out; the size whose difference stands ``snr`` times above the noise, at least the resolution floor, is
    then grown to the :func:`linear_limit`. Returns (sigma, loss noise, rows spent).
    """
    lo, hi = sigma_range
    r = repeats
    s0 = float(np.clip(0.05 if previous is None else 4.0 * previous, lo, hi))
    queries = 0
    want = hi
    loss_noise = 0.0
    for _ in range(4):
        dirs = draw_param_directions(model, names, r, rng, dist)
        losses, _, q, _ = version_losses(model, batch, names, s0, dirs, True, query, extra_baselines=r)
        queries += q
        base = np.asarray(losses[:r])
        diffs = np.asarray(losses[r::2]) - np.asarray(losses[r + 1 :: 2])
        loss_noise = float(base.std(ddof=1))
        pure = float(np.mean(diffs**2)) - 2.0 * loss_noise**2
        if pure > 8.0 * loss_noise**2 or s0 >= hi:  # signal-to-noise 2 or more: extrapolate
            # The loss difference grows linearly with sigma: scale s0 to reach the wanted ratio.
            want = s0 * snr * np.sqrt(2.0) * loss_noise / np.sqrt(max(pure, 1e-30))
            break
        s0 = min(4.0 * s0, hi)  # buried in the noise (or rounded to zero): look again, larger
    floor = relative_floor(model, batch[0], names, floor_a, rng, dist)
    new = float(np.clip(max(want, floor), lo, hi))
    grown, q = linear_limit(model, batch, names, new, hi, r, loss_noise, rng, dist, query, linear)
    return max(new, grown, previous or 0.0), loss_noise, queries + q


class ParameterPGT(_Perturbative):
    """The PGT paper's estimator: random directions in parameter space, gradients from loss differences.

    Every version of the model (baselines, then +v and -v per direction) runs on the same batch in one
    block; ``directions`` K = 4 by default (at equal queries it reaches higher accuracy than K = 1: with
    Adam, a less noisy step is worth more than more steps).

    ``params`` says what is perturbed: None (default) every parameter in front of the device, the layers
    after it getting their exact gradient from the measured readings (averaged over the versions);
    ``"all"`` every parameter, as the paper does (its all-parameter variant, for comparison); or a tuple
    of name prefixes. A layer after the device that is not perturbed always gets its exact gradient; one
    in front of it that is not perturbed gets none (it stays as it is).

    ``sigma`` is relative to the RMS of the perturbed parameters; None = chosen by :meth:`fit_to_device`: at
    least the size whose loss differences stand ``snr`` times above the loss noise (from ``repeats``
    repeated and perturbed losses) and the readout's resolution floor, then grown to the largest size in
    ``sigma_range`` at which the loss differences are still linear in it (see :func:`linear_limit`): the
    gradient shrinks during training while the noise does not, so a size that only just clears the noise
    at the start is buried in it later (on the board ring, digits, 1000 steps, seeds 0-2: 0.86 test accuracy
    at the noise-limited 0.012, 0.91 at the linear limit 0.1-0.2). It is chosen again during training when,
    over ``window`` steps, the loss differences sink into the noise.
    """

    name = "param"

    def __init__(
        self, seed: int | np.random.Generator = 0, directions: int = 4, two_sided: bool = True,
        dist: str = "rademacher", sigma: float | None = None, params: str | tuple[str, ...] | None = None,
        snr: float = 3.0, sigma_range: tuple[float, float] = (1e-3, 0.2), order: str = "auto",
        repeats: int = 12, window: int = 50,
    ) -> None:
        super().__init__(seed, directions, two_sided, dist, sigma, snr, sigma_range, order)
        o = self._options(params=params, repeats=repeats, window=window)
        self.subset: str | tuple[str, ...] | None = o["params"] if o["params"] in (None, "all") else tuple(o["params"])
        self.repeats = int(o["repeats"])
        self.window = int(o["window"])
        self.loss_noise: float | None = None
        self._diffs: list[float] = []

    def config(self) -> dict[str, Any]:
        subset = self.subset if self.subset is None or self.subset == "all" else list(self.subset)
        return super().config() | {"params": subset, "repeats": self.repeats, "window": self.window}

    def diagnostics(self) -> dict[str, Any]:
        return super().diagnostics() | {"loss_noise": self.loss_noise}

    def state(self) -> dict[str, Any]:
        return super().state() | {"loss_noise": self.loss_noise, "diffs": list(self._diffs)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.loss_noise, self._diffs = state["loss_noise"], list(state["diffs"])

    def check(self, model: HybridModel, x: Array) -> None:
        self._names(model, x)

    def _names(self, model: HybridModel, x: Array) -> list[str]:
        """The perturbed parameters (see the class docstring)."""
        if self.subset == "all":
            return list(model.params)
        if self.subset is None:
            post = post_names(model, x)
            names = [n for n in model.params if n not in post]
        else:
            names = [n for n in model.params if n.startswith(tuple(self.subset))]
        if not names:
            groups = sorted({n.split(".")[0] for n in model.params})
            raise UserError(f"params={','.join(self.subset or ())!r} matches no parameter of the model "
                            f"(its groups: {', '.join(groups)}; or 'all')")
        return names

    def fit_to_device(self, model: HybridModel, batch: Batch) -> Calibration:
        """Device figures (noise, slope, resolution, memory), then ``sigma`` from the loss noise
        (:func:`choose_sigma`)."""
        cal = measure_noise(model, batch[0], self.rng)
        self._use_calibration(cal)
        if self.sigma is None:
            cal.queries += self._choose_sigma(model, batch)
        cal.sigma = self.sigma
        return cal

    def _choose_sigma(self, model: HybridModel, batch: Batch) -> int:
        """Set ``sigma`` (only ever upwards once set) and ``loss_noise``; returns the rows spent."""
        cal = self.calibration
        floor_a = sigma_floor(cal) if cal is not None else 0.0
        new, self.loss_noise, queries = choose_sigma(
            model, batch, self._names(model, batch[0]), self.sigma, self.sigma_range, self.repeats, self.snr,
            self.rng, self.dist, self._query, floor_a, LINEAR)
        if self.sigma is not None and new > self.sigma:
            log.warning("%s: re-calibrated, sigma %.3g -> %.3g", self.name, self.sigma, new)
            self.raised += 1
        self.sigma = new
        if self.calibration is not None:
            self.calibration.sigma = self.sigma
        return queries

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        names = self._names(model, batch[0])
        K = self.directions
        dirs = draw_param_directions(model, names, K, self.rng, self.dist)
        sigma = self.sigma if self.sigma is not None else 1e-2
        losses, post, queries, c = version_losses(model, batch, names, sigma, dirs, self.two_sided, self._query)
        grads: Grads = {n: np.zeros_like(p) for n, p in model.params.items()}
        if self.two_sided:
            diffs = [losses[2 * i] - losses[2 * i + 1] for i in range(K)]
            coefs = [dl / (2.0 * c * K) for dl in diffs]
            loss = float(np.mean(losses))
        else:
            diffs = [losses[i + 1] - losses[0] for i in range(K)]
            coefs = [dl / (c * K) for dl in diffs]
            loss = float(losses[0])
        for i, coef in enumerate(coefs):
            for n in names:
                grads[n] += coef * dirs[i][n]
        for n, g in post.items():
            if n not in names:
                grads[n] = g  # after the device and not perturbed: exact
        return loss, grads, queries + self._watch(model, batch, diffs)

    def _watch(self, model: HybridModel, batch: Batch, diffs: list[float]) -> int:
        """Enlarge sigma on zero differences; choose it again when, over ``window`` steps, the loss
        differences sank into the loss noise. Returns the queries spent."""
        zero = float(np.mean(np.asarray(diffs) == 0.0))
        if zero > 0.25:
            self._enlarge(f"{zero:.0%} of the loss differences were exactly zero")
            self._diffs.clear()
            return 0
        if not self.auto_sigma or self.loss_noise is None or self.loss_noise == 0.0:
            return 0
        # Noise variance of a two-sided difference: 2 loss_noise^2; one-sided the same.
        self._diffs.extend(d * d / (2.0 * self.loss_noise**2) for d in diffs)
        if len(self._diffs) < self.window * self.directions:
            return 0
        snr_now = float(np.sqrt(max(float(np.mean(self._diffs)) - 1.0, 0.0)))
        self._diffs.clear()
        if snr_now >= self.snr / 2 or (self.sigma or 0.0) >= self.sigma_range[1]:
            return 0
        return self._choose_sigma(model, batch)
