"""Twin-first PGT: learn a twin of the device from a few probe rows, train through it, check on the device.

Phases (named in the run header, the progress lines and every ``metrics.jsonl`` record as ``phase``):

* **probe** (calibration rows): the calibration block at the model's activations (repeats give the noise
  floor, predecessor pairs the memory), a scrambled Latin hypercube over the safe drive box and the rows the
  model's activations actually drive;
* **fit**: the twin (:class:`~pgt.estimators.surrogate.RandomFeatureSurrogate`) with a held-out error on a
  fifth of the space-filling and activation rows, compared with the noise floor (both reported);
* **in_silico**: training steps through the twin, forward and backward — zero device rows; evaluations between
  device checks go through the twin too (``twin_val_acc``; ``val_acc`` stays empty: only device-measured
  validation counts for selection and for the crossing Q is taken on);
* **check**: every ``check_every`` steps (and at the run's end) validation goes through the device as well;
  the twin's and the device's predictions on the same samples are compared (McNemar: the net count of
  samples the twin gets right and the device wrong, against twice the square root of the discordant ones);
* **correct**: when the gap is larger than chance allows and than ``gap``, the twin is refitted with the
  check's rows (at the current activations) and training continues with device-in-the-loop steps (forward on
  the device, backward through the twin) until a check finds the gap closed;
* **drift**: every ``drift_every`` steps a few fixed reference rows are measured again; when they moved beyond
  the noise, the twin is re-probed and refitted on fresh rows only.

Fallback (one line on the ``pgt`` logger, ``fallback`` in the records): a device that remembers the previous
row, a twin whose held-out error leaves too much of the readings unexplained (noise or a map it cannot learn), or
heavy drift (``max_drifts`` refits) make the estimator train with device-in-the-loop steps for good — the
``surrogate`` estimator's method, which learns from every row it sends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..calibration import Calibration
from ..layers import Grads
from ..models import HybridModel
from .base import Array, Batch, forward_loss, log, measure_noise
from .surrogate import SurrogatePGT

PHASES = ("probe", "fit", "in_silico", "check", "correct", "drift")


def latin_hypercube(rng: np.random.Generator, n: int, low: Array, high: Array) -> Array:
    """``n`` points of a scrambled Latin hypercube in the box ``[low, high]``: each coordinate hits each of
    ``n`` equal strata once, at a random place inside it, the strata shuffled independently per coordinate."""
    k = len(low)
    strata = np.stack([rng.permutation(n) for _ in range(k)], axis=1)
    unit = (strata + rng.uniform(size=(n, k))) / n
    return np.asarray(low + unit * (high - low))


def mcnemar_gap(device_right: Array, twin_right: Array) -> tuple[float, float]:
    """(net share of samples the twin gets right and the device wrong, the share chance allows: 2 sqrt(d)/n)."""
    n = max(len(device_right), 1)
    twin_only = int(np.sum(twin_right & ~device_right))
    device_only = int(np.sum(device_right & ~twin_right))
    return (twin_only - device_only) / n, 2.0 * np.sqrt(twin_only + device_only) / n


class TwinPGT(SurrogatePGT):
    """Probe, fit a twin, train in silico, check on the device, correct, watch for drift (module docstring).

    ``probe_rows`` space-filling rows (None: ``32 * k``, at least 128), ``active_rows`` rows at the model's
    activations (None: one calibration batch), ``check_every`` steps between device checks, ``gap`` the
    smallest accuracy gap worth correcting, ``drift_every`` / ``drift_rows`` the drift watch, ``max_heldout``
    the held-out error allowed (RMS, as a fraction of the readings' spread: 0.7 leaves half of their
    variance unexplained), ``max_drifts`` refits before falling back. The surrogate options (``features``,
    ``ridge``, ``width``, ``buffer``, ``refit_every``) shape the twin and the device-in-the-loop steps.
    """

    name = "twin"

    def __init__(
        self, seed: int | np.random.Generator = 0, probe_rows: int | None = None, active_rows: int | None = None,
        check_every: int = 100, gap: float = 0.03, drift_every: int = 50, drift_rows: int = 16,
        max_heldout: float = 0.7, max_drifts: int = 3, refit_every: int = 10, buffer: int = 6000,
        features: int = 384, ridge: float = 1e-4, width: float = 2.5,
    ) -> None:
        super().__init__(seed, refit_every=refit_every, buffer=buffer, features=features, ridge=ridge, width=width)
        o = self._options(probe_rows=probe_rows, active_rows=active_rows, check_every=check_every, gap=gap,
                          drift_every=drift_every, drift_rows=drift_rows, max_heldout=max_heldout,
                          max_drifts=max_drifts)
        self.probe_rows = None if o["probe_rows"] is None else int(o["probe_rows"])
        self.active_rows = None if o["active_rows"] is None else int(o["active_rows"])
        self.check_every, self.gap = int(o["check_every"]), float(o["gap"])
        self.drift_every, self.drift_rows = int(o["drift_every"]), int(o["drift_rows"])
        self.max_heldout, self.max_drifts = float(o["max_heldout"]), int(o["max_drifts"])
        self.phase = "probe"
        self.fallback: str | None = None
        """Why the twin was given up for device-in-the-loop steps (None: it was not)."""
        self.loop = False
        """True while steps go through the device (correcting, or for good after a fallback)."""
        self.steps = 0
        self.last_check = 0
        """The step of the last device check (checks fall on the first evaluation past each ``check_every``)."""
        self.heldout: float | None = None
        self.noise_floor: float | None = None
        self.last_gap: float | None = None
        self.drifts = 0
        self.ref_u: Array | None = None
        self.ref_y: Array | None = None

    def config(self) -> dict[str, Any]:
        return super().config() | {
            "probe_rows": self.probe_rows, "active_rows": self.active_rows, "check_every": self.check_every,
            "gap": self.gap, "drift_every": self.drift_every, "drift_rows": self.drift_rows,
            "max_heldout": self.max_heldout, "max_drifts": self.max_drifts}

    def device_rows_per_batch_row(self) -> int:
        return 1 if self.loop else 0

    def diagnostics(self) -> dict[str, Any]:
        return super().diagnostics() | {"phase": self.phase, "twin_heldout": self.heldout,
                                        "noise_floor": self.noise_floor, "twin_gap": self.last_gap,
                                        "fallback": self.fallback}

    def describe(self) -> str:
        if self.fallback is not None:
            return f"estimator twin, fallen back to device-in-the-loop steps: {self.fallback}"
        return (f"estimator twin: probe -> fit (held-out error {self.heldout:.3f} vs noise floor "
                f"{self.noise_floor:.3f}) -> in silico (no device rows), device check every {self.check_every} "
                f"steps and at the end, drift watch every {self.drift_every} steps ({self.drift_rows} rows)")

    _SCALARS = ("phase", "fallback", "loop", "steps", "last_check", "heldout", "noise_floor", "last_gap", "drifts")

    def state(self) -> dict[str, Any]:
        return super().state() | {k: getattr(self, k) for k in self._SCALARS} | {"ref_u": self.ref_u,
                                                                                 "ref_y": self.ref_y}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        for k in self._SCALARS:
            setattr(self, k, state[k])
        self.ref_u, self.ref_y = state["ref_u"], state["ref_y"]

    # -- probe and fit ------------------------------------------------------------------------------
    def fit_to_device(self, model: HybridModel, batch: Batch) -> Calibration:
        """Probe (noise floor, memory, space-filling and active rows), fit, and decide: in silico or fallback."""
        self.phase = "probe"
        cal = measure_noise(model, batch[0], self.rng, observe=self.observe)
        self.calibration = cal
        cal.queries += self._probe(model, batch[0], fresh=False)
        self.noise_floor = cal.effective_noise
        if cal.memory_detected:
            self._fall_back(f"the device remembers the previous row (memory {cal.memory:.2f}); a twin of single "
                            "rows cannot learn it")
        elif self.heldout is not None and self.heldout > self.max_heldout:
            self._fall_back(f"the twin's held-out error {self.heldout:.2f} is above {self.max_heldout:g} of the "
                            f"readings' spread (noise floor {self.noise_floor:.2f})")
        if self.fallback is None:
            self.phase = "in_silico"
        return cal

    def _probe(self, model: HybridModel, x: Array, fresh: bool) -> int:
        """Space-filling rows over the safe drive box, rows at the model's activations for ``x``, and the
        drift reference rows, in one block; then fit. ``fresh``: forget earlier data first. Returns the rows."""
        ph = model.physical
        low = np.maximum(ph.center - ph.scale, ph.low)
        high = np.minimum(ph.center + ph.scale, ph.high)
        n = self.probe_rows if self.probe_rows is not None else max(128, 32 * ph.k)
        design = latin_hypercube(self.rng, n, low, high)
        a, _ = model.pre(x)
        active, _ = ph.drive(a)
        if self.active_rows is not None and self.active_rows < len(active):
            active = active[self.rng.choice(len(active), size=self.active_rows, replace=False)]
        block = np.concatenate([design, active])
        y = ph.query(block)
        if fresh:
            self._u, self._y = [], []
        self.observe(block, y)
        self.ref_u, self.ref_y = design[: self.drift_rows].copy(), y[: self.drift_rows].copy()
        self._fit(model, len(block))
        return len(block)

    def _fit(self, model: HybridModel, unique: int) -> None:
        """Held-out error on a fifth of the last ``unique`` (distinct) rows, then the twin on everything."""
        self.phase = "fit"
        twin, u, y = self.recent_pairs(model)
        tail = min(unique, len(u))
        hold = len(u) - tail + self.rng.choice(tail, size=max(tail // 5, 1), replace=False)
        keep = np.ones(len(u), dtype=bool)
        keep[hold] = False
        twin.fit(u[keep], y[keep])
        self.heldout = float(np.sqrt(np.mean((twin.predict(u[hold]) - y[hold]) ** 2)))
        self.fit_error = twin.fit(u, y)
        self._since_fit = 0
        log.info("twin: fitted on %d rows, held-out error %.3f, noise floor %s", len(u), self.heldout,
                 "-" if self.noise_floor is None else f"{self.noise_floor:.3f}")

    def _fall_back(self, why: str) -> None:
        self.fallback = why
        self.loop = True
        self.phase = "correct"
        log.warning("twin: falling back to device-in-the-loop steps (the surrogate method): %s", why)

    # -- training --------------------------------------------------------------------------------------
    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        self.steps += 1
        rows = self._watch_drift(model, batch[0]) if self.fallback is None else 0
        if self.loop:
            loss, grads, q = super().estimate(model, batch)
            return loss, grads, q + rows
        assert self.surrogate is not None
        x, labels = batch
        ph = model.physical
        a, pre_cache = model.pre(x)
        u, mask = ph.drive(a)
        loss, grads, gz, skip = forward_loss(model, self.surrogate.predict(u), pre_cache, labels)
        grads |= model.pre_backward(ph.drive_backward(self.surrogate.vjp(u, gz), mask), skip, pre_cache)
        return loss, grads, rows

    def _watch_drift(self, model: HybridModel, x: Array) -> int:
        """Every ``drift_every`` steps: the reference rows again; re-probe and refit when they moved."""
        if self.steps % self.drift_every or self.ref_u is None or self.ref_y is None:
            return 0
        ph = model.physical
        y = ph.query(self.ref_u)
        moved = float(np.sqrt(np.mean(ph.normalise_backward(y - self.ref_y) ** 2)))
        allowed = 3.0 * np.sqrt(2.0) * (self.noise_floor or 0.0) + 0.02
        if moved <= allowed:
            return len(y)
        self.drifts += 1
        self.phase = "drift"
        log.warning("twin: the reference rows moved by %.3f (allowed %.3f): re-probing and refitting (drift %d)",
                    moved, allowed, self.drifts)
        rows = len(y) + self._probe(model, x, fresh=True)
        if self.drifts >= self.max_drifts:
            self._fall_back(f"the device drifted {self.drifts} times (reference rows moved {moved:.3f})")
        else:
            self.phase = "correct" if self.loop else "in_silico"
        return rows

    # -- evaluation hooks (the trainer's) ----------------------------------------------------------------
    def twin_readings(self, u: Array) -> Array | None:
        """The twin's normalised readings for drives ``u`` (None while there is no twin or after a fallback)."""
        if self.surrogate is None or self.surrogate.W is None or self.fallback is not None:
            return None
        return self.surrogate.predict(u)

    def eval_through_device(self, step: int, last: bool) -> bool:
        """Device validation at checks (the first evaluation past every ``check_every`` steps, and the run's
        end) and at every evaluation while steps go through the device."""
        return self.loop or last or step // self.check_every > self.last_check // self.check_every

    def checked(self, step: int, model: HybridModel, device_right: Array, twin_right: Array) -> None:
        """Compare the device's and the twin's validation on the same samples; correct or go back in silico."""
        self.last_check = step
        if self.fallback is not None:
            return
        gap, chance = mcnemar_gap(device_right, twin_right)
        self.last_gap = gap
        if gap > max(chance, self.gap):
            if not self.loop:
                log.warning("twin: validation through the twin is %.1f points above the device's (chance allows "
                            "%.1f): refitting with the check's rows, device-in-the-loop steps until it closes",
                            100 * gap, 100 * max(chance, self.gap))
            self.refit(model)
            self.loop, self.phase = True, "correct"
        else:
            if self.loop:
                log.warning("twin: gap closed (%.1f points): back in silico", 100 * gap)
            self.refit(model)
            self.loop, self.phase = False, "in_silico"
