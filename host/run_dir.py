"""Run directories: the ``--out`` parent checked before anything runs, a new directory per run created
atomically (two runs started in the same second never share one), and the files a run directory starts with."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write
from .errors import UserError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
MAX_TRIES = 1000


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_out(out: str | Path, flag: str = "--out") -> Path:
    """``out`` as a directory that exists and takes new files (created if missing); UserError otherwise. Proven
    by writing a temporary file there, so a read-only or pseudo file system is said before any device work."""
    if str(out) == "":
        raise UserError(f"{flag} needs a directory, got ''")
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {str(out)[:200]}: cannot write there ({_reason(exc)})") from None
    return path


def new_run_dir(parent: Path, stem: str) -> Path:
    """A directory ``parent/stem-<date>-<time>`` (``.2``, ``.3``, ... if taken) made with an exclusive mkdir:
    whichever process makes it owns it."""
    return unique_dir(parent, f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}", "run directory")


def unique_dir(parent: Path, base: str, what: str) -> Path:
    """A new directory ``parent/base`` (``base.2``, ``base.3``, ... if taken), made with an exclusive mkdir (and
    ``parent`` with it): two processes never get the same one. ``what`` names it in errors."""
    for i in range(1, MAX_TRIES + 1):
        path = parent / (base if i == 1 else f"{base}.{i}")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"cannot create the {what} {path} ({_reason(exc)})") from None
    raise UserError(f"{MAX_TRIES} {what}s named {base} already exist in {parent}")


def start(run_dir: Path, config_doc: dict[str, Any]) -> None:
    """Write a run's ``config.json`` and an empty ``metrics.jsonl`` into ``run_dir`` (made if missing)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config_doc)
        atomic_write(run_dir / METRICS, b"")
    except OSError as exc:
        raise UserError(f"cannot write the run directory {run_dir} ({_reason(exc)})") from None


def write_config(run_dir: Path, config_doc: dict[str, Any]) -> None:
    atomic_write(run_dir / CONFIG, (json.dumps(config_doc, indent=2, default=str) + "\n").encode())
