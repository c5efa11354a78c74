"""Level B of the ring model: a time-multiplexed virtual-node reservoir (its memory figures:
:mod:`pgt.sim.memory_capacity`).

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
prediction on held-out data, summed over d (:mod:`pgt.sim.memory_capacity`).
"""

from __future__ import annotations

import numpy as np

from .ring_params import RingParams

__all__ = ["VirtualNodeRing"]


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
