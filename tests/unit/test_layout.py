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

from tests.import_graph import find_cycle, import_graph

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
    ("training", "batch", "serving", "tracking"),
    ("deploy",),
    ("shells",),
)
RANK = {package: rank for rank, group in enumerate(LAYERS) for package in group}


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
    assert sorted(layer_violations(import_graph(ROOT, *TOP))) == []


def test_no_import_circle() -> None:
    assert find_cycle(import_graph(ROOT, *TOP)) is None


def test_the_layer_check_can_fail() -> None:
    """Guard: a made-up upward import and a peer import are reported (the cycle finder has its
    own tests in tests/unit/pipelines/test_import_graph.py)."""
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


def layout_entries(layout: str) -> dict[str, str]:
    """``components/`` package -> its text in the README's layout block (its line and continuations)."""
    entries: dict[str, str] = {}
    current = None
    for line in layout.splitlines():
        match = re.match(r"^  (\w+)/\s", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith(" " * 16):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def test_the_readme_layout_names_every_module_of_every_components_package() -> None:
    layout = re.search(r"^## Layout\n(.*?)^## ", (ROOT / "README.md").read_text(), re.S | re.M)
    assert layout
    entries = layout_entries(layout.group(1))
    assert set(entries) == set(RANK)
    unnamed = [
        f"{path.parent.name}/{path.stem}"
        for path in sorted((ROOT / "components").glob("*/*.py"))
        if path.stem != "__init__" and not re.search(rf"\b{path.stem}\b", entries[path.parent.name])
    ]
    assert unnamed == []
