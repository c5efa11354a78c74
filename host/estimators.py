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
* :class:`ParameterPGT` — the PGT paper's method: random directions in parameter space, loss differences.

Baseline and perturbed rows go to the device interleaved in one block (one ``forward`` call), so slow drift
cancels in their differences. Randomness comes from the estimator's own generator (checkpointed with it).
``calibrate`` measures the device's repeat noise with repeated identical queries (counted) and chooses the
perturbation size when it was not given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UserError
from .layers import Grads, softmax_cross_entropy
from .models import HybridModel

Array = np.ndarray
Batch = tuple[Array, Array]


@dataclass
class Calibration:
    """What calibration measured and chose (all in the physical layer's normalised output units)."""

    noise: float
    """RMS repeat noise of one normalised reading (same drive, repeated)."""
    response: float
    """RMS change of a normalised reading per unit of activation perturbation (small-signal slope)."""
    sigma: float | None
    """Perturbation size chosen (activation units for node, parameter units for param), None if unused."""
    queries: int


def _directions(rng: np.random.Generator, shape: tuple[int, ...], dist: str) -> Array:
    if dist == "rademacher":
        return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    if dist == "gaussian":
        return rng.standard_normal(shape)
    raise UserError(f"unknown perturbation distribution {dist!r} (rademacher or gaussian)")


def measure_noise(
    model: HybridModel, x: Array, rng: np.random.Generator, repeats: int = 4, rows: int = 16,
    probe_scale: float = 0.05,
) -> Calibration:
    """Repeat identical drives (interleaved in one block) to get the repeat noise; probe the slope too."""
    ph = model.physical
    a, _ = model.pre(x)
    a = a[: min(rows, a.shape[0])]
    n = a.shape[0]
    u, _ = ph.drive(a)
    d = _directions(rng, a.shape, "rademacher")
    up, _ = ph.drive(a + probe_scale * d)
    block = np.concatenate([np.repeat(u[:, None, :], repeats, axis=1), up[:, None, :]], axis=1)
    y = ph.normalise(ph.query(block.reshape(-1, ph.k))).reshape(n, repeats + 1, ph.m)
    rep = y[:, :repeats]
    noise = float(np.sqrt(np.mean(rep.var(axis=1, ddof=1))))
    response = float(np.sqrt(np.mean((y[:, repeats] - rep.mean(axis=1)) ** 2))) / probe_scale
    return Calibration(noise=noise, response=response, sigma=None, queries=n * (repeats + 1))


class Estimator:
    """Base class. Subclasses implement ``estimate``; ``observe`` lets them learn from any device data."""

    name = "estimator"
    needs_vjp = False

    def __init__(self, seed: int | np.random.Generator = 0) -> None:
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.calibration: Calibration | None = None

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        raise NotImplementedError

    def observe(self, u: Array, y: Array) -> None:
        """Device data gathered elsewhere (probe batches, evaluations): drives (mA) and volts."""

    def calibrate(self, model: HybridModel, batch: Batch) -> Calibration:
        self.calibration = measure_noise(model, batch[0], self.rng)
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
        if cal is None:
            return {}
        return {"device_noise": cal.noise, "sigma": cal.sigma}


def _forward_loss(model: HybridModel, z: Array, pre_cache: Any, labels: Array) -> tuple[float, Grads, Array, Any]:
    """Post-device forward and exact backward: (loss, post grads, grad at z, skip-gradient)."""
    logits, post_cache = model.post(z, pre_cache)
    loss, g_logits = softmax_cross_entropy(logits, labels)
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


class _Perturbative(Estimator):
    """What the perturbative estimators share: K directions, one- or two-sided, their law, their size."""

    def __init__(
        self, seed: int | np.random.Generator, directions: int, two_sided: bool, dist: str,
        sigma: float | None, snr: float, sigma_range: tuple[float, float],
    ) -> None:
        super().__init__(seed)
        if directions < 1:
            raise UserError("directions must be at least 1")
        self.directions = directions
        self.two_sided = two_sided
        self.dist = dist
        self.sigma = sigma
        self.snr = snr
        self.sigma_range = sigma_range

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "directions": self.directions, "two_sided": self.two_sided,
                "dist": self.dist, "sigma": self.sigma}

    def state(self) -> dict[str, Any]:
        return super().state() | {"sigma": self.sigma}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.sigma = state["sigma"]


