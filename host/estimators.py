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
* :class:`ParameterPGT` — the PGT paper's method: random directions in parameter space, loss differences,
  antithetic pairs on a shared batch. By default only the layers in front of the device are perturbed and
  those after it get their exact gradient; ``params="all"`` is the paper's all-parameter variant.

Baseline and perturbed rows go to the device interleaved in one block (one ``forward`` call), so slow drift
cancels in their differences; when calibration finds that a reading depends on the previous row, each
version's rows go in a block of their own instead (:mod:`pgt.calibration`). Randomness comes from the
estimator's own generator (checkpointed with it). ``calibrate`` measures the device's repeat noise, slope,
resolution and memory (counted queries) and chooses a perturbation size that cannot fall below the readout's
resolution; during training, a perturbation whose differences round to zero or sink into the noise is
enlarged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from .calibration import Calibration, measure, node_sigma, sigma_floor, zero_fraction
from .errors import UserError
from .layers import Grads
from .models import HybridModel

Array = np.ndarray
Batch = tuple[Array, Array]
log = logging.getLogger("pgt.estimators")


def _directions(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> Array:
    if dist == "rademacher":
        return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    if dist == "gaussian":
        return rng.standard_normal(shape)
    raise UserError(f"unknown perturbation distribution {dist!r} (rademacher or gaussian)")


def measure_noise(
    model: HybridModel, x: Array, rng: np.random.Generator, rows: int = 24,
    observe: Callable[[Array, Array], None] | None = None,
) -> Calibration:
    """Calibrate the device at the activations the model gives the first ``rows`` samples of ``x``."""
    a, _ = model.pre(x)
    return measure(model.physical, a[: min(rows, a.shape[0])], rng, observe=observe)


class Estimator:
    """Base class. Subclasses implement ``estimate``; ``observe`` lets them learn from any device data."""

    name = "estimator"
    needs_vjp = False

    def __init__(self, seed: int | np.random.Generator = 0) -> None:
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.calibration: Calibration | None = None

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        raise NotImplementedError

    def rows_per_row(self) -> int:
        """Device rows a step sends per row of the batch (baseline and perturbed copies)."""
        return 1

    def check(self, model: HybridModel, x: Array) -> None:
        """Refuse (UserError) options that do not fit ``model`` (``x``: a sample input), before any query."""

    def observe(self, u: Array, y: Array) -> None:
        """Device data gathered elsewhere (probe batches, evaluations): drives (mA) and volts."""

    def calibrate(self, model: HybridModel, batch: Batch) -> Calibration:
        """Measure the device (:func:`pgt.calibration.measure`); its rows also go to :meth:`observe`."""
        self.calibration = measure_noise(model, batch[0], self.rng, observe=self.observe)
        return self.calibration

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

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


def _forward_loss(model: HybridModel, z: Array, pre_cache: Any, labels: Array) -> tuple[float, Grads, Array, Any]:
    """Post-device forward and exact backward: (loss, post grads, grad at z, skip-gradient)."""
    logits, post_cache = model.post(z, pre_cache)
    loss, g_logits = model.loss(logits, labels)
    gz, grads, skip = model.post_backward(g_logits, post_cache)
    return loss, grads, gz, skip


class Backprop(Estimator):
    """Exact gradient through the reservoir's ``vjp`` (the reference; one query per row)."""

    name = "backprop"
    needs_vjp = True

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        x, labels = batch
        ph = model.physical
        if ph.reservoir is None or not hasattr(ph.reservoir, "vjp"):
            raise UserError("backprop needs a differentiable reservoir (the noise-free simulator)")
        a, pre_cache = model.pre(x)
        u, mask = ph.drive(a)
        y = ph.query(u)
        loss, grads, gz, skip = _forward_loss(model, ph.normalise(y), pre_cache, labels)
        gu = ph.reservoir.vjp(u, ph.normalise_backward(gz))
        grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pre_cache)
        return loss, grads, u.shape[0]


