"""PNG plots of training runs: accuracy and training loss against all device rows (matplotlib's Figure API).

No pyplot and no ``matplotlib.use``: the figure renders through the Agg canvas directly, so a notebook's
backend is left alone. :func:`accuracy_series` computes what is plotted, so a test can read the plot's data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Records = Sequence[Mapping[str, Any]]
Points = list[tuple[int, float]]


def accuracy_series(history: Records, metric: str = "acc") -> dict[str, Points]:
    """A run's plotted series, each a list of (device rows, value): ``val`` (validation accuracy, %), ``test``
    (test accuracy, %, at the rows of the iterate it measured: the best-validation step's evaluation, not the
    rows after the test) and ``loss`` (mean training loss since the previous evaluation). ``metric="nmse"``
    (regression): NMSE instead of accuracy, as a plain number."""
    val, test, unit = f"val_{metric}", f"test_{metric}", 1.0 if metric == "nmse" else 100.0
    rows_at = {r.get("step"): max(int(r["queries"]), 1) for r in history if r.get(val) is not None}
    out: dict[str, Points] = {"val": [], "test": [], "loss": []}
    for r in history:
        rows = max(int(r["queries"]), 1)
        if r.get(val) is not None:
            out["val"].append((rows, unit * float(r[val])))
        if r.get("loss") is not None:
            out["loss"].append((rows, float(r["loss"])))
        if r.get(test) is not None:
            out["test"].append((rows_at.get(r.get("test_step"), rows), unit * float(r[test])))
    return out


def accuracy_figure(
    runs: Mapping[str, Records], title: str = "", val_size: int | None = None, chance: float | None = None,
    metric: str = "acc",
) -> Any:
    """The figure :func:`accuracy_vs_queries` saves: accuracy (validation line, test star, chance level) above
    the training loss, both against device rows; the legend below them. Lines carry ``gid``
    ``"<series>:<label>"`` (series as in :func:`accuracy_series`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 5.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax, lax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))
    val_text = "validation" if val_size is None else f"validation ({val_size} samples)" if metric == "nmse" else \
        f"validation ({val_size} samples: {100 / val_size:.2g}-point steps)"
    for label, history in runs.items():
        series = accuracy_series(history, metric)
        (line,) = ax.plot(*zip(*series["val"]), marker=".", label=f"{label}: {val_text}", gid=f"val:{label}") \
            if series["val"] else ax.plot([], [])
        if series["test"]:
            ax.plot(*zip(*series["test"]), marker="*", markersize=11, linestyle="none", color=line.get_color(),
                    label=f"{label}: test, at the selected (best-validation) iterate", gid=f"test:{label}")
        if series["loss"]:
            lax.plot(*zip(*series["loss"]), color=line.get_color(), label=label, gid=f"loss:{label}")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({100 * chance:.3g}%)",
                   gid="chance")
    ax.set_xscale("log")
    if metric == "nmse":
        ax.set_yscale("log")
    name = "NMSE = MSE / var(y)" if metric == "nmse" else "accuracy (%)"
    ax.set_ylabel(name)
    ax.set_title(title or f"{name.split(' ')[0]} vs device rows")
    lax.set_xlabel("device rows (calibration + training + evaluation)")
    lax.set_ylabel("training loss")
    for a in (ax, lax):
        a.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below both panels: it hides no curve
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize="small")
    return fig


def accuracy_vs_queries(
    runs: Mapping[str, Records], path: str | Path, title: str = "", val_size: int | None = None,
    chance: float | None = None, metric: str = "acc",
) -> Path:
    """Save :func:`accuracy_figure` for labelled histories of metrics records as a PNG; returns its path.
    ``metric="nmse"``: regression runs (NMSE on a log axis)."""
    fig = accuracy_figure(runs, title, val_size, chance, metric)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
