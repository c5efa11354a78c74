"""``pgt show RUN_DIR [RUN_DIR ...]``: summarise finished runs without opening any device; ``--plot`` overlays
their curves (validation accuracy or NMSE against all device rows) in one figure."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "show"
HELP = "summarise finished runs (task, device, estimator, rows, figures at selection) without opening a device"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (or directories with model.json)")
    p.add_argument("--plot", metavar="PNG", help="also overlay the runs' curves in one figure, saved here")


def run(args: argparse.Namespace) -> int:
    from pgt.errors import UserError
    from pgt.model_file import load

    models = [load(d) for d in args.run_dirs]  # every one readable before anything is printed
    metrics = {m.metric for m in models}
    if args.plot:
        if len(metrics) > 1:
            raise UserError("--plot: these runs mix classification (accuracy) and regression (NMSE); plot them "
                            "separately")
        if not Path(args.plot).resolve().parent.is_dir():
            raise UserError(f"--plot {args.plot}: no such directory")
    rows = [("run", "task", "model", "estimator", "device", "step", "validation", "test", "device rows", "saved")]
    for m in models:
        d, sel = m.doc, m.doc["selection"]
        fig = (lambda v: "-" if v is None else f"NMSE {v:.4g}") if m.metric == "nmse" else \
            (lambda v: "-" if v is None else f"{100 * v:.1f}%")
        dev = d["device"]
        rows.append((str(m.source), str(d["task"].get("name")), d["config"]["model"], d["config"]["estimator"],
                     f"{dev.get('board', dev.get('kind', '?'))} ({dev['k']}x{dev['m']})", str(sel["step"]),
                     fig(sel["val"]), fig(sel["test"]), f"{sel['queries']:,}", d["date"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if args.plot:
        from pgt.plots import accuracy_vs_queries

        names = [Path(str(m.source)).name for m in models]
        labels = [n if names.count(n) == 1 else str(m.source) for n, m in zip(names, models)]
        png = accuracy_vs_queries({lab: m.doc["history"] for lab, m in zip(labels, models)}, args.plot,
                                  metric=models[0].metric, title="runs compared")
        print(f"plot {png}")
    return 0
