"""PNG plots of training runs: validation accuracy against all device rows (matplotlib's Figure API).

No pyplot and no ``matplotlib.use``: the figure renders through the Agg canvas directly, so a notebook's
backend is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def accuracy_vs_queries(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = "", metric: str = "acc",
) -> Path:
    """Plot ``val_acc`` against ``queries`` (every device row: calibration, training, evaluation) for each
    labelled history of metrics records; a star marks a record's ``test_acc`` where it was measured. Saves
    a PNG and returns its path. ``metric="nmse"``: regression runs, ``val_nmse``/``test_nmse`` on a log axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, history in runs.items():
        unit = 1.0 if metric == "nmse" else 100.0
        vals = [(max(int(r["queries"]), 1), unit * float(r[f"val_{metric}"])) for r in history
                if r.get(f"val_{metric}") is not None]
        if not vals:
            continue
        (line,) = ax.plot(*zip(*vals), marker=".", label=f"{label} (validation)")
        tests = [(max(int(r["queries"]), 1), unit * float(r[f"test_{metric}"])) for r in history
                 if r.get(f"test_{metric}") is not None]
        if tests:
            ax.plot(*zip(*tests), marker="*", markersize=10, linestyle="none", color=line.get_color(),
                    label=f"{label} (test, best-validation iterate)")
    ax.set_xscale("log")
    ax.set_xlabel("device rows (calibration + training + evaluation)")
    if metric == "nmse":
        ax.set_yscale("log")
    ax.set_ylabel("NMSE = MSE / var(y)" if metric == "nmse" else "accuracy (%)")
    ax.set_title(title or f"{'NMSE' if metric == 'nmse' else 'accuracy'} vs device rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
