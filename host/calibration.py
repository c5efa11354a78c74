"""What a perturbative estimator must know about a device before choosing its perturbation size.

One block of drives (every row counted) measures, in the physical layer's normalised output units:

* **noise** — repeat noise: the same drive, repeated, each repeat preceded by that same drive;
* **response** — the small-signal slope: RMS change of a reading per unit of activation perturbation
  (re-probed at a larger step when a small one moves the readout by less than its resolution);
* **resolution** — the readout's quantum (an ADC step), found from the readings themselves: a noise-free
  quantised device measures zero noise, so a perturbation sized from noise alone would fall below one step;
* **memory** — whether a reading depends on the previous row: the same drive after two different
  predecessors; its size is the fraction of the predecessor's change that leaks into the next reading.

Per probe row ``u`` the block is ``[A, u x repeats, B, u, u + s d, u + 4 s d]`` with random predecessors
``A``, ``B`` and a random sign vector ``d``. :func:`sigma_floor` and :func:`node_sigma` turn the figures into
a perturbation size that cannot collapse; notes worth telling the user go to the ``pgt`` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray
log = logging.getLogger("pgt.calibration")

MEMORY_THRESHOLD = 0.05
"""Memory (fraction of the predecessor's change seen in the next reading) above which rows are reordered."""
QUANTA = 4.0
"""A perturbation pair must move the readout by at least this many resolution steps (RMS over outputs)."""


@dataclass
class Calibration:
    """What calibration measured and chose (all in the physical layer's normalised output units)."""

    noise: float
    """RMS repeat noise of one normalised reading (same drive, repeated)."""
    response: float
    """RMS change of a normalised reading per unit of activation perturbation (small-signal slope)."""
    sigma: float | None = None
    """Perturbation size chosen (activation units for node, parameter units for param), None if unused."""
    queries: int = 0
    resolution: float = 0.0
    """RMS over outputs of the readout's quantum in normalised units (0: no quantisation seen)."""
    memory: float = 0.0
    """Fraction of a predecessor row's change that shows in the next reading (0: none)."""
    memory_detected: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def effective_noise(self) -> float:
        """Repeat noise plus the rounding error of the readout (uniform over one step: q / sqrt 12)."""
        return float(np.sqrt(self.noise**2 + self.resolution**2 / 12.0))

    def note(self, text: str) -> None:
        """Record a finding and tell the user (``pgt`` logger, warning level: printed on stderr)."""
        self.notes.append(text)
        log.warning("calibration: %s", text)

    def summary(self) -> dict[str, Any]:
        return {"device_noise": self.noise, "response": self.response, "resolution": self.resolution,
                "memory": self.memory, "sigma": self.sigma}


def quantum(y: Array) -> Array:
    """Per channel, the step every reading is a multiple of (offset allowed), or 0 if none is seen.

    The smallest gap between distinct readings, or an integer fraction of it (when the readings skip
    codes), must divide every gap to within 2 %; a continuous (noisy) readout fails that test.
    """
    out = np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        vals = np.unique(y[:, j])
        if vals.size < 2:
            continue
        gaps = np.diff(vals)
        span = float(vals[-1] - vals[0])
        g0 = float(gaps.min())
        if g0 <= 1e-12 * max(span, 1e-300):
            continue
        for div in (1, 2, 3, 4):
            q = g0 / div
            r = gaps / q
            if span / q <= 1e6 and np.all(np.abs(r - np.round(r)) < 0.02):
                out[j] = q
                break
    return out


def measure_response(
    physical: Any, a: Array, rng: np.random.Generator, repeats: int = 6, probe_scale: float = 0.05,
    observe: Callable[[Array, Array], None] | None = None,
) -> Calibration:
    """Measure noise, slope, resolution and memory at the activations ``a`` (one block, all counted).

    ``observe(drives, volts)``, if given, receives the block (a surrogate learns from it).
    """
    ph = physical
    n = a.shape[0]
    u, _ = ph.drive(a)
    d = rng.integers(0, 2, size=a.shape) * 2.0 - 1.0
    up1, _ = ph.drive(a + probe_scale * d)
    up4, _ = ph.drive(a + 4.0 * probe_scale * d)
    pred_a, _ = ph.drive(rng.uniform(-1.0, 1.0, size=a.shape))
    pred_b, _ = ph.drive(rng.uniform(-1.0, 1.0, size=a.shape))
    R = max(int(repeats), 3)
    parts = [pred_a[:, None]] + [u[:, None]] * R + [pred_b[:, None], u[:, None], up1[:, None], up4[:, None]]
    block = np.concatenate(parts, axis=1)  # (n, R + 5, k)
    v = block.shape[1]
    raw = ph.query(block.reshape(-1, ph.k)).reshape(n, v, ph.m)
    if observe is not None:
        observe(block.reshape(-1, ph.k), raw.reshape(-1, ph.m))
    y = ph.normalise(raw)
    reps = y[:, 2 : R + 1]  # u after u: the first u (after A) is kept for the memory check
    noise = float(np.sqrt(np.mean(reps.var(axis=1, ddof=1))))
    base = reps.mean(axis=1)
    q = quantum(raw.reshape(-1, ph.m)) / ph.sd
    resolution = float(np.sqrt(np.mean(q**2)))
    # Slope: the small probe unless most of its differences round to zero, then the larger one.
    extra = noise**2 * (1.0 + 1.0 / (R - 1))
    d1 = y[:, R + 3] - base
    response = float(np.sqrt(max(np.mean(d1**2) - extra, 0.0))) / probe_scale
    if np.mean(raw[:, R + 3] == raw[:, 2]) > 0.5:
        d4 = y[:, R + 4] - base
        response = float(np.sqrt(max(np.mean(d4**2) - extra, 0.0))) / (4.0 * probe_scale)
    # Memory: u after A against u after B, scaled by how much A and B themselves differ.
    diff = y[:, 1] - y[:, R + 2]
    spread = y[:, 0] - y[:, R + 1]
    excess = float(np.mean(diff**2)) - 2.0 * noise**2
    memory = float(np.sqrt(max(excess, 0.0) / max(float(np.mean(spread**2)), 1e-30)))
    # Significant when the differences stand clearly above what noise alone gives them.
    n_d = diff.size
    significant = float(np.mean(diff**2)) > 2.0 * noise**2 * (1.0 + 4.0 * np.sqrt(2.0 / n_d)) + 1e-24
    cal = Calibration(noise=noise, response=response, queries=n * v, resolution=resolution,
                      memory=memory, memory_detected=bool(significant and memory >= MEMORY_THRESHOLD))
    if response == 0.0:
        cal.note("the readings did not change when the drive was perturbed: the device does not respond "
                 "(saturated, disconnected, or a resolution too coarse)")
    if cal.memory_detected:
        cal.note(f"readings depend on the previous row (memory {memory:.2f} of the predecessor's change); "
                 "perturbed rows go to the device in separate blocks" +
                 ("; consider --estimator surrogate" if memory >= 0.3 else ""))
    return cal


def sigma_floor(cal: Calibration, quanta: float = QUANTA) -> float:
    """Smallest perturbation (activation units) whose +/- pair moves the readout ``quanta`` steps (RMS)."""
    if cal.resolution == 0.0:
        return 0.0
    return quanta * cal.resolution / (2.0 * max(cal.response, 1e-12))


def node_sigma(cal: Calibration, snr: float, lo: float, hi: float) -> float:
    """Perturbation size (activation units) for node perturbation.

    The smallest one whose difference stands ``snr`` times above the effective noise of a difference
    (repeat noise and rounding, times sqrt 2), never below the resolution floor; within ``[lo, hi]``.
    """
    if cal.response <= 0.0:
        return hi
    want = snr * np.sqrt(2.0) * cal.effective_noise / cal.response
    return float(np.clip(max(want, sigma_floor(cal)), lo, hi))


def zero_fraction(diff: Array) -> float:
    """Fraction of perturbation differences (per output) that are exactly zero: rounded away."""
    return float(np.mean(diff == 0.0))
