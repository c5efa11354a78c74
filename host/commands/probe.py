"""``pgt probe URL --out DIR``: sweep each drive channel across its safe range (the others held at mid-range,
the values stated on the plots and recorded in the CSV) and write transfer curves: a CSV of every reading and
PNG plots (one per channel and an overview). ``--out`` is checked before the device is opened."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pgt.commands.info import add_device_arguments, check_device_args, open_client

NAME = "probe"
MAX_POINTS = 4096  # a 12-bit DAC's every code; more points would only repeat codes
HELP = "sweep each drive channel across its safe range; write transfer-curve plots (PNG) and a CSV"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_device_arguments(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory for the CSV and plots")
    p.add_argument("--points", type=int, default=33, help=f"drive values per channel, 2..{MAX_POINTS} (default 33)")


def sweep(low: Any, high: Any, points: int) -> tuple[Any, Any]:
    """Rows of the sweep: channel j takes ``points`` values from low[j] to high[j], the others sit at mid-range.
    Returns (drive (k*points, k), channel index of each row)."""
    import numpy as np

    k = len(low)
    mid = (low + high) / 2.0
    drive = np.tile(mid, (k * points, 1))
    channel = np.repeat(np.arange(k), points)
    for j in range(k):
        drive[j * points:(j + 1) * points, j] = np.linspace(low[j], high[j], points)
    return drive, channel


def write_csv(path: Path, drive: Any, channel: Any, volts: Any) -> None:
    """Columns: the swept channel, its drive (mA), the readings v0.. (V), then every channel's drive in the row
    (ch0_mA..: the swept one and the values the others were held at)."""
    k = drive.shape[1]
    lines = ["channel,drive_mA," + ",".join(f"v{i}" for i in range(volts.shape[1])) + "," +
             ",".join(f"ch{i}_mA" for i in range(k))]
    for row in range(len(drive)):
        j = int(channel[row])
        lines.append(f"{j},{drive[row, j]:.6g}," + ",".join(f"{v:.6g}" for v in volts[row]) + "," +
                     ",".join(f"{d:.6g}" for d in drive[row]))
    path.write_text("\n".join(lines) + "\n")


def held_text(drive: Any, channel: Any, j: int | None = None) -> str:
    """What the channels not swept were held at: "other channels held at 25 mA (mid-range)", or per channel."""
    k = drive.shape[1]
    mids = [float(drive[int((channel == (i + 1) % k).argmax()), i]) for i in range(k)]  # i, while another sweeps
    others = [i for i in range(k) if i != j]
    if not others:
        return "no other channels"
    values = {round(mids[i], 6) for i in others}
    if len(values) == 1:
        return f"other channels held at {mids[others[0]]:.4g} mA (mid-range)"
    return "other channels held at mid-range: " + ", ".join(f"ch{i} {mids[i]:.4g} mA" for i in others[:8]) + (
        ", ..." if len(others) > 8 else "")


def plot(out: Path, drive: Any, channel: Any, volts: Any, title: str) -> list[Path]:
    """transfer_curves.png (every drive channel's sweep, one panel each) and transfer_chNN.png per channel; every
    panel has labelled axes and a legend naming the output channels (v0.. as in the CSV)."""
    import numpy as np
    from matplotlib.figure import Figure

    k = int(channel.max()) + 1
    m = volts.shape[1]
    labels = [f"v{i}" for i in range(m)]
    ncol = max(1, int(np.ceil(m / 8)))
    lo, hi = float(volts.min()), float(volts.max())
    pad = 0.05 * (hi - lo) or 0.01
    written = []
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fig = Figure(figsize=(3.4 * cols + 0.8 * ncol, 2.6 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for j in range(k):
        sel = channel == j
        ax = axes[j // cols][j % cols]
        ax.plot(drive[sel, j], volts[sel], lw=0.8, label=labels)
        ax.set_title(f"drive channel {j}", fontsize=9)
        ax.set_xlabel(f"drive channel {j} (mA)", fontsize=8)
        ax.set_ylabel("reading (V)", fontsize=8)
        ax.set_ylim(lo - pad, hi + pad)
        ax.tick_params(labelsize=7)
    for j in range(k, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.legend(*axes[0][0].get_legend_handles_labels(), title="output", loc="outside right upper", ncol=ncol,
               fontsize=7)
    fig.suptitle(f"{title} ({held_text(drive, channel)})", fontsize=10)
    fig.set_layout_engine("constrained")
    path = out / "transfer_curves.png"
    fig.savefig(path, dpi=90)
    written.append(path)
    fig = Figure(figsize=(6 + 0.8 * ncol, 4), layout="constrained")
    ax = fig.subplots()
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel("reading (V)")
    lines = ax.plot(drive[channel == 0, 0], volts[channel == 0], lw=1.0, label=labels)
    ax.legend(title="output", ncol=ncol, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for j in range(k):  # one figure, new data per channel: much faster than a figure each
        sel = channel == j
        for line, column in zip(lines, volts[sel].T):
            line.set_data(drive[sel, j], column)
        ax.set_xlim(float(drive[sel, j].min()), float(drive[sel, j].max()) + 1e-9)
        ax.set_xlabel(f"drive channel {j} (mA); {held_text(drive, channel, j)}")
        ax.set_title(f"{title}: channel {j}", fontsize=10)
        path = out / f"transfer_ch{j:02d}.png"
        fig.savefig(path, dpi=80)
        written.append(path)
    return written


def reading_ranges(volts: Any) -> list[str]:
    """The true range of the readings: overall, and per output channel (named as in the CSV and plots)."""
    lines = [f"readings {volts.min():.4g}..{volts.max():.4g} V over all outputs; per output:"]
    for i in range(volts.shape[1]):
        col = volts[:, i]
        lines.append(f"  v{i}: {col.min():.4g}..{col.max():.4g} V (span {col.max() - col.min():.3g} V)")
    return lines


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from pgt.errors import UserError
    from pgt.run_dir import check_out

    if not 2 <= args.points <= MAX_POINTS:
        raise UserError(f"--points must be from 2 to {MAX_POINTS}, got {args.points}")
    check_device_args(args)
    check_out(args.out)  # before the device sweep, not after it
    with open_client(args) as client:
        info = client.info
        drive, channel = sweep(client.drive_low, client.drive_high, args.points)
        volts = np.empty((len(drive), client.n_outputs))
        step = client.max_batch
        blocks = (len(drive) + step - 1) // step
        for b in range(blocks):
            rows = slice(b * step, min(len(drive), (b + 1) * step))
            print(f"probe: block {b + 1}/{blocks} ({rows.stop - rows.start} vectors)", file=sys.stderr)
            volts[rows] = client.run(drive[rows])
        device_s = client.device_seconds
    csv = args.out / "transfer_curves.csv"
    write_csv(csv, drive, channel, volts)
    print(f"probe: plotting {client.n_inputs} channels", file=sys.stderr)
    pngs = plot(args.out, drive, channel, volts, f"{info['board']} ({args.url})")
    print(f"swept {client.n_inputs} channels x {args.points} points = {len(drive)} vectors in {blocks} block(s), "
          f"{device_s:.3g} s of device time")
    print("\n".join(reading_ranges(volts)))
    print(f"wrote {csv} and {len(pngs)} plots in {args.out}")
    return 0
