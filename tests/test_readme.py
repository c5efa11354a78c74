"""Checks derived from README.md alone: its commands, device URLs, Python API snippet and quick-start targets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pgt.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    """The README text under ``## title`` up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _commands() -> dict[str, Any]:
    parser = build_parser()
    return dict(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


TABLE_COMMANDS = re.findall(r"^\| `pgt (\w+)", _section("Commands"), re.M)


def test_the_command_table_is_read() -> None:
    assert len(TABLE_COMMANDS) >= 7 and "train" in TABLE_COMMANDS  # the regex found the table


@pytest.mark.parametrize("name", TABLE_COMMANDS)
def test_every_listed_command_exists_and_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert name in _commands()
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0 and f"usage: pgt {name}" in capsys.readouterr().out


def test_every_pgt_command_the_readme_runs_exists() -> None:
    """Every `pgt NAME` in a shell block of the README (quick start, real ring, sweeps) is a command."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    used = {m for block in blocks for m in re.findall(r"^pgt (\w+)", block, re.M)}
    assert used and used <= set(_commands())


def test_every_flag_in_the_command_table_is_accepted() -> None:
    """Each ``--flag`` the table names for a command is one of that command's options."""
    for row in re.findall(r"^\| `pgt (\w+)[^|]*\| (.*) \|$", _section("Commands"), re.M):
        name, text = row
        options = {opt for action in _commands()[name]._actions for opt in action.option_strings}
        named = set(re.findall(r"(--[a-z][a-z-]*)", text))
        assert named <= options, (name, named - options)


def _url_forms() -> list[str]:
    """The device URLs the README documents: the quoted forms after "A device URL is"."""
    match = re.search(r"A device URL is (.*?)\n\n", README, re.S)
    assert match
    return re.findall(r"`([^`]+)`", match.group(1))


def test_documented_device_urls_reach_the_device_they_name(capsys: pytest.CaptureFixture[str]) -> None:
    """Every URL form the README names, given to ``pgt info``: a ``sim://`` URL opens the simulated board in
    process, ``socket://`` (the template filled with a served board's port) and a pty path reach a board over
    bytes, and a port path or name that does not exist here is looked up as a serial port (not refused as a URL)."""
    from pgt.link import sim_options
    from pgt.sim.device import make_core
    from pgt.sim.serve import PtyServer, TcpServer

    forms = _url_forms()
    sims = [u for u in forms if u.startswith("sim:")]
    sockets = [u for u in forms if u.startswith("socket://")]
    ports = [u for u in forms if u not in sims and u not in sockets]
    assert sims and sockets and "/dev/ttyACM0" in ports and "COM5" in ports
    for url in sims:
        assert main(["info", url]) == 0
        assert re.search(r"^board +sim-", capsys.readouterr().out, re.M)
    with TcpServer(make_core(seed=0)) as tcp, PtyServer(make_core(seed=0)) as pty:
        port, path = tcp.start(), pty.start()
        for url in [u.replace("host:port", f"127.0.0.1:{port}") for u in sockets] + [path]:
            assert main(["info", url]) == 0, url
            assert re.search(r"^board +sim-", capsys.readouterr().out, re.M)
    for url in (u for u in ports if not Path(u).exists()):  # (a board plugged in here would answer)
        assert main(["info", url]) == 1
        assert capsys.readouterr().err.strip().startswith(f"pgt info: error: no such port: {url} (")
    for url in sims:
        options = sim_options(url)
        named = re.findall(r"[?&]([a-z_]+)=", url)
        assert named and len(options) >= len(named)  # every option the README names is known (else UserError)
    sim_options("sim://")  # the default device the command table names


def test_the_python_api_snippet_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    snippet = re.search(r"```python\n(.*?)```", _section("Python API"), re.S)
    assert snippet
    code = snippet.group(1)
    # Patched so it runs here, fast: the real port becomes the in-process simulator (no hardware in tests), and
    # every step count becomes 2. Nothing else in the snippet is changed.
    code, ports = re.subn(r'"/dev/ttyACM0"', '"sim://"', code)
    code, steps = re.subn(r"steps=\d+", "steps=2", code)
    assert ports == 1 and steps == 3
    monkeypatch.chdir(tmp_path)  # runs write their directories under the working directory
    printed: list[tuple[Any, ...]] = []
    exec(compile(code, "README.md (Python API)", "exec"), {"print": lambda *a: printed.append(a)})
    (acc, queries, device_s), = printed
    assert 0.0 <= acc <= 1.0 and queries > 0 and device_s > 0


def test_the_quick_start_commands_are_makefile_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*):", makefile, re.M))
    used = set(re.findall(r"^make (\w+)", _section("Quick start"), re.M))
    used |= set(re.findall(r"`make (\w+)`", README))  # e.g. `make bench` in "Benchmarks"
    assert {"demo", "test"} <= used and used <= targets, used - targets


def _data_files(tmp: Path) -> None:
    """The files the README's "Your own data" commands name, small."""
    import gzip
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    with open(tmp / "mydata.csv", "w") as f:
        f.write("a,b,c,target\n" + "".join(f"{a},{b},{c},{a * b + c}\n" for a, b, c in x))
    np.savez(tmp / "blobs.npz", x=x, y=(x[:, 0] > 0).astype(int))
    images = rng.integers(0, 256, size=(50, 4, 4))
    for name, a in (("train-images-idx3-ubyte.gz", images),
                    ("train-labels-idx1-ubyte.gz", (images.mean(axis=(1, 2)) > 127).astype(np.uint8))):
        raw = bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(np.uint8).tobytes()
        (tmp / name).write_bytes(gzip.compress(raw))


def test_the_own_data_and_trained_model_sections_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Every `pgt` line of "Your own data" then "Using a trained model", as written (step counts made small,
    run-directory globs expanded as a shell would), and the Python snippet of the latter."""
    import glob
    import shlex

    monkeypatch.chdir(tmp_path)
    _data_files(tmp_path)
    lines = [line.split("  #")[0].strip() for title in ("Your own data", "Using a trained model")
             for block in re.findall(r"```sh\n(.*?)```", _section(title), re.S) for line in block.splitlines()]
    assert len(lines) == 7
    for line in lines:
        argv = [a for word in shlex.split(re.sub(r"--steps \d+", "--steps 4 --eval-every 2", line))[1:]
                for a in (sorted(glob.glob(word)) or [word])]
        assert main(argv) == 0, line
    out = capsys.readouterr()
    assert (tmp_path / "preds.csv").read_text().startswith("index,prediction,label")
    assert "NMSE" in out.out and "accuracy" in out.err
    snippet = re.search(r"```python\n(.*?)```", _section("Using a trained model"), re.S)
    assert snippet
    code, n = re.subn(r'"runs/mydata-[^"]+"', repr(glob.glob("runs/mydata-*")[0]), snippet.group(1))
    code, ports = re.subn(r'"/dev/ttyACM0"', '"sim://"', code)
    assert n == ports == 1
    import numpy as np

    from pgt.device import open_device

    scope = {"pgt": __import__("pgt"), "open_device": open_device, "x_new": np.zeros((5, 3)), "print": lambda *a: None}
    exec(compile(code, "README.md (Using a trained model)", "exec"), scope)
    assert scope["y"].shape == (5,) and (tmp_path / "exported" / "model.json").exists()
