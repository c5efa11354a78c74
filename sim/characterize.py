"""Characterise a simulated ring the way one would characterise the real one, and plot it.

``characterize(out_dir)`` writes ``transfer.png`` (drive -> output per channel), ``threshold.png`` (a gain
sweep up then down: threshold and hysteresis loop), ``modes.png`` (a coil sweep: mode hops), ``noise.png``
(one drive repeated), ``drift.png`` (one drive read over simulated minutes) and ``summary.txt`` (the
figures, including STM and PC of level B with a ridge readout), and returns the figures as a dict. Every panel
has labelled axes; plots go through matplotlib's Figure API (no pyplot, no backend switch). The ring is
the one the board config ``cfg`` drives (default: the rp2 board, 2 drives and 3 taps); the noise and drift
panels read it through that board's ADC (:mod:`pgt.sim.adc`) averaging ``n_avg`` reads, as a run would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pgt.firmware.settings import DEFAULT_N_AVG

from .adc import ADC
from .boards import board_config, ring_params
from .memory_capacity import memory_figures
from .ring import Ring

__all__ = ["characterize"]


def _transfer(ring: Ring, out: Path, n_points: int = 101) -> dict[str, float]:
    """Sweep each channel over its range with the others at mid-range."""
    k = ring.n_inputs
    mid = (ring.drive_low + ring.drive_high) / 2.0
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    m = ring.n_outputs
    ncol = max(1, int(np.ceil(m / 8)))
    fig = Figure(figsize=(3.2 * cols + 0.8 * ncol, 2.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
    spans = []
    for c in range(k):
        sweep = np.linspace(ring.drive_low[c], ring.drive_high[c], n_points)
        x = np.tile(mid, (n_points, 1))
        x[:, c] = sweep
        v = ring.forward(x)
        spans.append(float(np.ptp(v, axis=0).max()))
        ax = axes[c // cols][c % cols]
        ax.plot(sweep, v, lw=0.7, label=[f"tap {j}" for j in range(m)])
        ax.set_title(f"drive channel {c}", fontsize=8)
        ax.set_xlabel(f"drive channel {c} (mA)", fontsize=7)
        ax.set_ylabel("detector output (V)", fontsize=7)
        ax.tick_params(labelsize=7)
    for c in range(k, rows * cols):
        axes[c // cols][c % cols].axis("off")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", ncol=ncol, fontsize=7)
    fig.suptitle("transfer: one drive channel swept, the others at mid-range", fontsize=9)
    fig.savefig(out / "transfer.png", dpi=90)
    return {"transfer_max_swing_V": float(max(spans))}


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoid integral of y over x (|dx|)."""
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.abs(np.diff(x))))


def _threshold(ring: Ring, out: Path, n_points: int = 801) -> dict[str, float]:
    """Sweep one tap's loop gain up then down (coil field held): threshold and hysteresis loop."""
    mid = (ring.drive_low + ring.drive_high) / 2.0
    t = np.linspace(-1.0, 1.0, n_points) * float(np.max(ring.drive_high - ring.drive_low)) / 2.0
    best, best_x = 0, np.zeros((n_points, ring.n_inputs))
    best_score = -np.inf
    for tap in range(ring.n_outputs):  # the tap whose sweep crosses threshold nearest the middle
        x = np.clip(mid + t[:, None] * ring.gain_axis(tap), ring.drive_low, ring.drive_high)
        g = ring.loop_gain(x)[:, tap]
        if g.min() < 0.9 and g.max() > 1.3:
            score = -abs(float(np.argmin(np.abs(g - 1.0))) - n_points / 2)
            if score > best_score:
                best, best_x, best_score = tap, x, score
    x = best_x
    g = ring.loop_gain(x)[:, best]
    up = ring.forward(x)[:, best]
    down = ring.forward(x[::-1])[::-1, best]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    axes = fig.subplots(1, 2)
    g_th, band = ring.params.threshold_gain, max(ring.params.hysteresis_band, 0.01)
    near = np.abs(g - g_th) < 4 * band
    for ax, sel, title in ((axes[0], slice(None), "threshold"), (axes[1], near, "hysteresis (zoom)")):
        ax.plot(g[sel], up[sel], ".-", ms=2, lw=0.8, label="gain up")
        ax.plot(g[sel], down[sel], ".-", ms=2, lw=0.8, label="gain down")
        ax.axvline(g_th, color="k", lw=0.5, ls=":")
        ax.set_xlabel("small-signal loop gain G0")
        ax.set_ylabel(f"tap {best} output (V)")
        ax.set_title(title)
        ax.legend()
    fig.savefig(out / "threshold.png", dpi=90)
    return {"threshold_tap": float(best), "hysteresis_loop_area_V": _area(np.abs(down - up), g)}


