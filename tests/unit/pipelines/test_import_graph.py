"""The import graph of ``pipelines/`` (every import, those inside functions included) has no cycle,
and the CLI is a leaf: nothing outside ``pipelines.cli`` imports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import find_cycle, import_graph

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = "pipelines"


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
