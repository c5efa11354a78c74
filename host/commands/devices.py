"""``pgt devices``: the serial ports of this machine, with USB ids, serial numbers and descriptions."""

from __future__ import annotations

import argparse
import json

NAME = "devices"
HELP = "list serial ports (USB VID:PID, serial number, description) to find the board's port"

# USB vendor ids that usually mean a MicroPython-capable board or its USB-UART bridge.
KNOWN_VENDORS = {
    0x2E8A: "Raspberry Pi (RP2040/RP2350)",
    0x303A: "Espressif (native USB)",
    0xF055: "MicroPython",
    0x10C4: "Silicon Labs CP210x bridge",
    0x1A86: "WCH CH340 bridge",
    0x0403: "FTDI bridge",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def describe_ports() -> list[dict[str, str | None]]:
    """One dict per serial port: device, vid_pid, serial_number, description, hint."""
    from serial.tools import list_ports

    out = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        vid, pid = port.vid, port.pid
        out.append({
            "device": port.device,
            "vid_pid": f"{vid:04X}:{pid:04X}" if vid is not None and pid is not None else None,
            "serial_number": port.serial_number,
            "description": port.description if port.description and port.description != "n/a" else None,
            "hint": KNOWN_VENDORS.get(vid) if vid is not None else None,
        })
    return out


def run(args: argparse.Namespace) -> int:
    ports = describe_ports()
    if args.json:
        print(json.dumps(ports, indent=2))
        return 0
    if not ports:
        print("no serial ports found: is the board plugged in with a data cable? (`pgt sim` serves a simulated "
              "board on a pty)")
        return 0
    rows = [("PORT", "VID:PID", "SERIAL", "DESCRIPTION")]
    for p in ports:
        desc = p["description"] or ""
        if p["hint"]:
            desc = f"{desc} [{p['hint']}]" if desc else f"[{p['hint']}]"
        rows.append((str(p["device"]), p["vid_pid"] or "-", p["serial_number"] or "-", desc))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())
    return 0
