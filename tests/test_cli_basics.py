from __future__ import annotations

import subprocess
import sys

import pytest

from pgt import __version__
from pgt.cli import build_parser, main


def test_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "pgt.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"pgt {__version__}"
    out = subprocess.run([sys.executable, "-m", "pgt.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: pgt" in out.stdout


def test_every_command_has_help() -> None:
    parser = build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]  # type: ignore[union-attr]
    assert names, "no subcommands discovered"
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0


def test_unknown_command_is_a_one_line_error() -> None:
    out = subprocess.run([sys.executable, "-m", "pgt.cli", "warp"], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr and "invalid choice" in out.stderr


def test_no_command_prints_help() -> None:
    assert main([]) == 2
