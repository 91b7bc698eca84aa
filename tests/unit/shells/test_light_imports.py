"""The light stages (deploy, gate, record_rejection, summarize) must not import the ML stack.

The KFP local runner starts every task as a fresh Python process, so whatever a stage's modules
import at their top is paid as start-up time on every run. Each case imports, in a fresh interpreter,
the project modules of the exact source KFP generates for that shell's task.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.shells.test_shell_imports import SHELLS, project_modules, task_source

ROOT = Path(__file__).resolve().parents[3]

# pandas is in the list too: none of these modules needs it at import time (the gate's shell reads
# its test split with pandas at run time, which is the work itself, not start-up).
HEAVY = ("xgboost", "sklearn", "skops", "shap", "matplotlib", "evidently", "pandas", "scipy")

LIGHT_SHELLS = ("deploy", "gate", "record_rejection", "summarize")


def heavy_modules_after(modules: tuple[str, ...]) -> list[str]:
    """Heavy top-level packages present in ``sys.modules`` after importing ``modules`` afresh."""
    code = "; ".join(f"import {m}" for m in modules) + (
        f"; import sys; print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


@pytest.mark.parametrize("stage", LIGHT_SHELLS)
def test_light_stage_imports_no_heavy_library(stage: str) -> None:
    modules = project_modules(task_source(SHELLS[stage]))  # exactly what its task imports
    assert modules
    assert heavy_modules_after(modules) == []


def test_the_check_sees_a_heavy_import() -> None:
    """Guard against a check that can never fail (e.g. a wrong module name in HEAVY)."""
    assert "pandas" in heavy_modules_after(("pandas",))
