"""The champion lookup: a missing model or champion is a clear error, a version can be pinned."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.batch.champion import load_champion
from components.registry.local import LocalRegistry
from components.shared.errors import RegistryError
from tests.unit.batch.conftest import MODEL, BuiltRegistry


def test_no_champion_and_no_model_are_clear_errors(reg: BuiltRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"has no model 'marketing-propensity'.*propensity run"):
        load_champion(str(tmp_path / "empty-registry"), MODEL)
    registry = LocalRegistry(tmp_path / "no-champion")
    registry.register(MODEL, Path(reg.root).parent / "bundle")
    with pytest.raises(RegistryError, match="has no champion"):
        load_champion(str(tmp_path / "no-champion"), MODEL)
    assert load_champion(str(tmp_path / "no-champion"), MODEL, "v0001").version == "v0001"
