"""Saved bundles keep loading after code moves: a format-1 registry (checked in) still verifies,
loads and predicts the same; a bundle written now names only types that exist."""

from __future__ import annotations

import importlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.model import bundle as B
from components.model import bundle_format as F
from components.model.features import FeatureTransformer, load_transformer
from components.registry.uri import open_registry, version_dir
from components.shared.errors import BundleError
from tests.unit.model.test_bundle import make_bundle

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FORMAT1_REGISTRY = FIXTURES / "registry-format1"
FORMAT1_EXPECTED = FIXTURES / "registry-format1-expected.json"
MODEL_NAME = "marketing-propensity"


@pytest.fixture()
def format1_registry(tmp_path: Path) -> Path:
    """A writable copy: the registry takes a lock file next to its versions."""
    return Path(shutil.copytree(FORMAT1_REGISTRY, tmp_path / "registry"))


def skops_type_paths(path: Path) -> set[str]:
    """``module.Class`` of every object node in a skops file's schema."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    with zipfile.ZipFile(path) as archive:
        walk(json.loads(archive.read(F.SKOPS_SCHEMA)))
    return found


def test_the_fixture_is_a_format1_bundle_with_the_old_type_path(format1_registry: Path) -> None:
    """Guards the test below: the fixture really was written before the move."""
    directory = version_dir(open_registry(str(format1_registry)), MODEL_NAME)
    assert json.loads((directory / B.MANIFEST_FILE).read_text())["format_version"] == 1
    assert "components.features.FeatureTransformer" in skops_type_paths(directory / B.TRANSFORMER_FILE)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("components.features")


def test_format1_champion_verifies_loads_and_predicts_as_it_did(format1_registry: Path) -> None:
    directory = version_dir(open_registry(str(format1_registry)), MODEL_NAME)
    B.verify_bundle(directory)  # the files are untouched: checksums still hold
    bundle = B.load_bundle(directory)
    assert isinstance(bundle.transformer, FeatureTransformer)
    recorded = json.loads(FORMAT1_EXPECTED.read_text())
    probability, calibrated = bundle.predict(pd.DataFrame(recorded["request"]["instances"]))
    expected = recorded["response"]["predictions"]
    np.testing.assert_allclose(probability, [p["probability"] for p in expected], rtol=0, atol=1e-12)
    served = [p["calibrated_probability"] for p in expected]
    np.testing.assert_allclose(calibrated, served, rtol=0, atol=1e-12)
    labels = (calibrated >= bundle.threshold).astype(int)
    assert labels.tolist() == [p["label"] for p in expected]
    assert bundle.threshold == expected[0]["threshold"]


def test_without_the_rename_the_old_file_is_refused(format1_registry: Path) -> None:
    """The rename is what makes it load (reading it as today's format fails, naming the type)."""
    path = version_dir(open_registry(str(format1_registry)), MODEL_NAME) / B.TRANSFORMER_FILE
    with pytest.raises(BundleError, match=r"untrusted types: components\.features\.FeatureTransformer"):
        load_transformer(path, format_version=F.FORMAT_VERSION)
    assert isinstance(load_transformer(path, format_version=1), FeatureTransformer)


def test_a_bundle_written_now_names_only_types_that_exist(tmp_path: Path) -> None:
    """Moving a saved class without a format bump and a rename fails here, not in production."""
    bundle, _ = make_bundle("logreg")
    B.save_bundle(bundle, tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / B.MANIFEST_FILE).read_text())
    assert manifest["format_version"] == F.FORMAT_VERSION
    paths = set()
    for name in manifest["files"]:
        if name.endswith(".skops"):
            paths |= skops_type_paths(tmp_path / "bundle" / name)
    ours = sorted(p for p in paths if p.startswith("components."))
    assert ours == ["components.model.features.FeatureTransformer"]
    for path in ours:
        module, name = path.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), path
        assert path not in F.moved_types(1), path  # today's paths are never renamed


def test_moves_compose_across_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = {1: {"a.A": "b.A"}, 2: {"b.A": "c.B", "x.X": "y.X"}}
    monkeypatch.setattr(F, "_MOVED_TYPES", steps)
    # a path that step 1 left alone is still subject to step 2
    assert F.moved_types(1) == {"a.A": "c.B", "b.A": "c.B", "x.X": "y.X"}
    assert F.moved_types(2) == {"b.A": "c.B", "x.X": "y.X"}
    assert F.moved_types(3) == {}


@pytest.mark.parametrize("version", [0, F.FORMAT_VERSION + 1, "2"])
def test_unknown_format_versions_are_refused(format1_registry: Path, version: object) -> None:
    directory = version_dir(open_registry(str(format1_registry)), MODEL_NAME)
    manifest = json.loads((directory / B.MANIFEST_FILE).read_text())
    manifest["format_version"] = version
    (directory / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"format_version {version!r}"):
        B.load_bundle(directory)
