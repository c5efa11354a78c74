"""PNG plots of training runs: validation accuracy against all device rows (matplotlib's Figure API).

No pyplot and no ``matplotlib.use``: the figure renders through the Agg canvas directly, so a notebook's
backend is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def accuracy_vs_queries(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path, title: str = "",
) -> Path:
    """Plot ``val_acc`` against ``queries`` (every device row: calibration, training, evaluation) for each
    labelled history of metrics records; a star marks a record's ``test_acc`` where it was measured. Saves
    a PNG and returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, history in runs.items():
        vals = [(max(int(r["queries"]), 1), 100.0 * float(r["val_acc"])) for r in history
                if r.get("val_acc") is not None]
        (line,) = ax.plot(*zip(*vals), marker=".", label=f"{label} (validation)")
        tests = [(max(int(r["queries"]), 1), 100.0 * float(r["test_acc"])) for r in history
                 if r.get("test_acc") is not None]
        if tests:
            ax.plot(*zip(*tests), marker="*", markersize=10, linestyle="none", color=line.get_color(),
                    label=f"{label} (test, best-validation iterate)")
    ax.set_xscale("log")
    ax.set_xlabel("device rows (calibration + training + evaluation)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy vs device rows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
