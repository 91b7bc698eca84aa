"""The import graph of ``pipelines/`` (every import, those inside functions included) has no cycle,
and the CLI is a leaf: nothing outside ``pipelines.cli`` imports it."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = "pipelines"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, module: str, is_package: bool, modules: Set[str]) -> set[str]:
    """The modules of ``modules`` that an ``import`` anywhere in the tree (functions included) loads:
    ``from pkg import sub`` loads the submodule ``pkg.sub``, ``from pkg.mod import name`` ``pkg.mod``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
                found.update(next(([p] for p in prefixes if p in modules), []))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, node.module] if node.module else parent)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    paths = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = imports_of(tree, module, path.name == "__init__.py", set(paths))
    return graph


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, None),  # a diamond is no cycle
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
        ({"x": set(), "a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_the_cycle_finder_finds_cycles_and_only_cycles(
    graph: dict[str, set[str]], cycle: list[str] | None
) -> None:
    assert find_cycle(graph) == cycle


def test_the_graph_sees_imports_inside_functions_and_of_submodules(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.one import f\n")
    (package / "sub" / "one.py").write_text("def f():\n    from pkg import two\n    return two\n")
    (package / "two.py").write_text("from pkg.sub import one\nfrom . import three\n")
    (package / "three.py").write_text("import pkg.sub.one\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": set(),
        "pkg.sub": {"pkg.sub.one"},
        "pkg.sub.one": {"pkg.two"},
        "pkg.two": {"pkg.sub.one", "pkg.three"},
        "pkg.three": {"pkg.sub.one"},
    }
    assert find_cycle(graph) == ["pkg.sub.one", "pkg.two", "pkg.sub.one"]


def test_pipelines_modules_import_each_other_without_a_cycle() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert {"pipelines.cli.run", "pipelines.cli.serve", "pipelines.cli.submit"} <= graph["pipelines.cli.main"]
    assert "pipelines.runs" in graph["pipelines.bench.pipeline"]  # an import inside a function
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_only_the_cli_imports_the_cli_and_its_commands_share_only_common() -> None:
    graph = import_graph(ROOT, PACKAGE)
    cli_imports = {m: {t for t in ts if t.startswith("pipelines.cli")} for m, ts in graph.items()}
    assert {m: ts for m, ts in cli_imports.items() if ts and not m.startswith("pipelines.cli")} == {}
    wiring = {"pipelines.cli", "pipelines.cli.__main__", "pipelines.cli.main"}
    commands = {m: ts for m, ts in cli_imports.items() if m.startswith("pipelines.cli.") and m not in wiring}
    assert {m: ts for m, ts in commands.items() if ts - {"pipelines.cli.common"}} == {}
