"""Memory figures of the level-B ring: short-term-memory (STM) and parity-check (PC) capacity, with a ridge
readout (the usual definitions: e.g. Tsunegi et al., Furuta et al. for spintronic reservoirs; used by Watt &
Kostylev 2020-21). For delays d = 1..D, the squared correlation between the target (``u(t-d)``, resp. the
parity of ``u(t-d) .. u(t)``) and a ridge readout's prediction on held-out data, summed over d.
"""

from __future__ import annotations

import numpy as np

from .ring import Ring
from .ring_params import RingParams

__all__ = ["ridge_fit", "stm_capacity", "pc_capacity", "memory_figures"]


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised bias on standardised features; returns (w, b) in raw units."""
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    xs = (x - mu) / sd
    ym = y.mean(axis=0)
    w = np.linalg.solve(xs.T @ xs + alpha * len(xs) * np.eye(xs.shape[1]), xs.T @ (y - ym))
    w_raw = w / sd[:, None] if w.ndim == 2 else w / sd
    return w_raw, ym - mu @ w_raw


def _capacity(states: np.ndarray, targets: np.ndarray, washout: int, n_train: int, alpha: float) -> np.ndarray:
    """Squared test correlation per target column (targets (T, D))."""
    xtr, ytr = states[washout : washout + n_train], targets[washout : washout + n_train]
    xte, yte = states[washout + n_train :], targets[washout + n_train :]
    w, b = ridge_fit(xtr, ytr, alpha)
    pred = xte @ w + b
    pc = pred - pred.mean(axis=0)
    yc = yte - yte.mean(axis=0)
    num = (pc * yc).sum(axis=0) ** 2
    den = (pc**2).sum(axis=0) * (yc**2).sum(axis=0)
    return np.asarray(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0))


def _delayed(u: np.ndarray, d_max: int) -> np.ndarray:
    """Column d-1 holds u(t - d) for d = 1..d_max (zeros before the start)."""
    t = u.size
    out = np.zeros((t, d_max))
    for d in range(1, d_max + 1):
        out[d:, d - 1] = u[: t - d]
    return out


def stm_capacity(
    states: np.ndarray,
    u_bits: np.ndarray,
    d_max: int = 20,
    washout: int = 100,
    n_train: int = 2000,
    alpha: float = 1e-6,
) -> tuple[float, np.ndarray]:
    """Short-term-memory capacity: sum over d = 1..d_max of r^2(u(t-d), ridge prediction); and the r^2."""
    r2 = _capacity(states, _delayed(u_bits.astype(float), d_max), washout, n_train, alpha)
    return float(r2.sum()), r2


def pc_capacity(
    states: np.ndarray,
    u_bits: np.ndarray,
    d_max: int = 20,
    washout: int = 100,
    n_train: int = 2000,
    alpha: float = 1e-6,
) -> tuple[float, np.ndarray]:
    """Parity-check capacity: sum over d = 1..d_max of r^2(parity of u(t-d)..u(t), ridge prediction)."""
    bits = u_bits.astype(int)
    delayed = _delayed(bits.astype(float), d_max).astype(int)
    parity = np.cumsum(delayed, axis=1) + bits[:, None]
    r2 = _capacity(states, (parity % 2).astype(float), washout, n_train, alpha)
    return float(r2.sum()), r2


def memory_figures(
    seed: int = 0, params: RingParams | None = None, n_steps: int = 4000, d_max: int = 20
) -> dict[str, float]:
    """STM and PC of a level-B ring driven by a random binary series (u in {0, 1}), ridge readout."""
    ring = Ring(params, seed=seed, level="B")
    bits = np.random.default_rng(seed + 1).integers(0, 2, size=n_steps)
    states = ring.run_series(bits.astype(float))
    n_train = (n_steps - 100) // 2
    stm, _ = stm_capacity(states, bits, d_max=d_max, washout=100, n_train=n_train)
    pc, _ = pc_capacity(states, bits, d_max=d_max, washout=100, n_train=n_train)
    return {"stm": stm, "pc": pc}