ORDERS = ("auto", "interleaved", "blocks")
LINEAR = 1.8
"""Smallest ratio of the loss differences at 2 sigma and sigma (2: linear) at which ParameterPGT still grows sigma."""


def _number(name: str, value: Any, low: float, high: float = np.inf, integer: bool = False,
            strict: bool = True) -> Any:
    """``value`` as a finite number (int if ``integer``) above ``low`` (or at it if not ``strict``), at most
    ``high``; a UserError naming the option and its range otherwise."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")
    ok = ok and np.isfinite(v) and (v > low if strict else v >= low) and v <= high
    if ok and integer:
        ok = v.is_integer()
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"{'>' if strict else '>='} {low:g}" + ("" if high == np.inf else f" and <= {high:g}")
        raise UserError(f"{name} must be {kind} {bound}, got {value!r}")
    return int(v) if integer else v


class _Perturbative(Estimator):
    """What the perturbative estimators share: K directions, one- or two-sided, their law, size and row order.

    ``order``: ``"interleaved"`` sends the versions of each row next to each other (slow drift cancels in
    their differences); ``"blocks"`` sends each version's rows as a block of their own, so on a device with
    memory no perturbed row follows its own sibling; ``"auto"`` chooses blocks when calibration finds memory.
    A size chosen by calibration (``sigma=None``) is enlarged during training whenever the differences round
    to zero or sink into the noise; a size set by hand is kept, with a warning.
    """

    def __init__(
        self, seed: int | np.random.Generator, directions: int, two_sided: bool, dist: str,
        sigma: float | None, snr: float, sigma_range: tuple[float, float], order: str,
    ) -> None:
        super().__init__(seed)
        directions = _number("directions", directions, 1, integer=True, strict=False)
        if not isinstance(two_sided, bool):
            raise UserError(f"two_sided must be true or false, got {two_sided!r}")
        if dist not in ("rademacher", "gaussian"):
            raise UserError(f"unknown perturbation distribution {dist!r} (rademacher or gaussian)")
        if order not in ORDERS:
            raise UserError(f"unknown row order {order!r} (choose from {', '.join(ORDERS)})")
        if not (isinstance(sigma_range, (tuple, list)) and len(sigma_range) == 2):
            raise UserError(f"sigma_range must be two sizes (low, high), got {sigma_range!r}")
        lo = _number("sigma_range low", sigma_range[0], 0.0)
        hi = _number("sigma_range high", sigma_range[1], lo, strict=False)
        if sigma is not None:
            sigma = _number("sigma", sigma, 0.0)
        snr = _number("snr", snr, 0.0)
        self.directions = directions
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

    def rows_per_row(self) -> int:
        return 2 * self.directions if self.two_sided else self.directions + 1

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "directions": self.directions, "two_sided": self.two_sided,
                "dist": self.dist, "sigma": self.sigma, "snr": self.snr, "order": self.order}

    def diagnostics(self) -> dict[str, Any]:
        return super().diagnostics() | {"sigma": self.sigma, "sigma_raised": self.raised,
                                        "order": "blocks" if self.blocks else "interleaved"}

    def _calibrated(self, cal: Calibration) -> None:
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


class NodePGT(_Perturbative):
    """Perturb the device inputs, one independent direction per row (sample or token) and direction.

    ``directions`` K per row; ``two_sided`` uses +v and -v (2K rows per row, the mean is the baseline),
    otherwise a baseline plus K perturbed rows ((K+1) rows per row). ``sigma`` is the perturbation size in
    activation units (the drive moves by ``sigma * scale`` mA); None = chosen by :meth:`calibrate` from the
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
        self.zero_tolerance = _number("zero_tolerance", zero_tolerance, 0.0, 1.0)
        self._snr_ms: list[float] = []

    def state(self) -> dict[str, Any]:
        return super().state() | {"snr_ms": list(self._snr_ms)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._snr_ms = list(state["snr_ms"])

    def calibrate(self, model: HybridModel, batch: Batch) -> Calibration:
        cal = measure_noise(model, batch[0], self.rng)
        if self.sigma is None:
            self.sigma = node_sigma(cal, self.snr, *self.sigma_range)
        elif self.sigma < sigma_floor(cal):
            self._warn_once("floor", f"sigma {self.sigma:g} is below the readout's resolution floor "
                            f"{sigma_floor(cal):.3g}: most differences will round to zero")
        cal.sigma = self.sigma
        self._calibrated(cal)
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
        d = _directions(self.rng, (n, K, k), self.dist)
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
        loss, grads, gz, skip = _forward_loss(model, ph.normalise(y_base), pre_cache, labels)
        gy = ph.normalise_backward(gz)
        proj = np.einsum("nkm,nm->nk", jv, gy)  # g_y . J v, per row and direction
        # E[v v^T] = diag((sigma*scale)^2) for unit-variance directions: g_u = mean_K v proj / c^2.
        c2 = (sigma * ph.scale) ** 2
        gu = np.einsum("nK,nKk->nk", proj, v_eff) / (K * c2)
        grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pre_cache)
        self._watch(jv / ph.sd)  # in normalised units, like the calibration
        return loss, grads, int(rows.shape[0] * rows.shape[1])


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
        self.width = width
        self.refit_every = refit_every
        self.buffer = buffer
        self.features = features
        self.ridge = ridge
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

    def refit(self, model: HybridModel) -> None:
        ph = model.physical
        if self.surrogate is None:
            self.surrogate = RandomFeatureSurrogate(ph.k, ph.m, self.rng, self.features, self.ridge, self.width)
            self.surrogate.set_range(ph.low, ph.high)
        u = np.concatenate(self._u)[-self.buffer :]
        y = ph.normalise(np.concatenate(self._y)[-self.buffer :])
        self.fit_error = self.surrogate.fit(u, y)
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
        loss, grads, gz, skip = _forward_loss(model, ph.normalise(y), pre_cache, labels)
        gu = self.surrogate.vjp(u, gz)  # the surrogate maps drives to *normalised* readings
        grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pre_cache)
        return loss, grads, u.shape[0]


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

    ``sigma`` is relative to the RMS of the perturbed parameters; None = chosen by :meth:`calibrate`: at
    least the size whose loss differences stand ``snr`` times above the loss noise (from ``repeats``
    repeated and perturbed losses) and the readout's resolution floor, then grown to the largest size in
    ``sigma_range`` at which the loss differences are still linear in it (see :meth:`_linear_limit`): the
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
        if isinstance(params, str) and params != "all":
            params = tuple(p for p in params.split(",") if p)  # "front" or "front,back" from a command line
        if isinstance(params, list):
            params = tuple(params)
        if not (params is None or params == "all" or (isinstance(params, tuple) and params
                                                         and all(isinstance(p, str) for p in params))):
            raise UserError(f"params must be 'all' or a list of parameter-name prefixes, got {params!r}")
        self.subset = params
        self.repeats = _number("repeats", repeats, 3, integer=True, strict=False)
        self.window = _number("window", window, 1, integer=True, strict=False)
        self.loss_noise: float | None = None
        self._diffs: list[float] = []
        self._dirs: list[dict[str, Array]] = []
        self._c = 0.0
        self._names_used: list[str] = []
        self._post: Grads = {}

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
            post = _post_names(model, x)
            names = [n for n in model.params if n not in post]
        else:
            names = [n for n in model.params if n.startswith(tuple(self.subset))]
        if not names:
            groups = sorted({n.split(".")[0] for n in model.params})
            raise UserError(f"params={','.join(self.subset or ())!r} matches no parameter of the model "
                            f"(its groups: {', '.join(groups)}; or 'all')")
        return names

    def calibrate(self, model: HybridModel, batch: Batch) -> Calibration:
        """Device figures (noise, slope, resolution, memory), then ``sigma`` from the loss noise.

        ``sigma`` is the smallest size whose loss difference stands ``snr`` times above the loss noise of a
        difference, measured from ``repeats`` repeats of the unperturbed batch and ``repeats`` antithetic
        pairs (one block), and at least what moves the readout by a few resolution steps.
        """
        cal = measure_noise(model, batch[0], self.rng)
        self._calibrated(cal)
        if self.sigma is None:
            cal.queries += self._choose_sigma(model, batch)
        cal.sigma = self.sigma
        return cal

    def _floor(self, model: HybridModel, x: Array) -> float:
        """Relative sigma below which the drive moves the readout by less than a few resolution steps."""
        cal = self.calibration
        floor_a = sigma_floor(cal) if cal is not None else 0.0
        if floor_a == 0.0:
            return 0.0
        names = self._names(model, x)
        base = {n: model.params[n].copy() for n in names}
        rms = float(np.sqrt(np.mean(np.concatenate([b.ravel() ** 2 for b in base.values()]))))
        t = 1e-2
        a0, _ = model.pre(x)
        try:
            for n in names:
                model.params[n][...] = base[n] + t * max(rms, 1e-3) * _directions(self.rng, base[n].shape, self.dist)
            a1, _ = model.pre(x)
        finally:
            for n in names:
                model.params[n][...] = base[n]
        per_unit = float(np.sqrt(np.mean((a1 - a0) ** 2))) / t
        return floor_a / per_unit if per_unit > 0.0 else 0.0

    def _choose_sigma(self, model: HybridModel, batch: Batch) -> int:
        """Measure the loss noise and the loss-difference slope; set ``sigma`` (only ever upwards once set).

        Returns the queries spent.
        """
        lo, hi = self.sigma_range
        r = self.repeats
        # First from 0.05 (a size that works on the simulated ring); again from above the size that sank.
        s0 = float(np.clip(0.05 if self.sigma is None else 4.0 * self.sigma, lo, hi))
        queries = 0
        saved = (self.directions, self.two_sided)
        want = hi
        for _ in range(4):
            self.directions, self.two_sided, keep, self.sigma = r, True, self.sigma, s0
            try:
                losses, q = self._losses(model, batch, extra_baselines=r)
            finally:
                (self.directions, self.two_sided), self.sigma = saved, keep
            queries += q
            base = np.asarray(losses[:r])
            diffs = np.asarray(losses[r::2]) - np.asarray(losses[r + 1 :: 2])
            self.loss_noise = float(base.std(ddof=1))
            pure = float(np.mean(diffs**2)) - 2.0 * self.loss_noise**2
            if pure > 8.0 * self.loss_noise**2 or s0 >= hi:  # signal-to-noise 2 or more: extrapolate
                # The loss difference grows linearly with sigma: scale s0 to reach the wanted ratio.
                want = s0 * self.snr * np.sqrt(2.0) * self.loss_noise / np.sqrt(max(pure, 1e-30))
                break
            s0 = min(4.0 * s0, hi)  # buried in the noise (or rounded to zero): look again, larger
        floor = self._floor(model, batch[0])
        new = float(np.clip(max(want, floor), lo, hi))
        grown, q = self._linear_limit(model, batch, new)
        queries += q
        new = max(new, grown)
        if self.sigma is not None and new > self.sigma:
            log.warning("%s: re-calibrated, sigma %.3g -> %.3g", self.name, self.sigma, new)
            self.raised += 1
        self.sigma = max(new, self.sigma or 0.0)
        if self.calibration is not None:
            self.calibration.sigma = self.sigma
        return queries

    def _linear_limit(self, model: HybridModel, batch: Batch, s: float) -> tuple[float, int]:
        """The largest size in ``s`` .. top of ``sigma_range`` at which the loss differences still grow
        linearly: halving from the top, the same ``repeats`` directions at ``t / 2`` (at least ``s``) and ``t``,
        until their noise-corrected RMS ratio is at least ``LINEAR / 2`` times the ratio of the sizes. Returns
        the size and the queries spent (``s`` itself when no larger size is linear)."""
        r = self.repeats
        noise2 = 2.0 * (self.loss_noise or 0.0) ** 2
        names = self._names(model, batch[0])
        dirs = [{n: _directions(self.rng, model.params[n].shape, self.dist) for n in names} for _ in range(r)]
        saved = (self.two_sided, self.sigma)
        queries = 0

        def signal(size: float) -> float:
            nonlocal queries
            self.two_sided, self.sigma = True, size
            try:
                losses, q = self._losses(model, batch, dirs=dirs)
            finally:
                self.two_sided, self.sigma = saved
            queries += q
            d = np.asarray(losses[0::2]) - np.asarray(losses[1::2])
            return float(np.mean(d**2)) - noise2

        t = self.sigma_range[1]
        if t <= s:
            return s, 0
        big = signal(t)
        while t > s:
            u = max(t / 2.0, s)
            small = signal(u)
            if small > 0.0 and big >= (LINEAR / 2.0 * t / u) ** 2 * small:
                log.debug("%s: loss differences linear up to sigma %.3g", self.name, t)
                return t, queries
            t, big = u, small
        return s, queries

    def _losses(self, model: HybridModel, batch: Batch, extra_baselines: int = 0,
                dirs: list[dict[str, Array]] | None = None) -> tuple[list[float], int]:
        """Losses of every version of the model (baselines first, then +/- or + per direction), one block.

        Draws the directions (unless given) into ``self._dirs`` and the step size into ``self._c``; the exact
        gradients of the parameters after the device, averaged over the versions, go to ``self._post``.
        """
        x, labels = batch
        ph = model.physical
        names = self._names(model, x)
        base = {n: model.params[n].copy() for n in names}
        rms = float(np.sqrt(np.mean(np.concatenate([b.ravel() ** 2 for b in base.values()]))))
        c = (self.sigma if self.sigma is not None else 1e-2) * max(rms, 1e-3)
        K = self.directions if dirs is None else len(dirs)
        if dirs is None:
            dirs = [{n: _directions(self.rng, base[n].shape, self.dist) for n in names} for _ in range(K)]
        signs = [(i, s) for i in range(K) for s in ((1.0, -1.0) if self.two_sided else (1.0,))]
        n_base = extra_baselines + (0 if self.two_sided else 1)
        versions: list[tuple[int, float]] = [(-1, 0.0)] * n_base + signs

        def set_version(i: int, s: float) -> None:
            for n in names:
                model.params[n][...] = base[n] if i < 0 else base[n] + s * c * dirs[i][n]

        drives, caches = [], []
        post: Grads = {}
        try:
            for i, s in versions:
                set_version(i, s)
                a, pc = model.pre(x)
                drives.append(ph.drive(a)[0])
                caches.append(pc)
            block = np.stack(drives, axis=1)  # (rows, V, k)
            y = self._query(ph, block)
            losses = []
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
        self._dirs, self._c, self._names_used, self._post = dirs, c, names, post
        return losses, int(block.shape[0] * block.shape[1])

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        losses, queries = self._losses(model, batch)
        dirs, c, names, K = self._dirs, self._c, self._names_used, self.directions
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
        for n, g in self._post.items():
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


def _post_names(model: HybridModel, x: Array) -> set[str]:
    """Names of the parameters after the device (those ``post_backward`` gives a gradient for)."""
    a, pc = model.pre(x[:1])
    logits, cache = model.post(np.zeros((a.shape[0], model.physical.m)), pc)
    return set(model.post_backward(np.zeros_like(logits), cache)[1])


ESTIMATORS: dict[str, type[Estimator]] = {
    "backprop": Backprop, "node": NodePGT, "surrogate": SurrogatePGT, "param": ParameterPGT,
}


def make_estimator(name: str, seed: int | np.random.Generator = 0, **options: Any) -> Estimator:
    """An estimator by name (``backprop``, ``node``, ``surrogate``, ``param``) with its options."""
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise UserError(f"unknown estimator {name!r} (choose from {', '.join(ESTIMATORS)})") from None
    try:
        return cls(seed, **options)
    except TypeError as exc:
        raise UserError(f"bad option for the {name} estimator: {exc}") from None
