from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_packaging_needs_no_scikit_learn_and_keeps_one_version() -> None:
    from pathlib import Path

    import tomllib

    from pgt.tasks import digits

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    deps = " ".join(project["project"]["dependencies"]).lower()
    assert "scikit-learn" not in deps and "scipy" not in deps
    assert "version" in project["project"]["dynamic"]  # the version lives in pgt.__version__ only
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pgt.__version__"}
    for package, patterns in project["tool"]["setuptools"]["package-data"].items():
        folder = root / project["tool"]["setuptools"]["package-dir"][package]
        assert all(list(folder.glob(p)) for p in patterns), (package, patterns)  # every entry matches a file
    x, y = digits()
    assert x.shape == (1797, 64) and sorted(set(y.tolist())) == list(range(10)) and 0 <= x.min() <= x.max() <= 1


def test_plotting_never_touches_pyplot_or_the_backend(tmp_path: object) -> None:
    """A notebook user's matplotlib backend stays as it was: pgt draws through the Figure API only."""
    code = (
        "import sys, matplotlib\n"
        "def refuse(*a, **k): raise AssertionError('matplotlib.use called')\n"
        "matplotlib.use = refuse\n"
        "import pgt.plots, pgt.sim.characterize, pgt.commands.probe, pgt.sweeps\n"
        f"pgt.plots.accuracy_vs_queries({{'x': [{{'queries': 10, 'val_acc': 0.5, 'test_acc': None}}]}}, "
        f"{str(tmp_path)!r} + '/a.png')\n"
        "import numpy as np, pathlib\n"
        "d = np.tile(np.linspace(0, 1, 5)[:, None], (2, 2)); c = np.repeat([0, 1], 5); v = np.ones((10, 3))\n"
        f"pgt.commands.probe.plot(pathlib.Path({str(tmp_path)!r}), d, c, v, 'probe')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("argv, says", [
    (["--seed", "-1"], "--seed must be"),
    (["--steps", "-1"], "--steps must be"),
    (["--out", "/proc/nope"], "--out /proc/nope: cannot write there"),
    (["--device", "/nonexistent-port"], "no such port"),
    (["--device", "sim://?bogus=1"], "unknown simulator option"),
    (["--estimators", "foo"], "--estimators takes"),
])
def test_demo_refuses_bad_input_before_any_device(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pgt.commands import demo

    def no_device(*_a: object, **_k: object) -> None:
        raise AssertionError("a device was opened")

    monkeypatch.setattr(demo, "make_device", no_device)
    monkeypatch.setattr(demo, "reference_device", no_device)
    out = argv if "--out" in argv else [*argv, "--out", str(tmp_path)]
    assert main(["demo", "--quiet", *out]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "Traceback" not in err[0]
