"""The on-device file set: which source files go to the board, and where.

The board (and the MicroPython VM in the tests) sees the same import paths as the host: ``pgt/protocol/...``
and ``pgt/firmware/...`` under a minimal ``pgt/__init__.py``. ``pgt flash`` and the test VM both lay out
the files from here, so the two cannot disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BOARD_PACKAGE_INIT = '"""pgt on the board: protocol and firmware only."""\n'

ON_DEVICE_PACKAGES = ("protocol", "firmware")

ENTRY = "main.py"  # the board runs /main.py on boot: firmware/main.py, copied to the root
CONFIG = "board.json"  # the board config (pgt.firmware.board), at the root


def device_files() -> dict[str, Path]:
    """Map of path on the device (e.g. ``pgt/protocol/framing.py``) to the source file on this machine."""
    import pgt.firmware
    import pgt.protocol

    files: dict[str, Path] = {}
    for name, package in (("protocol", pgt.protocol), ("firmware", pgt.firmware)):
        root = Path(package.__file__).parent
        for src in sorted(root.glob("*.py")):
            files[f"pgt/{name}/{src.name}"] = src
    return files


def lay_out(dest: Path) -> list[Path]:
    """Write the on-device tree (``pgt/__init__.py`` and the package files) below ``dest``."""
    written = []
    init = dest / "pgt" / "__init__.py"
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(BOARD_PACKAGE_INIT)
    written.append(init)
    for rel, src in device_files().items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
        written.append(target)
    return written


def entry_file() -> Path:
    """The source of ``/main.py`` on the device."""
    import pgt.firmware

    return Path(pgt.firmware.__file__).parent / "main.py"


def lay_out_board(dest: Path, config: dict[str, object] | None = None) -> list[Path]:
    """The whole flashed tree below ``dest``: ``lay_out`` plus ``/main.py`` and, if given, ``/board.json``."""
    written = lay_out(dest)
    entry = dest / ENTRY
    entry.write_bytes(entry_file().read_bytes())
    written.append(entry)
    if config is not None:
        cfg = dest / CONFIG
        cfg.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        written.append(cfg)
    return written


_HASHES: dict[str, str] | None = None


def file_hashes() -> dict[str, str]:
    """On-device path -> sha256 hex of the protocol and firmware sources this install would flash (what a
    simulated board reports in ``hello``, as a flashed board reports its own)."""
    global _HASHES
    if _HASHES is None:
        import hashlib

        _HASHES = {rel: hashlib.sha256(src.read_bytes()).hexdigest() for rel, src in device_files().items()}
    return dict(_HASHES)


def package_json(root: Path | None = None) -> dict[str, Any]:
    """The ``package.json`` for ``mpremote mip install`` (the on-device file set, relative to the repo root).

    ``mpremote mip install --target / ./package.json`` (a checkout) or ``… github:OWNER/REPO`` installs
    ``/pgt/…`` and ``/main.py``; MicroPython imports ``pgt`` as a namespace package (no ``pgt/__init__.py``).
    Regenerate with ``python -c "import pgt.device_files as f; f.write_package_json()"`` after adding a file.
    """
    root = Path(__file__).resolve().parent.parent if root is None else root
    urls = [[rel, src.resolve().relative_to(root).as_posix()] for rel, src in device_files().items()]
    urls.append([ENTRY, entry_file().resolve().relative_to(root).as_posix()])
    from pgt import __version__
    return {"urls": urls, "version": __version__, "deps": []}


def write_package_json(root: Path | None = None) -> Path:
    """Write ``package.json`` at the repository root (``root``)."""
    root = Path(__file__).resolve().parent.parent if root is None else root
    path = root / "package.json"
    path.write_text(json.dumps(package_json(root), indent=1) + "\n")
    return path