class NodePGT(_Perturbative):
    """Perturb the device inputs, one independent direction per row (sample or token) and direction.

    ``directions`` K per row; ``two_sided`` uses +v and -v (2K rows per row, the mean is the baseline),
    otherwise a baseline plus K perturbed rows ((K+1) rows per row). ``sigma`` is the perturbation size in
    activation units (the drive moves by ``sigma * scale`` mA); None = chosen by :meth:`calibrate`.
    """

    name = "node"

    def __init__(
        self, seed: int | np.random.Generator = 0, directions: int = 1, two_sided: bool = True,
        dist: str = "rademacher", sigma: float | None = None, snr: float = 6.0,
        sigma_range: tuple[float, float] = (1e-3, 0.1),
    ) -> None:
        super().__init__(seed, directions, two_sided, dist, sigma, snr, sigma_range)

    def calibrate(self, model: HybridModel, batch: Batch) -> Calibration:
        cal = measure_noise(model, batch[0], self.rng)
        if self.sigma is None:
            # Smallest perturbation whose measured difference stands `snr` times above the repeat noise of a
            # difference (sqrt 2 noise): noise then adds ~1/snr^2 to the estimator's variance.
            lo, hi = self.sigma_range
            want = self.snr * np.sqrt(2.0) * cal.noise / max(cal.response, 1e-12)
            self.sigma = float(np.clip(want, lo, hi))
        cal.sigma = self.sigma
        self.calibration = cal
        return cal

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
        y = ph.query(rows.reshape(-1, k)).reshape(n, rows.shape[1], ph.m)
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
    """The PGT paper's estimator: K random directions in parameter space per step, from loss differences.

    ``params`` restricts the perturbation to parameters whose name starts with one of the given prefixes
    (default: all); the others get a zero gradient. Every perturbed copy of the model goes through the
    device in the same block as the baseline, row-interleaved. ``sigma`` is relative to the RMS of the
    perturbed parameters; None = chosen by :meth:`calibrate` (1e-2 if never calibrated).
    """

    name = "param"

    def __init__(
        self, seed: int | np.random.Generator = 0, directions: int = 1, two_sided: bool = True,
        dist: str = "rademacher", sigma: float | None = None, params: tuple[str, ...] | None = None,
        snr: float = 3.0, sigma_range: tuple[float, float] = (1e-3, 0.2),
    ) -> None:
        super().__init__(seed, directions, two_sided, dist, sigma, snr, sigma_range)
        self._dirs: list[dict[str, Array]] = []
        self._c = 0.0
        self._names_used: list[str] = []
        self.subset = params

    def config(self) -> dict[str, Any]:
        return super().config() | {"params": list(self.subset or [])}

    def _names(self, model: HybridModel) -> list[str]:
        names = [n for n in model.params if self.subset is None or n.startswith(tuple(self.subset))]
        if not names:
            raise UserError(f"no parameter matches {self.subset}")
        return names

    def calibrate(self, model: HybridModel, batch: Batch) -> Calibration:
        """Device noise, then the loss noise and the loss-difference slope to choose ``sigma``.

        Repeats the unperturbed batch ``r`` times and evaluates ``r`` antithetic pairs at ``sigma0`` (one
        block); ``sigma`` is set so that a loss difference stands ``snr`` times above the loss noise of a
        difference, within ``sigma_range``.
        """
        cal = measure_noise(model, batch[0], self.rng)
        if self.sigma is None:
            r, sigma0 = 4, 1e-2
            saved = (self.directions, self.two_sided, self.sigma)
            self.directions, self.two_sided, self.sigma = r, True, sigma0
            try:
                losses, q = self._losses(model, batch, extra_baselines=r)
            finally:
                self.directions, self.two_sided, self.sigma = saved
            cal.queries += q
            base = np.asarray(losses[:r])
            diffs = np.asarray(losses[r::2]) - np.asarray(losses[r + 1 :: 2])
            loss_noise = float(base.std(ddof=1))
            signal = float(np.sqrt(np.mean(diffs**2)))
            want = sigma0 * self.snr * np.sqrt(2.0) * loss_noise / max(signal, 1e-30)
            self.sigma = float(np.clip(want, *self.sigma_range))
        cal.sigma = self.sigma
        self.calibration = cal
        return cal

    def _losses(self, model: HybridModel, batch: Batch, extra_baselines: int = 0) -> tuple[list[float], int]:
        """Losses of every version of the model (baselines first, then +/- or + per direction), one block.

        Draws the directions into ``self._dirs`` and the step size into ``self._c``.
        """
        x, labels = batch
        ph = model.physical
        names = self._names(model)
        base = {n: model.params[n].copy() for n in names}
        rms = float(np.sqrt(np.mean(np.concatenate([b.ravel() ** 2 for b in base.values()]))))
        c = (self.sigma if self.sigma is not None else 1e-2) * max(rms, 1e-3)
        K = self.directions
        dirs = [{n: _directions(self.rng, base[n].shape, self.dist) for n in names} for _ in range(K)]
        signs = [(i, s) for i in range(K) for s in ((1.0, -1.0) if self.two_sided else (1.0,))]
        n_base = extra_baselines + (0 if self.two_sided else 1)
        versions: list[tuple[int, float]] = [(-1, 0.0)] * n_base + signs

        def set_version(i: int, s: float) -> None:
            for n in names:
                model.params[n][...] = base[n] if i < 0 else base[n] + s * c * dirs[i][n]

        drives, caches = [], []
        try:
            for i, s in versions:
                set_version(i, s)
                a, pc = model.pre(x)
                drives.append(ph.drive(a)[0])
                caches.append(pc)
            block = np.stack(drives, axis=1)  # (rows, V, k): the versions interleaved row by row
            n_rows, n_v = block.shape[0], block.shape[1]
            y = ph.query(block.reshape(-1, ph.k)).reshape(n_rows, n_v, ph.m)
            losses = []
            for j, (i, s) in enumerate(versions):
                set_version(i, s)
                logits, _ = model.post(ph.normalise(y[:, j]), caches[j])
                losses.append(softmax_cross_entropy(logits, labels)[0])
        finally:
            set_version(-1, 0.0)
        self._dirs, self._c, self._names_used = dirs, c, names
        return losses, int(n_rows * n_v)

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        losses, queries = self._losses(model, batch)
        dirs, c, names, K = self._dirs, self._c, self._names_used, self.directions
        grads: Grads = {n: np.zeros_like(p) for n, p in model.params.items()}
        if self.two_sided:
            coefs = [(losses[2 * i] - losses[2 * i + 1]) / (2.0 * c * K) for i in range(K)]
            loss = float(np.mean(losses))
        else:
            coefs = [(losses[i + 1] - losses[0]) / (c * K) for i in range(K)]
            loss = float(losses[0])
        for i, coef in enumerate(coefs):
            for n in names:
                grads[n] += coef * dirs[i][n]
        return loss, grads, queries


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
