"""SHAP explanations: additivity per family, raw-column aggregation, the HTML page."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import shap
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from components.model import explain as E
from components.model.families import BlendModel, make_estimator, predict_logit, predict_proba
from components.model.features import fit_transformer
from components.shared.config import DatasetSpec, ExplainConfig, FeatureConfig


def _data(rows: int = 300, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * rng.normal(size=rows) > 0.2).astype(int)
    return X, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return _data()


@pytest.fixture(scope="module")
def xgb_model(data: tuple[np.ndarray, np.ndarray]):
    X, y = data
    return make_estimator("xgboost", {"n_estimators": 40, "max_depth": 3}, seed=0).fit(X, y)


@pytest.fixture(scope="module")
def logreg_model(data: tuple[np.ndarray, np.ndarray]):
    X, y = data
    return make_estimator("logreg", {"C": 1.0}, seed=0).fit(X, y)


def test_xgboost_shap_is_additive_in_log_odds(data, xgb_model) -> None:
    X, _ = data
    values, base = E.shap_values(xgb_model, "xgboost", X[:100], X[100:150])
    assert values.shape == (100, X.shape[1])
    np.testing.assert_allclose(values.sum(1) + base, predict_logit(xgb_model, X[:100]), atol=1e-4)


def test_contributions_match_shap_values_with_per_row_bases(data, xgb_model, logreg_model) -> None:
    X, _ = data
    for model, family in ((xgb_model, "xgboost"), (logreg_model, "logreg")):
        bases, values = E.contributions(model, family, X[:5], X[100:150])
        ref_values, ref_base = E.shap_values(model, family, X[:5], X[100:150])
        assert bases.shape == (5,)
        np.testing.assert_allclose(bases, ref_base)
        np.testing.assert_allclose(values, ref_values)
    bases, values = E.contributions(xgb_model, "xgboost", X[0], X[100:150])  # one row, 1-D input
    assert values.shape == (1, X.shape[1])


def test_logreg_shap_is_exact_and_matches_shap_linear_explainer(data, logreg_model) -> None:
    X, _ = data
    background = X[100:200]
    values, base = E.shap_values(logreg_model, "logreg", X[:50], background)
    np.testing.assert_allclose(values.sum(1) + base, predict_logit(logreg_model, X[:50]), atol=1e-10)
    reference = shap.LinearExplainer(logreg_model, background)
    np.testing.assert_allclose(values, reference.shap_values(X[:50]), atol=1e-10)


def test_logreg_behind_a_scaler_is_folded_into_the_coefficients(data) -> None:
    X, y = data
    shifted = X * 7.0 + 3.0
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(shifted, y)
    values, base = E.shap_values(model, "logreg", shifted[:40], shifted[100:200])
    np.testing.assert_allclose(values.sum(1) + base, model.decision_function(shifted[:40]), atol=1e-9)


def test_mlp_permutation_shap_is_additive_and_background_bounded(data) -> None:
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_estimator("mlp", {"hidden_layer_sizes": [8], "max_iter": 60}, seed=0).fit(X, y)
    values, base = E.shap_values(model, "mlp", X[:15], X)  # 300 background rows: capped
    np.testing.assert_allclose(values.sum(1) + base, predict_logit(model, X[:15]), atol=1e-6)
    assert len(E._bounded_background(X)) == E.MAX_BACKGROUND


def test_permutation_shap_is_exact_on_a_linear_model(data, logreg_model) -> None:
    """Without interactions every permutation gives the exact Shapley values: w * (x - mean)."""
    X, _ = data
    background = X[100:140]
    values, base = E._permutation_shap(logreg_model, X[:10], background)
    exact, exact_base = E._linear_shap(logreg_model, X[:10], background)
    np.testing.assert_allclose(values, exact, atol=1e-10)
    assert base == pytest.approx(exact_base)


def test_a_summarised_background_keeps_the_mean_and_permutation_shap_additive(data, logreg_model) -> None:
    X, y = data
    centroids, weights = E.summarize_background(X, 7)
    assert centroids.shape == (7, X.shape[1]) and weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights @ centroids, X.mean(axis=0), atol=1e-12)  # the mean exactly
    # linear SHAP depends on the mean only: the summary changes nothing
    summarised = E.contributions(logreg_model, "logreg", X[:10], centroids, background_weights=weights)
    full = E.contributions(logreg_model, "logreg", X[:10], X)
    np.testing.assert_allclose(summarised[1], full[1], atol=1e-12)
    np.testing.assert_allclose(summarised[0], full[0], atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = make_estimator("mlp", {"hidden_layer_sizes": [8], "max_iter": 60}, seed=0).fit(X, y)
    base, values = E.contributions(mlp, "mlp", X[:12], centroids, background_weights=weights)
    np.testing.assert_allclose(values.sum(1) + base, predict_logit(mlp, X[:12]), atol=1e-6)
    np.testing.assert_allclose(base, weights @ predict_logit(mlp, centroids), atol=1e-12)
    # on a linear model permutation SHAP over the weighted summary is exact, as over the rows
    values, _ = E._permutation_shap(logreg_model, X[:5], centroids, weights=weights)
    np.testing.assert_allclose(values, E._linear_shap(logreg_model, X[:5], X)[0], atol=1e-10)


def test_a_background_no_larger_than_the_summary_is_kept_as_it_is(data) -> None:
    X, _ = data
    rows, weights = E.summarize_background(X[:5], 12)
    np.testing.assert_array_equal(rows, X[:5])
    np.testing.assert_allclose(weights, np.full(5, 0.2))


def test_blend_shap_is_the_weighted_sum_of_member_shap_and_additive(data, xgb_model, logreg_model) -> None:
    X, _ = data
    blend = BlendModel({"xgboost": xgb_model, "logreg": logreg_model}, {"xgboost": 0.6, "logreg": 0.5}, 0.3)
    background = X[100:200]
    base, values = E.contributions(blend, "blend", X[:20], background)
    np.testing.assert_allclose(values.sum(1) + base, predict_logit(blend, X[:20]), atol=1e-5)
    xgb_base, xgb_values = E.contributions(xgb_model, "xgboost", X[:20], background)
    lr_base, lr_values = E.contributions(logreg_model, "logreg", X[:20], background)
    np.testing.assert_allclose(values, 0.6 * xgb_values + 0.5 * lr_values, atol=1e-12)
    np.testing.assert_allclose(base, 0.3 + 0.6 * xgb_base + 0.5 * lr_base, atol=1e-12)


def test_unknown_family_is_refused(data, logreg_model) -> None:
    X, _ = data
    with pytest.raises(ValueError, match="catboost"):
        E.shap_values(logreg_model, "catboost", X[:2], X[:2])


def test_aggregate_to_raw_splits_derived_features_equally_and_keeps_row_sums() -> None:
    values = np.array([[1.0, 2.0, 3.0, 6.0], [-1.0, 0.5, 0.0, 3.0]])
    names = ["Income", "Education_PhD", "Education_Master", "Total_Spent"]
    sources = {
        "Income": ["Income"],
        "Education_PhD": ["Education"],
        "Education_Master": ["Education"],
        "Total_Spent": ["MntWines", "MntFruits", "Income"],
    }
    raw_names, raw = E.aggregate_to_raw(values, names, sources)
    assert raw_names == ["Income", "Education", "MntWines", "MntFruits"]
    np.testing.assert_allclose(raw[0], [1.0 + 2.0, 5.0, 2.0, 2.0])
    np.testing.assert_allclose(raw.sum(1), values.sum(1))
    # a feature without a source entry is its own raw column
    raw_names, raw = E.aggregate_to_raw(values[:, :1], ["lonely"], {})
    assert raw_names == ["lonely"]
    with pytest.raises(ValueError, match="3 feature names"):
        E.aggregate_to_raw(values, names[:3], sources)


def test_importance_is_mean_abs_sorted_descending() -> None:
    importance = E.mean_abs_importance(np.array([[0.1, -3.0, 1.0], [-0.1, 1.0, -1.0]]), ["a", "b", "c"])
    assert list(importance) == ["b", "c", "a"]
    assert importance["b"] == pytest.approx(2.0)


def test_representative_rows_pick_the_median_case_of_each_kind() -> None:
    y = np.array([1, 1, 1, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.7, 0.8, 0.6, 0.3, 0.2, 0.1, 0.05])
    chosen = E.representative_rows(y, p, 0.5)
    assert chosen == {"true_positive": 2, "false_positive": 3, "false_negative": 5, "true_negative": 6}
    assert E.representative_rows(y, y.astype(float), 0.5)["false_positive"] is None


def _kinds_html(html: str, key: str) -> str:
    start = html.index(f"<h3 id='{key}'>")
    end = html.find("<h3", start + 1)
    return html[start:] if end < 0 else html[start:end]


def test_explain_page_has_plots_importances_and_all_four_cases(data, xgb_model) -> None:
    X, y = data
    names = [f"f{i}" for i in range(X.shape[1])]
    sources = {name: [f"raw{i // 2}"] for i, name in enumerate(names)}
    p = predict_proba(xgb_model, X[:60])
    y_sample = y[:60].copy()
    y_sample[:4] = [1, 0, 1, 0]  # make sure all four kinds occur
    p_sample = p.copy()
    p_sample[:4] = [0.9, 0.9, 0.1, 0.1]
    result = E.explain(xgb_model, "xgboost", X[:60], X[100:150], names, sources, y_sample, p_sample, 0.5, 2)

    scores = list(result.importance_encoded.values())
    assert scores == sorted(scores, reverse=True)
    assert set(result.importance_raw) == {"raw0", "raw1", "raw2"}
    for key in ("true_positive", "false_positive", "false_negative", "true_negative"):
        assert "<img" in _kinds_html(result.html, key), key
    assert result.html.count('alt="dependence') == 2
    assert "SHAP summary" in result.html and "raw0" in result.html
    payload = result.to_dict()
    assert "html" not in payload and json.dumps(payload)


def test_explain_page_says_when_a_kind_does_not_occur(data, logreg_model) -> None:
    X, y = data
    names = [f"f{i}" for i in range(X.shape[1])]
    perfect = y[:30].astype(float)  # no false positives or false negatives
    result = E.explain(logreg_model, "logreg", X[:30], X[100:150], names, {}, y[:30], perfect, 0.5, 1)
    assert "does not occur" in _kinds_html(result.html, "false_positive")
    assert "does not occur" in _kinds_html(result.html, "false_negative")
    assert "<img" in _kinds_html(result.html, "true_positive")
    assert result.representatives["false_negative"] is None


def test_explain_champion_samples_and_reports_raw_columns() -> None:
    rng = np.random.default_rng(1)
    n = 240
    frame = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.integers(0, 5, n), "c": rng.choice(["x", "y"], n)}
    )
    frame["y"] = (frame["a"] + (frame["c"] == "x") + 0.3 * rng.normal(size=n) > 0.5).astype(int)
    spec = DatasetSpec(name="t", target="y", id_columns=[], date_columns=[], drop_columns=[])
    transformer = fit_transformer(frame, spec, FeatureConfig(derived="none"))
    raw, y = frame.drop(columns=["y"]), frame["y"].to_numpy()
    model = make_estimator("xgboost", {"n_estimators": 20, "max_depth": 2}, seed=0)
    model.fit(transformer.transform(raw), y)
    result = E.explain_champion(
        model,
        "xgboost",
        transformer,
        raw,
        raw,
        y,
        {"temperature": 1.5, "threshold": 0.4},
        ExplainConfig(sample_size=50, background_size=20, top_dependence=1),
    )
    assert set(result.importance_raw) == {"a", "b", "c"}
    assert "sigmoid(log-odds / 1.5)" in result.html
