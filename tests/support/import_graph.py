"""The import graph of packages, read from their source (AST): every ``import`` anywhere in a module counts,
at module level, inside functions and under ``if TYPE_CHECKING``, so a cycle hidden by a lazy import is found.
An import of ``a.b.c`` also imports the packages ``a`` and ``a.b`` (their ``__init__``), as Python does; a
module's own packages are loaded before it, so only an import that names one of them is an edge to it."""

from __future__ import annotations

import ast
from pathlib import Path


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Module name -> source file, for packages given as {dotted package name: its directory}. A package's
    subdirectories that are packages of their own must be listed as roots too (pyproject's package-dir)."""
    out: dict[str, Path] = {}
    for package, directory in roots.items():
        for path in sorted(Path(directory).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules an import statement loads: each module it names, and the packages on the way to it, except
    the importing module's own packages (loaded before it: an implied edge to them is no cycle)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out |= ({".".join(parts[:i]) for i in range(1, len(parts))} - own) | {name}
    return (out & known) - {module}


def import_graph(roots: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``roots`` it imports (anywhere in its source)."""
    files = modules(roots)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= _targets(node, module, path.stem == "__init__", known)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected component of more than one module, sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)
