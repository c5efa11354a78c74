"""No import cycle in the installed packages, lazy imports included: the graph is read from the source (AST,
tests/support/import_graph.py), every package pyproject.toml installs, and the check is shown to catch a cycle
hidden in a function on a package built here."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "support"))
from import_graph import cycles, import_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def installed_packages() -> dict[str, Path]:
    """{package: directory} as pyproject.toml installs them (package-dir, else under the parent's directory)."""
    text = (ROOT / "pyproject.toml").read_text()  # (no tomllib on Python 3.10)
    dirs = dict(re.findall(r'"([\w.]+)"\s*=\s*"([\w/]+)"', re.search(r"^package-dir = (.*)$", text, re.M)[1]))
    packages = re.findall(r'"([\w.]+)"', re.search(r"^packages = (.*)$", text, re.M)[1])
    assert "pgt" in dirs and "pgt.sim" in packages
    out: dict[str, Path] = {}
    for package in sorted(packages, key=len):
        parent, _, last = package.rpartition(".")
        out[package] = ROOT / dirs[package] if package in dirs else out[parent] / last
    return out


def write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return {"pkg": root / "pkg", "pkg.sub": root / "pkg" / "sub"}


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    roots = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    from .sub.c import g\n    return g\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import x\n",
        "pkg/d.py": "import pkg.a\nfrom pkg import b\n",  # imports into the cycle, is not part of it
    })
    graph = import_graph(roots)
    assert graph["pkg.b"] == {"pkg.sub", "pkg.sub.c"} and graph["pkg.d"] == {"pkg.a", "pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (tmp_path / "pkg/sub/c.py").write_text("import json\n")  # the lazy import back into the cycle removed
    assert cycles(import_graph(roots)) == []


def test_a_package_init_that_imports_back_is_a_cycle(tmp_path: Path) -> None:
    roots = write(tmp_path, {"pkg/__init__.py": "from .sub import c\n", "pkg/sub/__init__.py": "",
                             "pkg/sub/c.py": "X = 1\n", "pkg/e.py": "import pkg\n"})
    assert cycles(import_graph(roots)) == []
    (tmp_path / "pkg/sub/c.py").write_text("def f():\n    import pkg.e\n")
    assert cycles(import_graph(roots)) == [["pkg", "pkg.e", "pkg.sub.c"]]  # pkg.sub.c -> pkg.e -> pkg


def test_the_installed_packages_have_no_import_cycle() -> None:
    graph = import_graph(installed_packages())
    assert {"pgt.sim.ring", "pgt.sim.device", "pgt.client", "pgt.firmware.core"} <= set(graph)
    assert cycles(graph) == []  # (the host's client -> link -> flash -> client is gone too)


def test_sim_imports_from_the_host_only_its_unit_scale() -> None:
    """sim/ stands on firmware/, protocol/ and one numpy-only host module (pgt.units); the host reaches sim."""
    graph = import_graph(installed_packages())
    def sim(m: str) -> bool:
        return m == "pgt.sim" or m.startswith("pgt.sim.")

    host = {m for m in graph if not sim(m) and not m.startswith(("pgt.firmware", "pgt.protocol"))} - {"pgt"}
    assert {(m, t) for m in graph if sim(m) for t in graph[m] & host} == {
        ("pgt.sim.adc", "pgt.units"), ("pgt.sim.boards", "pgt.units"), ("pgt.sim.hal", "pgt.units"),
        ("pgt.sim.reservoirs", "pgt.units"), ("pgt.sim.virtual_board", "pgt.units")}
    assert graph["pgt.units"] == set()
