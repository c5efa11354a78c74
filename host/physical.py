"""The physical layer: digital activations -> drive currents -> the reservoir -> normalised readings.

``drive = clip(center + scale * a, drive_low, drive_high)`` maps an activation (the model puts a ``tanh`` in
front, so ``a`` lies in (-1, 1)) into the device's safe range; the measured volts are normalised per channel by
a fixed affine map ``z = (y - mu) / sd`` calibrated once from a probe batch (those queries are counted like any
other). The layer does not differentiate the device: how a gradient crosses it is the estimator's business
(:mod:`pgt.estimators`); the layer only offers the two digital ends of that crossing (``drive_backward`` and
``normalise_backward``).

**Time multiplexing.** A board has few channels (the default rp2 board: k=2 drives, m=3 taps), so the ring
layer of a model is ``slots`` times wider than the device: ``slots * k`` drive units in, ``slots * m`` readings
out. Each sample's activation ``(slots * k,)`` goes to the device as ``slots`` consecutive rows of ``k`` drives
(each row a counted query) through the same physical map, and the ``slots`` readings of ``m`` taps are
concatenated. :meth:`to_rows` and :meth:`from_rows` make that reshape (and, being reshapes, their own
backward); everything the estimators see is the row view ``(rows, k) -> (rows, m)``, so node perturbation
perturbs rows, a surrogate learns the single k->m map, and a sample's rows stay adjacent in every block.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DeviceError, UserError
from .fields import Field
from .reservoir import Reservoir

Array = np.ndarray
POOR_SNR = 0.3
"""A tap whose repeat noise exceeds this fraction of its response span is worth averaging more."""
HOPELESS_SNR = 0.8
"""Every tap above this: the device is too noisy to train on."""
MAX_SLOWDOWN = 4.0
"""Averaging may cost at most this factor of device time per query (the device-time budget)."""
MIN_UNITS = 16
"""Default ring-layer width: enough slots for at least this many drive units."""


SLOTS = Field("int", 1, 4096)
"""Device rows per sample: the one declaration of ``slots`` (also ``pgt.config.MODEL_OPTIONS["slots"]``)."""


def default_slots(k: int) -> int:
    """Slots giving at least :data:`MIN_UNITS` drive units for a device with ``k`` drive channels."""
    return max(1, -(-MIN_UNITS // max(int(k), 1)))


class PhysicalLayer:
    """Wraps a :class:`~pgt.reservoir.Reservoir` with an input affine map + clipping and output normalisation."""

    def __init__(self, reservoir: Reservoir, margin: float = 0.9, slots: int | None = None) -> None:
        self.reservoir: Reservoir | None = None
        self.k = int(reservoir.n_inputs)
        """Drive channels of the device (the width of one row)."""
        self.m = int(reservoir.n_outputs)
        """Taps of the device (the width of one reading)."""
        if slots is None:
            slots = default_slots(self.k)
        self.slots = SLOTS.check("slots", int(slots) if isinstance(slots, np.integer) else slots)
        """Device rows per sample (or token): the ring layer is ``slots * k`` wide in, ``slots * m`` out."""
        low = np.asarray(reservoir.drive_low, dtype=float)
        high = np.asarray(reservoir.drive_high, dtype=float)
        finite = np.isfinite(low) & np.isfinite(high)
        self.low = low
        self.high = high
        self.center = np.where(finite, 0.5 * (np.where(finite, low, 0.0) + np.where(finite, high, 0.0)), 0.0)
        self.scale = np.where(finite, 0.5 * (np.where(finite, high, 1.0) - np.where(finite, low, -1.0)) * margin,
                              1.0)
        self.mu = np.zeros(self.m)
        self.sd = np.ones(self.m)
        self.tap_noise = np.zeros(self.m)
        self.tap_span = np.zeros(self.m)
        self.noise_span = np.zeros(self.m)
        self.seconds_per_query = 0.0
        self.calibrated = False
        self.attach(reservoir)

    def attach(self, reservoir: Reservoir) -> None:
        """(Re)connect to a device, e.g. after resuming a checkpoint; shapes must match."""
        if reservoir.n_inputs != self.k or reservoir.n_outputs != self.m:
            raise UserError(
                f"reservoir has {reservoir.n_inputs} inputs/{reservoir.n_outputs} outputs, "
                f"the model expects {self.k}/{self.m}"
            )
        self.reservoir = reservoir
        info = getattr(reservoir, "info", None) or {}
        high = info.get("volts_high")
        self.v_high: float | None = float(high) if isinstance(high, (int, float)) else None

    def state(self) -> dict[str, Any]:
        """What calibration measured (normalisation, ...) as plain values and arrays, for checkpoints, and the
        device's ADC averaging if it has that setting. The drive map follows from the device's range."""
        derived = ("reservoir", "low", "high", "center", "scale", "k", "m")
        out: dict[str, Any] = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in vars(self).items()
                               if k not in derived and (v is None or isinstance(v, (np.ndarray, bool, int, float)))}
        out["device_n_avg"] = (getattr(self.reservoir, "info", None) or {}).get("n_avg")
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`; a device with an ADC averaging setting gets the checkpointed one back."""
        state = dict(state)
        n_avg = state.pop("device_n_avg", None)
        for key, value in state.items():
            setattr(self, key, np.array(value) if isinstance(value, np.ndarray) else value)
        configure = getattr(self.reservoir, "configure", None)
        current = (getattr(self.reservoir, "info", None) or {}).get("n_avg")
        if n_avg is not None and callable(configure) and current != n_avg:
            configure(n_avg=int(n_avg))

    @property
    def width_in(self) -> int:
        """Drive units of the ring layer (``slots * k``)."""
        return self.slots * self.k

    @property
    def width_out(self) -> int:
        """Readings of the ring layer (``slots * m``)."""
        return self.slots * self.m

    # -- time multiplexing ------------------------------------------------------------------------
    def to_rows(self, a: Array) -> Array:
        """Layer activations ``(..., slots * k)`` -> device rows ``(N * slots, k)``, a sample's rows adjacent."""
        return a.reshape(-1, self.k)

    def from_rows(self, z: Array, lead: tuple[int, ...]) -> Array:
        """Device readings ``(N * slots, m)`` -> layer readings ``(*lead, slots * m)``."""
        return z.reshape(*lead, self.width_out)

    def rows_backward(self, grad_a: Array, lead: tuple[int, ...]) -> Array:
        """Gradient at the device rows ``(N * slots, k)`` -> at the layer activations ``(*lead, slots * k)``."""
        return grad_a.reshape(*lead, self.width_in)

    def from_rows_backward(self, grad_z: Array) -> Array:
        """Gradient at the layer readings ``(..., slots * m)`` -> at the device readings ``(N * slots, m)``."""
        return grad_z.reshape(-1, self.m)

    # -- the digital ends -------------------------------------------------------------------------
    def drive(self, a: Array) -> tuple[Array, Array]:
        """Activations ``(n, k)`` -> drive currents (mA) and the mask of rows/channels not clipped."""
        u = self.center + self.scale * a
        clipped = np.clip(u, self.low, self.high)
        return clipped, clipped == u

    def drive_backward(self, grad_u: Array, mask: Array) -> Array:
        """Gradient with respect to the drive -> gradient with respect to the activation."""
        return grad_u * self.scale * mask

    def normalise(self, y: Array) -> Array:
        return (y - self.mu) / self.sd

    def normalise_backward(self, grad_z: Array) -> Array:
        return grad_z / self.sd

    # -- the device ---------------------------------------------------------------------------------
    def query(self, u: Array) -> Array:
        """Send one block of drives; return the volts, checked for NaN and saturation."""
        if self.reservoir is None:
            raise DeviceError("no device attached to the physical layer")
        try:
            y = np.asarray(self.reservoir.forward(u), dtype=np.float64)
        except (OSError, ConnectionError, EOFError) as exc:
            raise DeviceError(f"device query failed: {exc}") from exc
        if y.shape != (u.shape[0], self.m):
            raise DeviceError(f"device returned shape {y.shape}, expected ({u.shape[0]}, {self.m})")
        if not np.all(np.isfinite(y)):
            raise DeviceError("device returned NaN or infinite readings")
        if self.v_high is not None and y.size >= 64 and np.mean(y >= self.v_high) > 0.5:
            raise DeviceError(f"device readings are saturated (most at the {self.v_high:g} V rail)")
        if self.calibrated and y.shape[0] >= 8:
            # Readings stuck at one value on every channel: a saturated or dead detector.
            if np.all(np.ptp(y, axis=0) == 0.0) and np.any(np.ptp(u, axis=0) > 0):
                raise DeviceError("device readings are saturated (constant on every channel)")
        return y

    @staticmethod
    def _repeats(n_probe: int) -> int:
        return min(64, n_probe // 4)

    def probe_queries(self, n_probe: int) -> int:
        """Queries :meth:`fit_normalisation` spends for a probe batch of ``n_probe`` drives (some of them repeated)."""
        return n_probe + self._repeats(n_probe)

    def fit_normalisation(self, rng: np.random.Generator, n_probe: int = 256) -> tuple[int, Array, Array]:
        """Fix the output normalisation from a probe batch of random drives; measure each tap's signal-to-noise.

        The first ``min(64, n_probe // 4)`` drives are sent twice, each right after itself (so slow drift
        cancels): their differences give each tap's repeat noise, which is compared with the tap's response
        span (its spread over the random drives) in ``noise_span``: near 0 a clean tap, near 1 a tap that
        reads only noise. Returns the queries spent and every (drive, volts) pair, for a surrogate to learn from.
        """
        a = rng.uniform(-1.0, 1.0, size=(n_probe, self.k))
        u, _ = self.drive(a)
        r = self._repeats(n_probe)
        order = np.concatenate([np.repeat(np.arange(r), 2), np.arange(r, n_probe)]).astype(np.int64)
        block = u[order]
        t0 = float(getattr(self.reservoir, "device_seconds", 0.0))
        y_all = self.query(block)
        self.seconds_per_query = (float(getattr(self.reservoir, "device_seconds", 0.0)) - t0) / len(block)
        y = np.concatenate([y_all[0 : 2 * r : 2], y_all[2 * r :]])  # one reading per drive
        sd = y.std(axis=0)
        if np.all(sd == 0.0):
            raise DeviceError("device readings do not respond to the drive (saturated or disconnected)")
        noise = np.sqrt(0.5 * np.mean((y_all[0 : 2 * r : 2] - y_all[1 : 2 * r : 2]) ** 2, axis=0)) if r else \
            np.zeros(self.m)
        self.mu = y.mean(axis=0)
        self.sd = np.where(sd > 1e-6 * max(float(sd.max()), 1e-30), sd, 1.0)
        self.tap_noise = noise
        """Repeat noise per tap (V RMS)."""
        self.tap_span = sd
        """Response span per tap: the readings' standard deviation over random drives (V)."""
        self.noise_span = np.where(sd > 0.0, noise / np.where(sd > 0.0, sd, 1.0), 1.0)
        """Repeat noise / response span per tap (1.0 for a tap that does not respond at all)."""
        self.calibrated = True
        return len(block), block, y_all

    # -- signal-to-noise ------------------------------------------------------------------------------
    @property
    def n_avg(self) -> int | None:
        """ADC reads averaged per sample on the device (None: the device has no such setting)."""
        info = getattr(self.reservoir, "info", None) or {}
        value = info.get("n_avg")
        return int(value) if isinstance(value, (int, float)) else None

    def tune_averaging(self, rng: np.random.Generator, n_probe: int = 256, poor: float = POOR_SNR,
                       max_slowdown: float = MAX_SLOWDOWN) -> list[str]:
        """Raise the device's ADC averaging while a tap is poor (noise/span above ``poor``), within a budget.

        Each try multiplies ``n_avg`` by 4 (through the device's ``config`` op) and calibrates again (counted
        queries); it is kept only if the worst tap's noise/span fell by a fifth or more and the device time
        per query stayed within ``max_slowdown`` times the starting one; otherwise the previous setting and
        calibration come back. Returns what was done, one plain sentence each; raises DeviceError when every
        tap stays noisier than :data:`HOPELESS_SNR`.
        """
        notes: list[str] = []
        configure = getattr(self.reservoir, "configure", None)
        n_avg = self.n_avg
        budget = self.seconds_per_query * max_slowdown
        while float(self.noise_span.max()) > poor and callable(configure) and n_avg is not None:
            saved = dict(self.__dict__)
            before = self.noise_span.copy()
            poor_taps = before > poor
            want = n_avg * 4
            try:
                configure(n_avg=want)
            except UserError:  # above the device's largest n_avg
                break
            self.fit_normalisation(rng, n_probe)
            worse_time = self.seconds_per_query > budget > 0.0
            gain = float(self.tap_noise[poor_taps].mean()) <= 0.8 * float(saved["tap_noise"][poor_taps].mean())
            if gain and not worse_time:
                notes.append(f"n_avg {n_avg} -> {want}: noise/span {_taps(before)} -> {_taps(self.noise_span)}")
                n_avg = want
                continue
            why = (f"it would take {self.seconds_per_query * 1e3:.2f} ms per query, over the budget of "
                   f"{budget * 1e3:.2f} ms" if worse_time else
                   f"it did not lower the repeat noise (noise/span {_taps(before)} -> {_taps(self.noise_span)}): "
                   "the noise is per query, not per ADC read")
            configure(n_avg=n_avg)
            self.__dict__.update(saved)
            notes.append(f"kept n_avg {n_avg}: raising it to {want} was tried, but {why}")
            break
        if float(self.noise_span.min()) > HOPELESS_SNR:
            raise DeviceError(
                f"the device is too noisy to train on: repeat noise / response span per tap {_taps(self.noise_span)}"
                f" (noise {_taps(self.tap_noise * 1e3)} mV, span {_taps(self.tap_span * 1e3)} mV)"
                + (f" at n_avg {n_avg}" if n_avg is not None else ""))
        bad = np.flatnonzero(self.noise_span > poor)
        if bad.size:
            notes.append(
                f"tap{'s' if bad.size > 1 else ''} {', '.join(str(int(i)) for i in bad)} "
                f"{'are' if bad.size > 1 else 'is'} noisy (repeat noise / response span "
                f"{_taps(self.noise_span[bad])}; noise {_taps(self.tap_noise[bad] * 1e3)} mV, span "
                f"{_taps(self.tap_span[bad] * 1e3)} mV): {'they carry' if bad.size > 1 else 'it carries'} "
                "little signal")
        return notes


def _taps(values: Array) -> str:
    return " ".join(f"{float(v):.2f}" for v in np.atleast_1d(values))
