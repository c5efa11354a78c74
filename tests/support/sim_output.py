"""Reading what `pgt sim` prints as it starts (docs: a description line, 'port: PATH', 'serving until Ctrl-C')."""

from __future__ import annotations

from collections.abc import Iterable


def served_port(lines: Iterable[str]) -> str:
    """The port from ``pgt sim``'s start-up lines, read up to 'serving until Ctrl-C' ('' if none was said)."""
    port = ""
    for line in lines:
        if line.startswith("port: "):
            port = line[len("port: "):].strip()
        if line.startswith("serving until Ctrl-C"):
            break
    return port
