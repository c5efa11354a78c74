"""A sweep's results as a table, a CSV file and a plot, and each trial's evaluations from Tune's files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .spec import SweepResult, TrialResult

COLUMNS = ("trial", "estimator", "seed", "rig", "status", "steps", "best_val_acc", "best_test_acc",
           "final_val_acc", "queries", "training_queries", "error")


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """One flat row per trial (the CSV's and the table's)."""
    out = []
    for r in result.trials:
        out.append({
            "trial": r.trial.group, "estimator": r.trial.config.estimator, "seed": r.trial.config.seed,
            "rig": r.trial.rig or "", "status": r.status, "steps": r.get("step", ""),
            **{k: r.get(k, "") for k in COLUMNS[6:11]}, "error": r.error or "",
            **{k: getattr(r.trial.config, k) for k in r.trial.varied if k not in ("seed", "estimator")},
        })
    return out


def write_csv(result: SweepResult, path: str | Path) -> Path:
    table = rows(result)
    keys = list(dict.fromkeys(k for row in table for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(table)
    return Path(path)


def format_table(result: SweepResult) -> str:
    """The results as an aligned text table, best validation accuracy first."""
    def pct(v: Any) -> str:
        return "-" if v in ("", None) else f"{100 * float(v):.1f}%"

    head = ["trial", "seed", "rig", "status", "steps", "best val", "test at best val", "final val", "queries",
            "error"]
    lines = []
    order = sorted(result.trials, key=lambda r: -(r.get("best_val_acc") or -1.0))
    for r in order:
        q = r.get("queries")
        lines.append([r.trial.group, str(r.trial.config.seed), r.trial.rig or "-", r.status,
                      str(r.get("step", "-")), pct(r.get("best_val_acc")), pct(r.get("best_test_acc")),
                      pct(r.get("final_val_acc")), "-" if q is None else f"{q:,}", r.error or ""])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [head, *lines])


def plot(result: SweepResult, path: str | Path) -> Path:
    """Validation accuracy against all device rows: every trial faint, the best trial of each group bold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    groups: dict[str, list[TrialResult]] = {}
    for r in result.trials:
        groups.setdefault(r.trial.group, []).append(r)
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for colour, (group, members) in zip(colours, groups.items()):
        for r in members:
            vals = [h for h in r.history if h.get("val_acc") is not None]
            if vals:
                ax.plot([max(h["queries"], 1) for h in vals], [100 * h["val_acc"] for h in vals],
                        color=colour, alpha=0.25, linewidth=0.8)
        best = max((r for r in members if r.history), key=lambda r: r.get("best_val_acc") or -1.0, default=None)
        if best is not None:
            vals = [h for h in best.history if h.get("val_acc") is not None]
            ax.plot([max(h["queries"], 1) for h in vals],
                    [100 * h["val_acc"] for h in vals], color=colour, linewidth=2.2,
                    label=f"{group} (seed {best.trial.config.seed})")
    ax.set_xscale("log")
    ax.set_xlabel("device rows (calibration + training + evaluation)")
    ax.set_ylabel("validation accuracy (%)")
    n = len(result.trials)
    ax.set_title(f"sweep {result.dir.name}: {n} trial{'' if n == 1 else 's'}")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    else:  # no trial reported an evaluation: say so instead of drawing empty 0-1 axes
        ax.set_xlim(1, 10)
        ax.text(0.5, 0.5, "no trial reported a validation accuracy", transform=ax.transAxes, ha="center",
                va="center")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def read_history(trial_dir: str | None) -> list[dict[str, Any]]:
    """Every evaluation a trial reported (Tune's ``result.json``), once per step: a report repeated after a
    restart from a checkpoint replaces the earlier one."""
    if not trial_dir:
        return []
    path = Path(trial_dir) / "result.json"
    by_step: dict[tuple[int, bool], dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "step" in rec and ("val_acc" in rec or "test_acc" in rec):  # an evaluation, or the final test
            by_step[(int(rec["step"]), "test_step" in rec)] = {"val_acc": None, "test_acc": None} | {
                k: v for k, v in rec.items() if k not in _TUNE_KEYS}
    return [by_step[s] for s in sorted(by_step)]


_TUNE_KEYS = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
              "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
              "iterations_since_restore", "config", "should_checkpoint", "experiment_tag"}