def _modes(ring: Ring, out: Path, n_points: int = 801) -> dict[str, float]:
    """Sweep one tap's coil field (gain control held): mode hops as steps and ripples in the output."""
    mid = (ring.drive_low + ring.drive_high) / 2.0
    tap = int(np.argmax(ring.loop_gain(mid[None, :])[0]))
    t = np.linspace(-1.0, 1.0, n_points) * float(np.max(ring.drive_high - ring.drive_low)) / 2.0
    x = np.clip(mid + t[:, None] * ring.coil_axis(tap), ring.drive_low, ring.drive_high)
    h = ring.coil_field(x)[:, tap]
    v = ring.forward(x)[:, tap]
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(h, v, lw=0.8)
    ax.set_xlabel("coil field (ring-mode spacings)")
    ax.set_ylabel(f"tap {tap} output (V)")
    twin = ax.twinx()
    twin.plot(h, np.round(h), color="0.6", lw=0.6, ls="--")
    twin.set_ylabel("oscillating mode index", color="0.4")
    ax.set_title("mode selection by the coil field")
    fig.savefig(out / "modes.png", dpi=90)
    hops = int(np.count_nonzero(np.diff(np.round(h))))
    return {"mode_hops_in_coil_sweep": float(hops)}


class _Reader:
    """The ring read through the board's ADC (``n_avg`` reads averaged), in volts."""

    def __init__(self, ring: Ring, cfg: dict[str, Any], n_avg: int = DEFAULT_N_AVG) -> None:
        self.ring, self.n_avg = ring, n_avg
        self.adc = ADC(cfg, ring.params.read_noise_V, noise_free=ring.params.is_noise_free)
        self.rng = np.random.default_rng(ring.seed)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.adc.scale.codes_to_volts(self.adc.average(self.ring.forward(x), self.n_avg, self.rng))


def _noise(reader: _Reader, out: Path, n: int = 2000) -> dict[str, float]:
    """Repeat one drive ``n`` times: spread per tap, histogram of the busiest tap."""
    ring = reader.ring
    mid = (ring.drive_low + ring.drive_high) / 2.0
    v = reader.forward(np.tile(mid, (n, 1)))
    tap = int(np.argmax(v.mean(axis=0)))
    dev = v[:, tap] - v[:, tap].mean()
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    levels = np.unique(dev)
    step = float(np.min(np.diff(levels))) if len(levels) > 1 else reader.adc.lsb_V / reader.n_avg
    ax.hist(dev * 1e3, bins=list(noise_bins(dev, step) * 1e3))
    ax.set_xlabel(f"tap {tap} reading - mean (mV), {n} repeats of one drive, n_avg {reader.n_avg}; "
                  f"bins: whole ADC steps of {step * 1e3:.3g} mV", fontsize=8)
    ax.set_ylabel("count")
    ax.set_title(f"noise: std {dev.std() * 1e3:.2f} mV at {v[:, tap].mean():.3f} V")
    fig.savefig(out / "noise.png", dpi=90)
    return {"noise_std_V": float(dev.std()), "noise_mean_V": float(v[:, tap].mean())}


def noise_bins(values: np.ndarray, step: float, most: int = 50) -> np.ndarray:
    """Histogram edges for readings on a grid of ``step`` (the ADC step of an averaged reading): each bin holds
    the same whole number of grid values, edges halfway between them (no picket fence)."""
    lo, hi = float(values.min()), float(values.max())
    per_bin = max(1, int(np.ceil((hi - lo) / step / most + 1e-9)))
    count = int(np.floor((hi - lo) / step / per_bin + 1e-9)) + 1
    return lo - step / 2 + per_bin * step * np.arange(count + 1)


