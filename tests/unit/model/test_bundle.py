"""Model bundle: identical predictions after a round trip, checksums refuse damaged files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.model import bundle as B
from components.model import families as models
from components.model.calibration import apply_temperature
from components.model.families import BlendModel, make_estimator
from components.model.features import fit_transformer
from components.shared.config import Config, DatasetSpec, FeatureConfig
from components.shared.errors import BundleError

SPEC = DatasetSpec(name="tiny", target="y", id_columns=["id"], date_columns=[], drop_columns=[])
PARAMS = {
    "xgboost": {"n_estimators": 20, "max_depth": 3},
    "logreg": {"C": 1.0},
    "mlp": {"hidden_layer_sizes": [8], "max_iter": 60},
}


def tiny_frame(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 5, rows),
            "c": rng.choice(["x", "y", "z"], rows),
        }
    )
    frame["y"] = (frame["a"] + (frame["c"] == "x") + 0.3 * rng.normal(size=rows) > 0.5).astype(int)
    return frame


def make_bundle(family: str = "logreg", temperature: float = 1.7) -> tuple[B.ModelBundle, pd.DataFrame]:
    frame = tiny_frame()
    transformer = fit_transformer(frame, SPEC, FeatureConfig(derived="none"))
    X, y = transformer.transform(frame), frame["y"].to_numpy()
    members = [family] if family != "blend" else ["xgboost", "logreg", "mlp"]
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small MLP: convergence warning
        for member in members:
            fitted[member] = make_estimator(member, PARAMS[member], seed=0).fit(X, y)
    model = (
        fitted[family]
        if family != "blend"
        else BlendModel(fitted, {"xgboost": 0.5, "logreg": 0.3, "mlp": 0.2}, intercept=0.1)
    )
    bundle = B.ModelBundle(
        transformer=transformer,
        model=model,
        family=family,
        threshold=0.42,
        temperature=temperature,
        input_schema={"target": "y", "features": [{"name": "a", "type": "number"}]},
        metrics={"roc_auc": 0.9, "f1": 0.7, "ece": float("nan")},
        params=PARAMS.get(family, {}),
        data_fingerprint=B.data_fingerprint(frame),
        code_version="test",
        extra={"importance": {"a": 1.0}},
    )
    return bundle, frame


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, B.ModelBundle, pd.DataFrame]:
    bundle, frame = make_bundle("xgboost")
    directory = tmp_path_factory.mktemp("bundles") / "xgb"
    B.save_bundle(bundle, directory)
    return directory, bundle, frame


@pytest.mark.parametrize("family", ["xgboost", "logreg", "mlp", "blend"])
def test_round_trip_predicts_identically(family: str, tmp_path: Path) -> None:
    bundle, frame = make_bundle(family)
    B.save_bundle(bundle, tmp_path / "bundle")
    loaded = B.load_bundle(tmp_path / "bundle")

    raw = frame.drop(columns=["y"])
    before_raw, before_cal = bundle.predict(raw)
    after_raw, after_cal = loaded.predict(raw)
    np.testing.assert_array_equal(after_raw, before_raw)
    np.testing.assert_array_equal(after_cal, before_cal)
    np.testing.assert_allclose(after_cal, apply_temperature(after_raw, 1.7))
    assert loaded.family == family and loaded.threshold == 0.42 and loaded.temperature == 1.7
    assert loaded.feature_names == bundle.feature_names
    assert loaded.source_columns == bundle.source_columns
    assert loaded.metrics["ece"] is None  # NaN is not valid JSON: stored as null
    assert loaded.library_versions["sklearn"] and "python" in loaded.library_versions
    assert loaded.data_fingerprint == bundle.data_fingerprint


def test_blend_bundle_is_served_and_explained_additively(tmp_path: Path) -> None:
    from components.serving.model import load_model
    from components.serving.settings import ServeSettings

    bundle, frame = make_bundle("blend", temperature=1.0)
    bundle.reference = frame
    B.save_bundle(bundle, tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / B.MANIFEST_FILE).read_text())
    assert {"blend.json", "members/xgboost/model.ubj", "members/mlp/model.skops"} <= set(manifest["files"])
    loaded = load_model(tmp_path / "bundle", ServeSettings())
    rows = frame.drop(columns=["y"]).head(5)
    scored = loaded.score({c: rows[c].tolist() for c in bundle.input_columns})
    np.testing.assert_allclose(scored.probability, bundle.predict(rows)[0], rtol=1e-12)
    explained = loaded.explain(scored.features, top_k=100)
    logit = np.log(scored.probability / (1 - scored.probability))
    for item, expected in zip(explained, logit, strict=True):
        assert item["base_value"] + sum(item["contributions"].values()) == pytest.approx(expected, abs=1e-5)


def test_predict_one_json_shaped_row(saved) -> None:
    directory, _, _ = saved
    raw = pd.DataFrame([{"a": "0.3", "b": 2, "c": "x"}])  # numbers may arrive as strings
    p, served = B.load_bundle(directory).predict(raw)
    assert p.shape == served.shape == (1,)


def test_manifest_lists_every_file_with_checksum(saved) -> None:
    directory, _, _ = saved
    manifest = json.loads((directory / B.MANIFEST_FILE).read_text())
    assert manifest["format_version"] == B.FORMAT_VERSION
    assert set(manifest["files"]) == {"transformer.skops", "model.ubj", "bundle.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == B.sha256_file(directory / name)
        assert entry["size"] == (directory / name).stat().st_size
    assert not [p for p in directory.parent.iterdir() if ".tmp-" in p.name]


def _copy(directory: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


@pytest.mark.parametrize("name", ["model.ubj", "transformer.skops", "bundle.json"])
def test_tampered_file_is_refused_naming_it(saved, tmp_path: Path, name: str) -> None:
    directory = _copy(saved[0], tmp_path)
    data = bytearray((directory / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{name}.*checksum"):
        B.load_bundle(directory)


def test_missing_file_is_refused_naming_it(saved, tmp_path: Path) -> None:
    directory = _copy(saved[0], tmp_path)
    (directory / "transformer.skops").unlink()
    with pytest.raises(BundleError, match=r"transformer\.skops is missing"):
        B.load_bundle(directory)


def test_missing_manifest_and_missing_directory_are_refused(saved, tmp_path: Path) -> None:
    directory = _copy(saved[0], tmp_path)
    (directory / B.MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json"):
        B.load_bundle(directory)
    with pytest.raises(BundleError, match="does not exist"):
        B.load_bundle(tmp_path / "nowhere")


def test_unlisted_files_are_ignored_but_loaded_files_must_be_listed(saved, tmp_path: Path) -> None:
    directory = _copy(saved[0], tmp_path)
    (directory / "notes.txt").write_text("extra file, not part of the bundle")
    B.load_bundle(directory)

    manifest = json.loads((directory / B.MANIFEST_FILE).read_text())
    del manifest["files"]["model.ubj"]
    (directory / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"model\.ubj.*not listed"):
        B.load_bundle(directory)


def test_manifest_entries_outside_the_bundle_are_refused(saved, tmp_path: Path) -> None:
    directory = _copy(saved[0], tmp_path)
    manifest = json.loads((directory / B.MANIFEST_FILE).read_text())
    manifest["files"]["../escape"] = {"sha256": "0", "size": 0}
    (directory / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="invalid file name"):
        B.load_bundle(directory)


def test_newer_format_version_is_refused(saved, tmp_path: Path) -> None:
    directory = _copy(saved[0], tmp_path)
    manifest = json.loads((directory / B.MANIFEST_FILE).read_text())
    manifest["format_version"] = B.FORMAT_VERSION + 1
    (directory / B.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version"):
        B.load_bundle(directory)


def test_save_replaces_an_existing_bundle_and_a_failed_save_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = make_bundle("logreg", temperature=1.0)
    target = tmp_path / "bundle"
    B.save_bundle(first, target)
    second, _ = make_bundle("logreg", temperature=2.0)
    B.save_bundle(second, target)
    assert B.load_bundle(target).temperature == 2.0

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "save_model", crash)  # bundle imports it at call time
    with pytest.raises(RuntimeError, match="disk full"):
        B.save_bundle(first, target)
    assert B.load_bundle(target).temperature == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging leftovers


def test_save_into_an_existing_empty_directory(tmp_path: Path) -> None:
    bundle, _ = make_bundle("logreg")
    (tmp_path / "out").mkdir()
    B.save_bundle(bundle, str(tmp_path / "out"))
    assert B.load_bundle(tmp_path / "out").family == "logreg"


def test_copy_fallback_when_directory_rename_is_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def no_dir_rename(src, dst):
        raise OSError(errno.EXDEV, "cross-device link")

    bundle, _ = make_bundle("logreg")
    monkeypatch.setattr(B, "_swap_into_place", no_dir_rename)
    B.save_bundle(bundle, tmp_path / "out")
    assert B.load_bundle(tmp_path / "out").family == "logreg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_data_fingerprint_tracks_values_and_dtypes_not_the_index() -> None:
    frame = tiny_frame(50)
    fingerprint = B.data_fingerprint(frame)
    assert fingerprint == B.data_fingerprint(frame.copy())
    assert fingerprint == B.data_fingerprint(frame.set_axis(range(100, 150)))
    changed = frame.copy()
    changed.loc[3, "a"] += 1e-9
    assert B.data_fingerprint(changed) != fingerprint
    assert B.data_fingerprint(frame.astype({"b": "float64"})) != fingerprint
    assert len(fingerprint) == 64


def test_library_versions_names_every_library_and_mismatches_are_reported(saved) -> None:
    versions = B.library_versions()
    assert set(versions) == {"python", "pandas", "numpy", "sklearn", "xgboost", "skops"}
    assert "not installed" not in versions.values()
    bundle = B.load_bundle(saved[0])
    assert bundle.version_mismatches() == {}
    bundle.library_versions = {**versions, "xgboost": "1.7.6"}
    assert bundle.version_mismatches() == {"xgboost": {"bundle": "1.7.6", "runtime": versions["xgboost"]}}
    # An older bundle's shap entry is ignored: the endpoint computes SHAP without the shap library.
    bundle.library_versions = {**versions, "shap": "0.1.0"}
    assert bundle.version_mismatches() == {}


def test_xgboost_cpu_counts_as_xgboost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The images install xgboost-cpu: its version is the bundle's xgboost version, not 'not installed'."""
    real = B.importlib_metadata.version

    def only_cpu_build(dist: str) -> str:
        if dist == "xgboost":
            raise B.importlib_metadata.PackageNotFoundError(dist)
        return real("xgboost") if dist == "xgboost-cpu" else real(dist)

    monkeypatch.setattr(B.importlib_metadata, "version", only_cpu_build)
    assert B.library_versions()["xgboost"] == real("xgboost")


