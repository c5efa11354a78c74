"""``pgt selftest``'s one-page figure (matplotlib's Figure API, no pyplot): step responses, noise, DNL, spans,
watchdog, and the verdict lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red", "skip": "tab:gray"}


def page(path: Path, checks: list[Any], data: dict[str, Any], title: str) -> Path:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by = {c.name: c for c in checks}
    fig = Figure(figsize=(11.7, 8.3), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    ax = axes[0][0]
    for ch in data["channels"]:
        ax.plot(np.maximum(ch["delays_us"], 1), np.maximum(ch["residual"], 1e-2), marker=".",
                label=f"drive {ch['channel']}: {'-' if ch['time_us'] is None else format(ch['time_us'], '.0f')} us")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="one noise sigma")
    rec = by["settle"].values.get("recommended_settle_us")
    if rec:
        ax.axvline(max(rec, 1), color=COLOURS[by["settle"].verdict], lw=1.0, label=f"settle_us {rec}")
    ax.axvline(max(by["settle"].values["board_settle_us"], 1), color="gray", lw=0.8, ls=":",
               label=f"board now {by['settle'].values['board_settle_us']}")
    ax.set(xscale="log", yscale="log", xlabel="settle_us (delay after the drive step)",
           ylabel="distance from the settled reading (sigmas)", title="settle: step response per drive channel")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    enob = by["noise"].values["enob"]
    ax.bar([f"tap{i}" for i in range(len(enob))], enob, color=COLOURS[by["noise"].verdict])
    for i, (e, s) in enumerate(zip(enob, by["noise"].values["sigma_mV"])):
        ax.text(i, e, f"{e:.2f} bits\n{s:.2f} mV", ha="center", va="bottom", fontsize=7)
    ax.set(ylabel="effective bits (single read, lowest drive)", title="noise per tap",
           ylim=(0, max(enob + [1.0]) * 1.25))
    ax = axes[0][2]
    d = by["dnl"].values
    if d.get("codes"):
        ax.plot(d["codes"], d["dnl"], ".", ms=2, color="tab:blue")
        for c in d["spikes"]:
            ax.axvline(c, color=COLOURS["warn"], lw=0.8)
    ax.set(xlabel="converter code", ylabel="DNL (LSB)", title=f"DNL: {len(d.get('codes', []))} codes, "
           f"{len(d.get('spikes', []))} spikes, {len(d.get('missing', []))} missing")
    ax = axes[1][0]
    ratio = by["span"].values["span_over_noise"]
    ax.bar([f"tap{i}" for i in range(len(ratio))], ratio, color=COLOURS[by["span"].verdict])
    ax.axhline(20, color="k", lw=0.8, ls="--", label="20x (warn below)")
    ax.set(yscale="log", ylabel="span / repeat noise", title="span of each tap over a drive sweep",
           ylim=(1, max(ratio + [100.0]) * 2))
    ax.legend(fontsize=7)
    ax = axes[1][1]
    w = by["watchdog"].values
    if "loopback_driven" in w:
        ax.bar(["expected driven", "loopback driven", "loopback after silence", "expected zero"],
               [w["expected_driven"], w["loopback_driven"], w["loopback_after"], w["expected_zero"]],
               color=["lightgray", "tab:blue", COLOURS[by["watchdog"].verdict], "lightgray"])
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    else:
        ax.text(0.5, 0.5, "no loopback wire (board.json loopback_pin)", ha="center", transform=ax.transAxes)
    ax.set(ylabel="loopback reading (16-bit code)", title=f"watchdog: {w.get('trips', 0)} trip(s) after "
           f"{w.get('silent_s', 0):.1f} s of silence")
    ax = axes[1][2]
    ax.axis("off")
    for i, c in enumerate(checks):
        ax.text(0.0, 1.0 - 0.165 * i, f"{c.verdict.upper()}  {c.name}", color=COLOURS[c.verdict], fontsize=10,
                fontweight="bold", transform=ax.transAxes, va="top")
        ax.text(0.0, 0.945 - 0.165 * i, _wrap(c.line, 75), fontsize=6.5, transform=ax.transAxes, va="top")
    fig.suptitle(f"pgt selftest: {title}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:3])
