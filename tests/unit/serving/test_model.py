"""What the endpoint derives from a bundle at load: the encoder (the bundle's record, checked again)
and the explainer (TreeSHAP tables held against xgboost, where explanations run)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

import components.model.compiled_encoder as compiled_encoder
from components.model.bundle import load_bundle, load_reference, save_bundle
from components.model.compiled_encoder import CHECK_ROWS, ENCODER_VERSION, check_compiled_encoder
from components.serving.model import (
    BACKGROUND_CENTROIDS,
    EXPLAIN_EVALUATIONS,
    INLINE_EXPLAIN_MS,
    load_model,
)
from components.serving.settings import ServeSettings
from tests.unit.batch.conftest import MODEL, BuiltRegistry, make_registry

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    return make_registry(tmp_path_factory.mktemp("encoder"))


def version_dir(built: BuiltRegistry) -> Path:
    return built.root / MODEL / "versions" / "v0001"


def rebundled(built: BuiltRegistry, target: Path, encoder_record: dict | None) -> Path:
    """The champion's bundle saved again with another encoder record (None: no record at all)."""
    bundle = load_bundle(version_dir(built))
    bundle.reference = load_reference(version_dir(built))
    if encoder_record is None:
        bundle.extra.pop("encoder", None)
    else:
        bundle.extra["encoder"] = encoder_record
    save_bundle(bundle, target)
    return target


def served_probability(directory: Path, rows) -> np.ndarray:
    model = load_model(directory, ServeSettings())
    columns = {c: rows[c].tolist() for c in model.schema.model_columns}
    return model.score(columns).probability


def test_packaging_records_that_the_encoder_compiles_and_equals_its_steps(built: BuiltRegistry) -> None:
    record = built.bundle.extra["encoder"]
    assert record["compiled"] is True and record["version"] == ENCODER_VERSION
    assert record["rows_checked"] == min(CHECK_ROWS, len(built.train))
    assert 0.0 <= record["max_abs_difference"] <= compiled_encoder.CHECK_TOLERANCE
    # the check leaves the saved transformer as it was: it encodes with its fitted steps
    assert "compiled" not in load_bundle(version_dir(built)).transformer.__dict__


def test_the_endpoint_serves_the_compiled_encoder_after_checking_it_again(built: BuiltRegistry) -> None:
    model = load_model(version_dir(built), ServeSettings())
    assert model.encoder["compiled"] is True
    assert model.encoder["rows_checked"] == min(CHECK_ROWS, len(built.train))
    assert model.encoder["recorded"] == built.bundle.extra["encoder"]
    assert model.bundle.transformer.compiled is not None