def test_build_bundle_takes_threshold_temperature_and_metrics_from_the_stages(tmp_path: Path) -> None:
    base, frame = make_bundle("logreg")
    config = Config(dataset=SPEC)
    built = B.build_bundle(
        transformer=base.transformer,
        model=base.model,
        family="logreg",
        calibration={"kept": True, "temperature": 1.3, "fitted_temperature": 1.3, "threshold": 0.37},
        evaluation={
            "test": {"roc_auc": 0.88, "f1": 0.66},
            "roc_curve": [[0], [0], [0]],
            "champion": "logreg",
        },
        importance={"importance_raw": {"a": 0.5}},
        input_schema={"target": "y"},
        train_frame=frame,
        config=config,
        code_version="abc123",
    )
    assert (built.threshold, built.temperature) == (0.37, 1.3)
    assert built.metrics == {"roc_auc": 0.88, "f1": 0.66}
    assert built.params["C"] == 1.0 and "roc_curve" not in built.extra["evaluation"]
    assert built.extra["reference_stats"]["c"]["top_values"]
    assert "id" not in built.extra["reference_stats"]  # only transformer inputs
    B.save_bundle(built, tmp_path / "b")
    assert B.load_bundle(tmp_path / "b").code_version == "abc123"


def test_reference_sample_is_bounded_checksummed_and_loadable(tmp_path: Path) -> None:
    bundle, frame = make_bundle("logreg")
    big = pd.concat([frame] * 5, ignore_index=True)
    bundle.reference = B.reference_sample(big, max_rows=300, seed=1)
    assert len(bundle.reference) == 300
    assert B.reference_sample(frame, max_rows=10_000, seed=1).equals(frame.reset_index(drop=True))
    B.save_bundle(bundle, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / B.MANIFEST_FILE).read_text())
    assert B.REFERENCE_FILE in manifest["files"]
    pd.testing.assert_frame_equal(B.load_reference(tmp_path / "b"), bundle.reference)
    (tmp_path / "b" / B.REFERENCE_FILE).write_bytes(b"tampered")
    with pytest.raises(BundleError, match=B.REFERENCE_FILE):
        B.load_reference(tmp_path / "b")
