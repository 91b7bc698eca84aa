"""The house stays readable: one-way imports between the subsystem packages, no import circle,
every package's purpose in one line, and the README's layout section naming every package.

Imports inside functions count: they are how the shells and the light modules defer heavy
libraries, and a circle through a lazy import is still a circle in the design.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("components", "pipelines")

# components' packages, lowest first; a package may import only packages of a lower rank (peers on
# the same rank never import each other); pipelines sits on top of everything.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("shared",),
    ("data",),
    ("model",),
    ("registry",),
    ("monitoring",),
    ("training", "batch", "serving"),
    ("deploy",),
    ("shells",),
)
RANK = {package: rank for rank, group in enumerate(LAYERS) for package in group}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for top in TOP for p in sorted((ROOT / top).rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (``from a import b`` means a.b
    when b is a module, and then not a itself: a package's own ``__init__`` is not a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= submodules
            if len(submodules) < len(node.names):  # a name defined in the module itself
                found.add(node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_of(module: str) -> str | None:
    """``components.<package>`` -> package; None for components' own top and for pipelines."""
    parts = module.split(".")
    return parts[1] if parts[0] == "components" and len(parts) > 1 else None


def layer_violations(graph: dict[str, set[str]]) -> Iterator[str]:
    for source, targets in graph.items():
        for target in targets:
            if source.startswith("components") and target.startswith("pipelines"):
                yield f"{source} imports {target} (components never import pipelines)"
            low, high = package_of(target), package_of(source)
            if low is None or high is None or low == high:
                continue
            if RANK[low] >= RANK[high]:
                yield f"{source} imports {target}: {high} may not import {low}"


def test_every_components_package_has_a_layer() -> None:
    packages = {p.parent.name for p in (ROOT / "components").glob("*/__init__.py")}
    assert packages == set(RANK)


def test_imports_go_one_way() -> None:
    assert sorted(layer_violations(import_graph())) == []


def test_no_import_circle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_checks_can_fail() -> None:
    """Guard: a made-up circle and a made-up upward import are reported."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    upward = {"components.model.bundle": {"components.registry.local"}}
    assert list(layer_violations(upward)) == [
        "components.model.bundle imports components.registry.local: model may not import registry"
    ]
    peers = {"components.serving.app": {"components.batch.scoring"}}
    assert len(list(layer_violations(peers))) == 1


@pytest.mark.parametrize(
    "init", sorted(p.relative_to(ROOT).as_posix() for top in TOP for p in (ROOT / top).rglob("__init__.py"))
)
def test_every_package_states_its_purpose_in_one_line(init: str) -> None:
    tree = ast.parse((ROOT / init).read_text())
    docstring = ast.get_docstring(tree)
    assert docstring and "\n" not in docstring.strip(), f"{init}: a one-line docstring"
    if init.startswith("components/"):  # a task imports these packages: nothing but the docstring
        assert len(tree.body) == 1, f"{init}: only the docstring (tasks import this package)"


def test_the_readme_layout_names_every_package() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = re.search(r"^## Layout\n(.*?)^## ", readme, re.S | re.M)
    assert layout, "README.md has a '## Layout' section"
    packages = sorted(
        p.parent.relative_to(ROOT).as_posix() for top in TOP for p in (ROOT / top).rglob("__init__.py")
    )
    missing = [p for p in packages if f"{p.rsplit('/', 1)[-1]}/" not in layout.group(1)]
    assert missing == []
