"""Level B of the ring model: a time-multiplexed virtual-node reservoir, and its memory figures.

One input step = one round trip of the ring. The complex envelope ``a`` of ``N`` virtual nodes evolves as::

    x = a * exp(i phi) * exp((i phi_nl - alpha_nl) |a|^2)       # delay line: phase, self-phase mod., NL loss
    x = (1 - kappa) x + kappa roll(x, 1)                          # neighbour coupling (finite bandwidth)
    s = x + gamma (b0 + mask @ u)                                 # injected masked input on a carrier b0
    a = g s / (1 + |s|^2 / P_sat) + noise                         # saturating amplifier + amplifier noise
    readout = |a|^2 + read noise                                  # square-law detector

``g`` is the small-signal round-trip amplitude gain (delay-line loss included): below threshold (g < 1) the
ring is a damped resonator whose memory is ~ 1/(1 - g) round trips. The input ``u`` is dimensionless
(normalised drive, -1..1). The STM and PC capacities below follow the usual definitions (e.g. Tsunegi et al.,
Furuta et al. for spintronic reservoirs; used by Watt & Kostylev 2020-21): for delays d = 1..D, the squared
correlation between the target (``u(t-d)``, resp. the parity of ``u(t-d) .. u(t)``) and a ridge readout's
prediction on held-out data, summed over d.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .ring import RingParams

__all__ = ["VirtualNodeRing", "ridge_fit", "stm_capacity", "pc_capacity", "memory_figures"]


class VirtualNodeRing:
    """The virtual-node round-trip map (state persists between calls)."""

    def __init__(self, params: RingParams, structure_rng: np.random.Generator, noise_rng: np.random.Generator):
        self.params = params
        n = params.b_nodes
        # Random multi-level masks (uniform in [-1, 1]): with binary +-1 masks all nodes of one sign see the
        # same input and only the neighbour coupling tells them apart (measured: lower STM and PC).
        self.mask = structure_rng.uniform(-1.0, 1.0, size=(n, params.n_inputs)) / np.sqrt(params.n_inputs)
        self.mask1 = structure_rng.uniform(-1.0, 1.0, size=n)  # mask for a scalar input series
        self._noise_rng = noise_rng
        self.state = np.zeros(n, dtype=np.complex128)

    def reset(self) -> None:
        self.state = np.zeros_like(self.state)

    def _run(self, inj: np.ndarray) -> np.ndarray:
        """Run one round trip per row of ``inj`` (T, N) real masked input; return readouts (T, N)."""
        p = self.params
        rot = np.exp(1j * p.b_phase)
        a = self.state
        out = np.empty(inj.shape, dtype=np.float64)
        noisy = p.b_amp_noise > 0.0
        for t in range(inj.shape[0]):
            pw = a.real**2 + a.imag**2
            x = a * rot * np.exp((1j * p.b_nl_phase - p.b_nl_loss) * pw)
            x = (1.0 - p.b_coupling) * x + p.b_coupling * np.roll(x, 1)
            s = x + p.b_input_scale * (p.b_input_bias + inj[t])
            a = p.b_loop_gain * s / (1.0 + (s.real**2 + s.imag**2) / p.b_p_sat)
            if noisy:
                a = a + p.b_amp_noise * (
                    self._noise_rng.standard_normal(a.shape) + 1j * self._noise_rng.standard_normal(a.shape)
                ) / np.sqrt(2.0)
            out[t] = a.real**2 + a.imag**2
        self.state = a
        if p.b_read_noise > 0.0:
            out = out + p.b_read_noise * self._noise_rng.standard_normal(out.shape)
        return out

    def forward(self, z: np.ndarray) -> np.ndarray:
        """One input step per row of the normalised drive block z (T, n_inputs); node powers (T, N)."""
        return self._run(z @ self.mask.T)

    def run_series(self, u: np.ndarray) -> np.ndarray:
        """Scalar series (T,) (scalar mask) or (T, n_inputs) (full mask) -> node powers (T, N)."""
        u = np.asarray(u, dtype=np.float64)
        if u.ndim == 1:
            return self._run(u[:, None] * self.mask1[None, :])
        if u.ndim == 2 and u.shape[1] == self.params.n_inputs:
            return self._run(u @ self.mask.T)
        raise ValueError(f"series must have shape (T,) or (T, {self.params.n_inputs}), got {u.shape}")


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
    from .ring import Ring

    ring = Ring(params, seed=seed, level="B")
    bits = np.random.default_rng(seed + 1).integers(0, 2, size=n_steps)
    states = ring.run_series(bits.astype(float))
    n_train = (n_steps - 100) // 2
    stm, _ = stm_capacity(states, bits, d_max=d_max, washout=100, n_train=n_train)
    pc, _ = pc_capacity(states, bits, d_max=d_max, washout=100, n_train=n_train)
    return {"stm": stm, "pc": pc}
