"""``pgt sim``: a simulated board (the firmware's Core over the ring model) on a pty or TCP, until Ctrl-C.

The simulated device mirrors a board (the firmware's board config): the default rp2 board (2 drives, 3
taps) unless ``--board esp32|wide``, ``--config board.json`` or ``--channels K M`` say otherwise.
Also ``pgt sim --characterize OUT_DIR`` (plots and a summary of the ring model) and ``pgt sim --board`` with
no board type (the virtual MicroPython board, which runs the real firmware in a MicroPython VM).
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
VIRTUAL = "virtual"
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
                   help="largest frame payload the device accepts and sends (default 131072; a run holds up to "
                        "4096 vectors)")
    p.add_argument("--characterize", metavar="OUT_DIR", default=None,
                   help="instead of serving: write plots and a summary of the ring model to OUT_DIR")
    p.add_argument("--board", nargs="?", const=VIRTUAL, default=None, metavar="TYPE",
                   help="the board the simulated device mirrors: rp2 (default: 2 drives, 3 taps), esp32 (2, 2) or wide "
                        "(16 drives, 32 taps); --board alone runs the virtual MicroPython board instead (the "
                        "real firmware in a MicroPython VM)")
    p.add_argument("--fs", metavar="DIR", default=None,
                   help="with --board: keep the virtual board's filesystem in DIR (created if missing; kept across "
                        "restarts, as a board's flash is)")
    p.add_argument("--uid", metavar="HEX", default=None,
                   help="with --board: the board's machine.unique_id(), 16 hex digits (default: fixed by --fs, "
                        "else random)")
    p.add_argument("--config", metavar="BOARD_JSON", default=None,
                   help="a board.json (the file `pgt flash --config` sends) over the board's defaults")
    p.add_argument("--channels", nargs=2, type=int, metavar=("K", "M"), default=None,
                   help="for experiments: K drive channels and M taps instead of the board's")


def _say(msg: str) -> None:
    print(f"pgt sim: {msg}", file=sys.stderr, flush=True)


def _characterize(args: argparse.Namespace) -> int:
    from pgt.errors import UserError

    ch = importlib.import_module("pgt.sim.characterize")

    out = Path(args.characterize)
    try:
        figures = ch.characterize(out, seed=args.seed, level=args.model, cfg=_board_config(args))
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
    from pgt.errors import UserError

    virtual_board = importlib.import_module("pgt.sim.virtual_board")

    uid = None
    if args.uid is not None:
        try:
            uid = bytes.fromhex(args.uid)
        except ValueError:
            uid = b""
        if len(uid) != 8:
            raise UserError(f"--uid {args.uid}: need 16 hex digits (8 bytes), e.g. e66038b7136e2a2f")
    fs = Path(args.fs) if args.fs is not None else None
    if fs is not None:
        if fs.exists() and not fs.is_dir():
            raise UserError(f"--fs {fs}: not a directory (the board's filesystem is a directory)")
        try:
            fs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--fs {fs}: {exc.strerror or exc}") from None
    where = f"filesystem {fs}" if fs is not None else "a temporary filesystem"

    def announce(port: str) -> None:  # the same lines as the simulated board's
        print(f"pgt sim: virtual MicroPython board (rp2, or as its /board.json says), ring model {args.model}, "
              f"seed {args.seed}, {where}", flush=True)
        print(f"port: {port}", flush=True)
        print("serving until Ctrl-C", flush=True)

    try:
        virtual_board.serve(seed=args.seed, level=args.model, announce=announce, fs=fs, uid=uid)
    except virtual_board.FsInUse:
        raise UserError(f"--fs {fs}: another virtual board is running on this filesystem (one board per "
                        "filesystem): stop it, or give another --fs") from None
    except KeyboardInterrupt:
        _say("stopped (Ctrl-C)")
    return 0


def _board_config(args: argparse.Namespace) -> dict[str, Any]:
    """The board config the options describe; UserError with the reason if it cannot be."""
    from pgt.board_config import read_config
    from pgt.errors import UserError
    from pgt.sim.boards import board_config

    if args.config is not None and not isinstance(args.config, dict):  # read once, checked like `pgt flash`'s
        args.config = read_config(Path(args.config))
    try:
        return board_config(args.board, tuple(args.channels) if args.channels else None, args.config)
    except ValueError as exc:
        raise UserError(str(exc)) from None


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
    virtual = args.board == VIRTUAL
    if args.characterize is not None and (serving_opts or virtual):
        raise UserError("--characterize does not serve: drop --tcp, --link and --board")
    if virtual and serving_opts:
        raise UserError("--board picks its own port: drop --tcp and --link")
    if virtual and (args.config is not None or args.channels is not None):
        raise UserError("the virtual board reads its board.json from its filesystem: flash it with "
                        "`pgt flash PORT --config FILE`; drop --config and --channels")
    if not virtual and (args.fs is not None or args.uid is not None):
        raise UserError("--fs and --uid are for the virtual board: add --board")
    if args.tcp is not None and args.link is not None:
        raise UserError("--link names a pty: it does not go with --tcp")
    if args.tcp is not None and not 0 <= args.tcp <= 65535:
        raise UserError(f"--tcp {args.tcp}: a port is 0..65535")
    if args.seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {args.seed}")
    if args.characterize is not None:
        return _characterize(args)
    if virtual:
        return _board(args)
    cfg = _board_config(args)

    from pgt.device_files import file_hashes
    from pgt.sim.device import make_core
    from pgt.sim.serve import PtyServer, TcpServer

    try:
        core = make_core(seed=args.seed, level=args.model, noise_free=args.noise_free, settle=args.settle,
                         max_frame=args.max_frame, board=args.board, config=args.config,
                         channels=tuple(args.channels) if args.channels else None, files=file_hashes())
    except ValueError as exc:
        raise UserError(str(exc).replace("max_frame", "--max-frame")) from None
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
        print(f"pgt sim: simulated {cfg['name']} board, {core.k} drives, {core.m} taps, ring model "
              f"{args.model}, seed {args.seed}, {kind}, settle {args.settle}, max batch {core.max_batch}",
              flush=True)
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
