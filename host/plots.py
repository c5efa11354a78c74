"""PNG plots of training runs: test accuracy against device queries (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def accuracy_vs_queries(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = "",
    x_key: str = "training_queries",
) -> Path:
    """Plot ``test_acc`` against ``x_key`` for each labelled history (list of metrics records); save PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, history in runs.items():
        xs = [max(int(r[x_key]), 1) for r in history]
        ys = [100.0 * float(r["test_acc"]) for r in history]
        ax.plot(xs, ys, marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("device queries (calibration + training)" if x_key == "training_queries" else x_key)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy vs device queries")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
