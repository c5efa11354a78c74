"""``pgt eval RUN_DIR``: re-measure a finished run's test accuracy (or NMSE) through the device now — a drift
check against the figure the run reported at its best-validation step."""

from __future__ import annotations

import argparse
import sys

NAME = "eval"
HELP = "re-measure a finished run's test accuracy (or NMSE) through the device now (a drift check)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pgt.commands.predict import add_model_arguments

    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pgt.commands.predict import load_model, measure, score, split_inputs
    from pgt.commands.train import figure_text

    model, url = load_model(args)
    inputs = split_inputs(model, "test")

    def say(line: str) -> None:
        print(f"pgt eval: {line}", file=sys.stderr, flush=True)

    device, out, rows, cal_rows = measure(model, url, inputs, args, say)
    now, then = score(model, out, inputs), model.doc["selection"]["test"]
    assert now is not None
    unit = 1.0 if model.metric == "nmse" else 100.0
    change = "" if then is None else f" (at selection: {figure_text(model.metric, then, 'test')}; change " \
        f"{unit * (now - then):+.{4 if model.metric == 'nmse' else 1}f}{'' if model.metric == 'nmse' else ' points'})"
    print(f"{figure_text(model.metric, now, 'test')} now on {device.info.get('url', url)}{change}; "
          f"{len(out):,} samples, device rows {rows + cal_rows:,} (inference {rows:,}, calibration {cal_rows:,})")
    return 0
