"""``pgt sim``: a simulated board (the firmware's Core over the ring model) on a pty or TCP, until Ctrl-C.

Also ``pgt sim --characterize OUT_DIR`` (plots and a summary of the ring model) and ``pgt sim --board`` (the
virtual MicroPython board, which runs the real firmware in a MicroPython VM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

NAME = "sim"
HELP = "serve a simulated ring device on a pty (default) or TCP; or characterise the ring model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", type=int, metavar="PORT", default=None,
                   help="serve on TCP (socket://HOST:PORT) instead of a pty; 0 picks a free port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on with --tcp (default 127.0.0.1)")
    p.add_argument("--link", metavar="PATH", default=None,
                   help="also make PATH a symlink to the pty (replaced if it is a symlink; removed on exit)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated ring (default 0)")
    p.add_argument("--model", choices=("A", "B"), default="A",
                   help="ring model: A quasi-static map (default), B virtual-node memory")
    p.add_argument("--noise-free", action="store_true", help="no noise, drift or hysteresis (the ADC quantises)")
    p.add_argument("--settle", choices=("skip", "sleep"), default="skip",
                   help="skip (answer at once, default) or sleep through the simulated device time of a run")
    p.add_argument("--max-frame", type=int, default=1 << 17, metavar="BYTES",
                   help="largest frame payload the device accepts and sends (default 131072: 2044 vectors a run)")
    p.add_argument("--characterize", metavar="OUT_DIR", default=None,
                   help="instead of serving: write plots and a summary of the ring model to OUT_DIR")
    p.add_argument("--board", action="store_true",
                   help="run the virtual MicroPython board (the real firmware in a MicroPython VM) instead")


def _say(msg: str) -> None:
    print(f"pgt sim: {msg}", file=sys.stderr, flush=True)


def _characterize(args: argparse.Namespace) -> int:
    from pgt.errors import UserError

    ch = importlib.import_module("pgt.sim.characterize")
    out = Path(args.characterize)
    try:
        figures = ch.characterize(out, seed=args.seed, level=args.model)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}") from None
    summary = out / "summary.txt"
    if summary.exists():
        print(summary.read_text().rstrip())
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    print(f"wrote plots and summary to {out}")
    return 0


def _board(args: argparse.Namespace) -> int:
    virtual_board = importlib.import_module("pgt.sim.virtual_board")
    try:
        virtual_board.serve(seed=args.seed, level=args.model, announce=print)
    except KeyboardInterrupt:
        _say("stopped (Ctrl-C)")
    return 0


def _make_link(link: Path, target: str) -> None:
    from pgt.errors import UserError

    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise UserError(f"--link {link}: exists and is not a symlink; not replacing it")
    try:
        link.symlink_to(target)
    except OSError as exc:
        raise UserError(f"--link {link}: {exc.strerror or exc}") from None


def _remove_link(link: Path, target: str) -> None:
    try:
        if link.is_symlink() and os.readlink(link) == target:
            link.unlink()
    except OSError:
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from pgt.errors import UserError

    serving_opts = args.tcp is not None or args.link is not None
    if args.characterize is not None and (serving_opts or args.board):
        raise UserError("--characterize does not serve: drop --tcp, --link and --board")
    if args.board and serving_opts:
        raise UserError("--board picks its own port: drop --tcp and --link")
    if args.tcp is not None and args.link is not None:
        raise UserError("--link names a pty: it does not go with --tcp")
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        raise UserError(f"--tcp {args.tcp}: a port is 0..65535")
    if args.max_frame < 1024:
        raise UserError("--max-frame must be at least 1024")
    if args.characterize is not None:
        return _characterize(args)
    if args.board:
        return _board(args)

    from pgt.sim.device import make_core
    from pgt.sim.serve import PtyServer, TcpServer

    core = make_core(seed=args.seed, level=args.model, noise_free=args.noise_free, settle=args.settle,
                     max_frame=args.max_frame)
    server: PtyServer | TcpServer
    link = Path(args.link) if args.link is not None else None
    if args.tcp is not None:
        server = TcpServer(core, host=args.host, port=args.tcp, log=_say)
        try:
            port = server.start()
        except OSError as exc:
            server.stop()
            raise UserError(f"cannot listen on {args.host}:{args.tcp}: {exc.strerror or exc}") from None
        where = f"socket://{args.host}:{port}"
    else:
        server = PtyServer(core, log=_say)
        where = server.start()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`&`)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if link is not None:
            _make_link(link, where)
        kind = "noise-free" if args.noise_free else "noisy"
        print(f"pgt sim: simulated ring, model {args.model}, seed {args.seed}, {kind}, settle {args.settle}, "
              f"max batch {core.max_batch}", flush=True)
        print(f"port: {where}", flush=True)
        if link is not None:
            print(f"link: {link} -> {where}", flush=True)
        print("serving until Ctrl-C", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("stopped (Ctrl-C)")
    finally:
        server.stop()
        if link is not None:
            _remove_link(link, where)
    return 0
