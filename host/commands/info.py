"""``pgt info URL``: handshake with a device (or ``sim://``) and print what it is and how it is configured."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

NAME = "info"
HELP = "handshake with a device (serial port, socket:// or sim://) and print board, channels, calibration, limits"


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """The device URL and link options shared by the commands that open a device."""
    p.add_argument("url", help="serial port (/dev/ttyACM0, COM3), pyserial URL (socket://HOST:PORT) or "
                               "sim://?board=rp2&seed=0&noise_free=1")
    p.add_argument("--baud", type=int, default=115200, help="baud rate for USB-UART bridges (default 115200)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply (default 2)")


def check_device_args(args: argparse.Namespace) -> None:
    """UserError unless the URL can work (``pgt.device.check_device_url``) and ``--timeout`` and ``--baud`` are
    positive finite numbers (checked before any I/O)."""
    from pgt.device import check_device_url
    from pgt.errors import UserError

    check_device_url(args.url)
    if not 0 < args.timeout < math.inf:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.baud <= 0:
        raise UserError(f"--baud must be positive, got {args.baud}")


def open_client(args: argparse.Namespace) -> Any:
    """The checked device options, then ``pgt.device.open_device`` (saying so on stderr when it opens a port)."""
    from pgt.device import is_sim_url, open_device

    check_device_args(args)
    if not is_sim_url(args.url):
        command = getattr(args, "command", "info")
        print(f"pgt {command}: connecting to {args.url} (handshake, {args.timeout:g} s per attempt) ...",
              file=sys.stderr, flush=True)
    return open_device(args.url, timeout=args.timeout, baudrate=args.baud)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_device_arguments(p)
    p.add_argument("--json", action="store_true", help="print the device description as JSON")


def channel_table(info: dict[str, Any]) -> list[str]:
    """One line per drive channel: its safe limits and its configured range, in DAC codes and in mA."""
    rows = [("channel", "safe limits (codes)", "safe limits (mA)", "drive range (codes)", "drive range (mA)")]
    for j in range(int(info["k"])):
        rows.append((str(j), f"{info['limit_lo'][j]}..{info['limit_hi'][j]}",
                     f"{info['limit_low_mA'][j]:.4g}..{info['limit_high_mA'][j]:.4g}",
                     f"{info['drive_lo'][j]}..{info['drive_hi'][j]}",
                     f"{info['drive_low_mA'][j]:.4g}..{info['drive_high_mA'][j]:.4g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def describe(info: dict[str, Any]) -> list[str]:
    """The human-readable lines of ``pgt info``."""
    return [
        f"device       {info['url']}",
        f"board        {info['board']} (uid {info['uid']})",
        f"firmware     {info['fw']}, protocol {info['proto']}, {len(info.get('files', {}))} files",
        f"channels     {info['k']} drive in, {info['m']} samples out",
        f"DAC          {info['dac_bits']} bit, {info['dac_mA_per_code']:.6g} mA/code, "
        f"offset {info['dac_mA_offset']:g} mA",
        f"ADC          {info['adc_bits']} bit converter, samples on the 16-bit scale: "
        f"{info['adc_V_per_code']:.6g} V/code, offset {info['adc_V_offset']:g} V",
        "drive channels (every drive is clamped into its range; the range lies within the safe limits):",
        *channel_table(info),
        f"acquisition  settle {info['settle_us']} us, n_avg {info['n_avg']}",
        f"host silence the drive goes to zero after {info['timeout_ms']} ms without a valid request",
        f"batch        up to {info['max_batch']} vectors per run, frames up to {info['max_frame']} bytes",
    ]


def run(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        info = client.info
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print("\n".join(describe(info)))
    return 0
