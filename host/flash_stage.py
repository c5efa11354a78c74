"""The safe flash: copy into a staging folder, verify the file hashes there, switch trees by renames.

Pure: this module builds the mpremote commands and the scripts the board runs; ``pgt.flash`` runs them. On the
board (paths relative to its root, where MicroPython starts):

- ``pgt/`` is the live firmware tree, ``main.py`` the bootstrap (``firmware/main.py``) that runs it, and
  ``board.json`` its config;
- ``pgt_stage/`` receives the new ``pgt/``, ``main.py`` and ``board.json`` (:func:`prep_script` empties it first);
- ``pgt_prev/`` keeps the previous tree and its ``board.json``; the bootstrap runs it when ``pgt/`` is missing
  or does not import.

:func:`switch_script` hashes every staged file on the board and switches only if all match; its renames come
in an order that leaves a bootable board after every single one of them (``SWITCH_STEPS``), so a flash cut
short at any point (cable pulled, host killed, power lost) boots the old firmware or the new one. Renames are
atomic on littlefs; on FAT, MicroPython replaces an existing target by unlinking it first (a window of one
directory update).
"""

from __future__ import annotations

import json
from pathlib import Path

from pgt.errors import DeviceError

STAGE = "pgt_stage"
PREV = "pgt_prev"
MARK = "pgt-stage:"

SWITCH_STEPS = (
    "verify: every staged file's sha256 matches, or stop here (nothing switched)",
    "if /pgt exists: remove the older /pgt_prev, keep a copy of /board.json in /pgt_prev",
    "rename pgt_stage/main.py -> main.py (the bootstrap runs /pgt, else /pgt_prev)",
    "rename pgt -> pgt_prev/pgt (the board now boots the previous tree with its own config)",
    "rename pgt_stage/board.json -> board.json",
    "rename pgt_stage/pgt -> pgt (the board now boots the new tree)",
    "remove pgt_stage",
)

_HELPERS = '''import os, hashlib, binascii
def ex(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
def rm(p):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return
    if mode & 0x4000:
        for n in os.listdir(p):
            rm(p + "/" + n)
        os.rmdir(p)
    else:
        os.remove(p)
def sha(p):
    h = hashlib.sha256()
    f = open(p, "rb")
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(memoryview(b)[0:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def copy(a, b):
    f = open(a, "rb")
    d = f.read()
    f.close()
    f = open(b, "wb")
    f.write(d)
    f.close()
'''


def prep_script() -> str:
    """Board script: remove what an earlier, interrupted flash left in the staging folder."""
    return _HELPERS + f"rm({STAGE!r})\n"


def switch_script(expected: dict[str, str]) -> str:
    """Board script: verify the staged files against ``expected`` (on-device path -> sha256 hex), then switch
    (``SWITCH_STEPS``). Prints one line: ``pgt-stage: switched`` or ``pgt-stage: differs PATH ...``."""
    return _HELPERS + f"""E = {json.dumps(expected, sort_keys=True)}
S = {STAGE!r}
P = {PREV!r}
bad = [r for r in sorted(E) if not ex(S + "/" + r) or sha(S + "/" + r) != E[r]]
if bad:
    print({MARK!r}, "differs", " ".join(bad))
else:
    live = ex("pgt")
    if live:
        rm(P)
        os.mkdir(P)
        if ex("board.json"):
            copy("board.json", P + "/board.json")
    os.rename(S + "/main.py", "main.py")
    if live:
        os.rename("pgt", P + "/pgt")
    if ex(S + "/board.json"):
        os.rename(S + "/board.json", "board.json")
    os.rename(S + "/pgt", "pgt")
    rm(S)
    print({MARK!r}, "switched")
"""


def commands(base: list[str], local_stage: Path, expected: dict[str, str]) -> list[list[str]]:
    """The two mpremote invocations (``base`` is ``mpremote connect PORT resume``): empty the board's staging
    folder and copy ``local_stage/pgt_stage`` into it; then verify and switch."""
    return [
        base + ["exec", prep_script(), "+", "fs", "cp", "-r", "-f", str(local_stage / STAGE), ":"],
        base + ["exec", switch_script(expected)],
    ]


def check_switched(output: str, port: str) -> None:
    """DeviceError unless the switch script's output says it switched."""
    for line in output.splitlines():
        if line.startswith(MARK):
            words = line.split()
            if words[1:2] == ["switched"]:
                return
            raise DeviceError(f"{port}: the staged files differ from what was copied ({', '.join(words[2:7])}): "
                              "nothing was switched, the board keeps its firmware; flash again")
    raise DeviceError(f"{port}: the board did not confirm the switch (heard {output.strip()[-120:]!r}); "
                      "flash again")


def running_tree(files: dict[str, str]) -> str:
    """Which tree a hello's file hashes come from: ``"pgt"`` (the live one) or ``"pgt_prev"`` (the fallback)."""
    return PREV if any(rel.startswith(PREV + "/") for rel in files) else "pgt"


def describe(cmd: list[str]) -> str:
    """A command for ``--dry-run``: a board script shown by its first line and length."""
    import shlex

    shown = [f"<board script: {arg.count(chr(10))} lines>" if "\n" in arg else arg for arg in cmd]
    return shlex.join(shown)