def test_a_bundle_recorded_as_not_compiled_is_served_with_its_steps_and_a_log_line(
    built: BuiltRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = {"compiled": False, "version": ENCODER_VERSION, "reason": "steps ('MinMaxScaler',) differ"}
    directory = rebundled(built, tmp_path / "b", record)
    with caplog.at_level(logging.WARNING, logger="propensity.serving"):
        model = load_model(directory, ServeSettings())
    assert model.encoder["compiled"] is False and model.bundle.transformer.compiled is None
    assert model.encoder["reason"] == "at packaging: steps ('MinMaxScaler',) differ"
    assert "not compiled (at packaging: steps ('MinMaxScaler',) differ)" in caplog.text
    rows = built.train.head(30)
    np.testing.assert_allclose(
        served_probability(directory, rows), served_probability(version_dir(built), rows), atol=1e-12
    )


def test_a_compiled_form_that_differs_from_the_steps_is_not_served(
    built: BuiltRegistry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The load-time check is the safety net for a compiler bug: shift one constant and it fires."""
    real = compiled_encoder.compile_encoder

    def off_by_a_little(transformer):
        encoder = real(transformer)
        numeric = encoder.numeric
        shifted = type(numeric)(numeric.fill, numeric.mean + 1e-6, numeric.scale)
        return type(encoder)(shifted, encoder.categorical)

    monkeypatch.setattr(compiled_encoder, "compile_encoder", off_by_a_little)
    transformer = load_bundle(version_dir(built)).transformer
    record = check_compiled_encoder(transformer, built.train.head(50))
    assert record["compiled"] is False and "differs from the fitted steps" in record["reason"]
    assert "on 50 rows" in record["reason"] and "compiled" not in transformer.__dict__
    with caplog.at_level(logging.WARNING, logger="propensity.serving"):
        model = load_model(version_dir(built), ServeSettings())
    assert model.encoder["compiled"] is False and model.bundle.transformer.compiled is None
    assert "serving with scikit-learn" in caplog.text


def test_a_bundle_packaged_before_the_record_is_checked_at_load(built: BuiltRegistry, tmp_path: Path) -> None:
    directory = rebundled(built, tmp_path / "old", None)
    model = load_model(directory, ServeSettings())
    assert model.encoder["compiled"] is True and model.encoder["recorded"] is None
    assert model.encoder["rows_checked"] > 0


def test_the_format1_fixture_bundle_is_checked_and_compiled_at_load(tmp_path: Path) -> None:
    fixture = REPO / "tests" / "fixtures" / "registry-format1"
    root = tmp_path / "registry"
    shutil.copytree(fixture, root)
    versions = next(root.glob("*/versions"))
    model = load_model(next(versions.iterdir()), ServeSettings())
    assert model.encoder["compiled"] is True and model.encoder["recorded"] is None


@pytest.fixture(scope="module")
def xgboost_built(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    params = {"n_estimators": 60, "max_depth": 5}
    return make_registry(tmp_path_factory.mktemp("xgb"), family="xgboost", params=params)


def explained(model, rows, top_k: int = 1000) -> list[dict]:
    parsed = model.schema.parse(orjson.dumps({"instances": rows, "parameters": {"explain": True}}))
    return model.explain(model.score(parsed.columns).features, top_k)


def test_an_xgboost_champion_explains_with_checked_tables_and_the_same_answers(
    xgboost_built: BuiltRegistry,
) -> None:
    model = load_model(version_dir(xgboost_built), ServeSettings())
    record = model.tree_shap_record
    assert model.tree_shap is not None and record["tables"] is True and record["rows_checked"] == 50
    frame = xgboost_built.train.head(6)[model.schema.model_columns]
    rows = [model.example, *json.loads(frame.to_json(orient="records", date_format="iso"))]
    fast = explained(model, rows)
    model.tree_shap = None  # xgboost's own pred_contribs
    slow = explained(model, rows)
    for a, b in zip(fast, slow, strict=True):
        assert a["base_value"] == pytest.approx(b["base_value"], abs=1e-5)
        assert a["contributions"].keys() == b["contributions"].keys()
        for name, value in a["contributions"].items():
            assert value == pytest.approx(b["contributions"][name], abs=1e-5)
    info = model.info()["explanation"]
    assert info["tree_shap_tables"]["tables"] is True and info["ms_per_row_at_load"] > 0


def test_cheap_explanations_run_inline_and_costly_ones_leave_the_event_loop(
    xgboost_built: BuiltRegistry,
) -> None:
    model = load_model(version_dir(xgboost_built), ServeSettings())
    assert 0 < model.explain_ms_per_row < math.inf
    inline_rows = int(INLINE_EXPLAIN_MS // model.explain_ms_per_row)
    assert model.explains_inline(max(inline_rows, 0)) and not model.explains_inline(inline_rows + 1)
    model.explain_ms_per_row = math.inf  # an example that could not be explained
    assert not model.explains_inline(1)


def test_an_mlp_champion_explains_over_a_budgeted_weighted_background(tmp_path: Path) -> None:
    params = {"hidden_layer_sizes": [8], "max_iter": 50}
    built = make_registry(tmp_path, rows=400, family="mlp", params=params)
    model = load_model(version_dir(built), ServeSettings())
    features = len(model.bundle.feature_names)
    low, high = BACKGROUND_CENTROIDS
    expected = min(max(EXPLAIN_EVALUATIONS // (2 * (features + 1)), low), high)
    assert model.background.shape == (expected, features)
    assert model.background_weights is not None and model.background_weights.sum() == pytest.approx(1.0)
    assert model.info()["explanation"]["background"] == "weighted k-means centroids of the reference rows"
    parsed = model.schema.parse(orjson.dumps({"instances": [model.example]}))
    scored = model.score(parsed.columns)
    (item,) = model.explain(scored.features, top_k=1000)
    logit = math.log(scored.probability[0] / (1 - scored.probability[0]))
    assert item["base_value"] + sum(item["contributions"].values()) == pytest.approx(logit, abs=1e-6)
