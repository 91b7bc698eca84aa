"""Every import a KFP task runs resolves: a moved module fails here in seconds, not in a pipeline run.

KFP ships each shell's source alone into its task, with the imports it adds itself (kfp, and the
module of every custom artifact type in the signature); the shell's own imports are inside its
body. Those lines only run inside a task, so this test takes the exact source KFP generates for
every shell of both pipelines and imports every name in it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from typing import Any

import pytest
from kfp import dsl

from components.shells import prediction, training

SHELLS = {shell.__name__: shell for shell in (*training.SHELLS, *prediction.SHELLS)}


def task_source(shell: Any) -> str:
    """The Python program KFP runs in the shell's task (the last item of its container command)."""
    component = dsl.component(shell, base_image="unused", install_kfp_package=False)
    return component.component_spec.implementation.container.command[-1]


def imported_names(source: str) -> list[tuple[str, str | None]]:
    """(module, name) for every ``from module import name``; (module, None) for ``import module``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


def project_modules(source: str) -> tuple[str, ...]:
    """The project's modules a task imports, in order, without repeats."""
    modules = [module for module, _ in imported_names(source) if module.split(".")[0] == "components"]
    return tuple(dict.fromkeys(modules))


def test_both_pipelines_have_shells() -> None:
    assert {"ingest", "tune", "package", "gate", "deploy", "summarize"} <= set(SHELLS)
    assert {"score_batch", "check_drift", "plan_retraining", "summarize_prediction"} <= set(SHELLS)


def missing_imports(source: str) -> list[str]:
    """The import statements of ``source`` that would fail, as text."""
    missing = []
    for module, attribute in imported_names(source):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            missing.append(f"import {module}")
            continue
        if attribute in (None, "*") or hasattr(imported, attribute):
            continue
        is_package = hasattr(imported, "__path__")
        if not is_package or importlib.util.find_spec(f"{module}.{attribute}") is None:
            missing.append(f"from {module} import {attribute}")
    return missing


@pytest.mark.parametrize("name", sorted(SHELLS))
def test_every_name_a_task_imports_exists(name: str) -> None:
    source = task_source(SHELLS[name])
    assert project_modules(source), f"{name}: no project import found in its task source"
    assert missing_imports(source) == []


def test_a_moved_module_or_name_is_caught() -> None:
    """Guard: body imports are seen, and both kinds of failure are reported."""
    source = (
        "def shell():\n"
        "    from components.model.bundle import load_bundle, no_such_function\n"
        "    from components.bundle import load_bundle\n"
    )
    assert missing_imports(source) == [
        "from components.model.bundle import no_such_function",
        "import components.bundle",
    ]
