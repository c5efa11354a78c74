"""``pgt info URL``: handshake with a device (or ``sim://``) and print what it is and how it is configured."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

NAME = "info"
HELP = "handshake with a device (serial port, socket:// or sim://) and print board, channels, calibration, limits"


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """The device URL and link options shared by the commands that open a device."""
    p.add_argument("url", help="serial port (/dev/ttyACM0, COM3), pyserial URL (socket://HOST:PORT) or "
                               "sim://?seed=0&model=A&noise_free=1")
    p.add_argument("--baud", type=int, default=115200, help="baud rate for USB-UART bridges (default 115200)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply (default 2)")


def open_client(args: argparse.Namespace) -> Any:
    from pgt.client import RingClient

    return RingClient.open(args.url, timeout=args.timeout, baudrate=args.baud)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_device_arguments(p)
    p.add_argument("--json", action="store_true", help="print the device description as JSON")


def _span(values: Sequence[float], fmt: str = "{:g}") -> str:
    """'v' when all equal, else 'min..max (per channel)'."""
    vals = list(values)
    if all(v == vals[0] for v in vals):
        return fmt.format(vals[0])
    return f"{fmt.format(min(vals))}..{fmt.format(max(vals))} (per channel)"


def describe(info: dict[str, Any]) -> list[str]:
    """The human-readable lines of ``pgt info``."""
    lo_mA, hi_mA = info["drive_low_mA"], info["drive_high_mA"]
    llo, lhi = info["limit_low_mA"], info["limit_high_mA"]
    return [
        f"device       {info['url']}",
        f"board        {info['board']} (uid {info['uid']})",
        f"firmware     {info['fw']}, protocol {info['proto']}, {len(info.get('files', {}))} files",
        f"channels     {info['k']} drive in, {info['m']} samples out",
        f"DAC          {info['dac_bits']} bit, {info['dac_mA_per_code']:.6g} mA/code, "
        f"offset {info['dac_mA_offset']:g} mA",
        f"ADC          {info['adc_bits']} bit, {info['adc_V_per_code']:.6g} V/code, "
        f"offset {info['adc_V_offset']:g} V",
        f"safe limits  codes {_span(info['limit_lo'])}..{_span(info['limit_hi'])} = "
        f"{_span(llo, '{:.4g}')}..{_span(lhi, '{:.4g}')} mA",
        f"drive range  codes {_span(info['drive_lo'])}..{_span(info['drive_hi'])} = "
        f"{_span(lo_mA, '{:.4g}')}..{_span(hi_mA, '{:.4g}')} mA",
        f"config       settle {info['settle_us']} us, n_avg {info['n_avg']}, watchdog {info['timeout_ms']} ms",
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
