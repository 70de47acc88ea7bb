"""The layering holds: no import cycle between edgekd's modules, none between its packages.

Imports are read from the source with ``ast`` (those inside functions included, since a lazy import
is still a dependency). ``from package import submodule`` counts as importing the submodule.
Each top-level module (``edgekd/bundle.py``) is a package of its own for the package graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = {}
    for path in (root / "edgekd").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # edgekd.train.run → edgekd.train; edgekd.bundle → edgekd.bundle


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        for dst in targets:
            if package_of(src) != package_of(dst) and src != "edgekd" and dst != "edgekd":
                out[package_of(src)].add(package_of(dst))
    return dict(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
    return found


def test_the_graph_sees_lazy_imports() -> None:
    graph = module_graph()
    assert "edgekd.formats" in graph["edgekd.runtimes.base"]  # imported inside open_runner
    assert "edgekd.benchmark.pi" in graph["edgekd.benchmark.targets"]  # from edgekd.benchmark import pi, in a method


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_no_cycle_between_packages() -> None:
    # edgekd/__init__.py only maps public names to modules (loaded on first use): left out
    assert cycles(package_graph(module_graph())) == []


def test_runtimes_do_not_know_the_concrete_runners() -> None:
    """runtimes/base.py opens a file through the formats registry, never by importing a runner."""
    assert not {m for m in module_graph()["edgekd.runtimes.base"] if m.endswith("_runner")}
