"""``pgt reset PORT``: restart the pgt firmware on a board, whatever state it is in.

A board can be at its MicroPython REPL — the friendly REPL, the raw REPL or raw-paste mode, as ``mpremote``
leaves it — or running the serve loop. The command looks at what the port says to a Ctrl-C, sends the bytes
that take any of these states to a soft reset (Ctrl-C, Ctrl-B, Ctrl-C, Ctrl-D: a soft reset at the friendly
REPL runs ``main.py``, i.e. the firmware), then handshakes and says what it found and what happened.
"""

from __future__ import annotations

import argparse

NAME = "reset"
HELP = "restart the pgt firmware on a board left at its REPL (normal, raw, paste) or running: soft reset into main.py"

LISTEN_S = 0.3  # how long to listen to the port after each poke


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="serial port (/dev/ttyACM0, COM3) or pyserial URL (socket://HOST:PORT)")
    p.add_argument("--baud", type=int, default=115200, help="baud rate for USB-UART bridges (default 115200)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for the firmware to answer after the reset (default 5)")


def run(args: argparse.Namespace) -> int:
    from pgt import repl
    from pgt.commands.info import check_device_args
    from pgt.device import is_sim_url, open_device
    from pgt.errors import DeviceError, UserError
    from pgt.ports import open_port

    if is_sim_url(args.url):
        raise UserError("sim:// runs inside each pgt command: there is no board to reset")
    check_device_args(args)
    transport = open_port(args.url, args.baud)
    try:
        print(f"{args.url}: sending Ctrl-C to see what the board is doing ...", flush=True)
        transport.write(repl.CTRL_C)
        heard = repl.listen(transport, LISTEN_S)
        state = repl.repl_state(heard)
        found = repl.STATE_NAMES.get(state or "", "showing no REPL prompt (raw REPL, raw-paste mode, or a busy "
                                                   "program)")
        if state == repl.NORMAL and b"MicroPython" in heard:  # a banner: a program (main.py) ended
            found = "running a program, now stopped at its MicroPython REPL"
        print(f"{args.url}: the board was {found}; soft reset into main.py ({repl.RESTART_KEYS}) ...", flush=True)
        rebooted = b"soft reboot" in repl.soft_reset(transport, LISTEN_S)
    finally:
        transport.close()
    try:
        client = open_device(args.url, timeout=1.0, baudrate=args.baud, retries=max(1, int(args.timeout)),
                             reconnect_timeout=args.timeout)
    except DeviceError as exc:
        raise DeviceError(f"after the soft reset{' (MicroPython rebooted)' if rebooted else ''} the pgt firmware "
                          f"did not answer: {exc}") from exc
    with client:
        info = client.info
    print(f"{args.url}: pgt firmware answers: board {info['board']} (uid {info['uid']}), firmware {info['fw']}, "
          f"boot id {info['boot']:08x}")
    return 0