def _drift(reader: _Reader, out: Path, minutes: float = 10.0, reads: int = 20, every_s: float = 5.0
           ) -> dict[str, float]:
    """Read one drive ``reads`` times every ``every_s`` simulated seconds for ``minutes``."""
    ring = reader.ring
    mid = (ring.drive_low + ring.drive_high) / 2.0
    block = np.tile(mid, (reads, 1))
    times, means = [], []
    n_points = int(minutes * 60.0 / every_s)
    for _ in range(n_points):
        times.append(ring.clock_s)
        means.append(reader.forward(block).mean(axis=0))
        ring.idle(max(every_s - reads * ring.settle_s, 0.0))
    t = np.asarray(times) / 60.0
    m = np.asarray(means)
    active = m[0] > ring.params.v_offset + 0.05
    rel = m[:, active] / m[0, active] - 1.0 if active.any() else np.zeros((len(t), 1))
    names = [f"tap {i} ({m[0, i]:.3g} V at start)" for i in np.flatnonzero(active)] or ["no active tap"]
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(t, 100.0 * rel, lw=0.7, label=names)
    ax.legend(fontsize=7, title="output", title_fontsize=7)
    ax.set_xlabel("simulated device time (min)")
    ax.set_ylabel("output change (%), active taps")
    ax.set_title("drift at a fixed drive")
    fig.savefig(out / "drift.png", dpi=90)
    # Slow component: mean of the last minute minus mean of the first minute (per-read noise averages out).
    k = max(int(60.0 / every_s), 1)
    change = rel[-k:].mean(axis=0) - rel[:k].mean(axis=0)
    per_min = float(np.sqrt(np.mean(change**2) / max(minutes - 1.0, 1e-9)))
    return {"drift_output_rel_rms_per_sqrt_min": per_min, "drift_minutes": float(minutes)}


def characterize(out_dir: Path, seed: int = 0, level: str = "A", cfg: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Write the characterisation plots and summary.txt into ``out_dir``; return the summary figures."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = board_config() if cfg is None else cfg
    params = ring_params(cfg)
    ring = Ring(params, seed=seed, level=level)
    figures: dict[str, Any] = {"seed": seed, "level": level, "board": cfg["name"], "n_inputs": ring.n_inputs,
                               "n_outputs": ring.n_outputs}
    figures.update(_transfer(ring, out))
    if level == "A":
        # Threshold loop on a fresh ring with drift off, so the loop is the hysteresis and not the walk.
        quiet_drift = dataclasses.replace(params, drift_rel_per_min=0.0)
        figures.update(_threshold(Ring(quiet_drift, seed=seed), out))
        figures.update(_modes(Ring(quiet_drift, seed=seed), out))
    figures.update(_noise(_Reader(Ring(params, seed=seed, level=level), cfg), out))
    if level == "A":
        figures.update(_drift(_Reader(Ring(params, seed=seed), cfg), out))
        rng = np.random.default_rng(seed)
        g0 = Ring(params.noise_free(), seed=seed).loop_gain(
            rng.uniform(ring.drive_low, ring.drive_high, (2000, ring.n_inputs))
        )
        figures["fraction_above_threshold_uniform_drive"] = float((g0 > params.threshold_gain).mean())
    mem = memory_figures(seed=seed, params=params)
    figures["level_b_stm"] = mem["stm"]
    figures["level_b_pc"] = mem["pc"]
    figures["read_noise_V_param"] = params.read_noise_V
    figures["adc_noise_per_read_V"] = ADC(cfg, params.read_noise_V).noise_V
    figures["n_avg"] = DEFAULT_N_AVG
    figures["gain_noise_rel_param"] = params.gain_noise_rel
    figures["drift_rel_per_min_param"] = params.drift_rel_per_min
    figures["settle_s"] = params.settle_s
    lines = [f"pgt simulated ring characterisation (seed {seed}, level {level})", ""]
    lines += [f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}" for k, v in figures.items()]
    lines += [
        "",
        "STM / PC: level B, random binary input, ridge readout, delays 1..20, held-out half.",
        "Real ring (Watt & Kostylev 2020-21): STM 4.68-4.77, PC 1.47-1.74.",
    ]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return figures
