"""The precomputed TreeSHAP tables give xgboost's own pred_contribs, and refuse what they do not cover."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import components.model.treeshap as treeshap
from components.model.explain import contributions, fast_tree_shap
from components.model.families import BlendModel, make_estimator, xgb_iteration_range
from components.model.treeshap import TreeShapNotBuilt, build_tree_shap

TOLERANCE = 1e-5  # xgboost sums in float32


def data(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mixed signal with repeated splits on the same features, ties and missing values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 8))
    X[:, 5] = rng.integers(0, 2, size=rows)  # a one-hot-like column: splits at 0.5 / 1.0
    X[:, 6] = np.round(X[:, 6], 1)  # many ties on thresholds
    logit = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + X[:, 5] - 0.5 * (X[:, 3] > 0.3)
    y = (logit + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    X[rng.random(X.shape) < 0.08] = np.nan
    return X, y


def pred_contribs(model: xgb.XGBClassifier, X: np.ndarray) -> np.ndarray:
    return model.get_booster().predict(
        xgb.DMatrix(X, missing=np.nan), pred_contribs=True, iteration_range=xgb_iteration_range(model)
    )


def tables_for(model: xgb.XGBClassifier, X: np.ndarray) -> treeshap.TreeShapTables:
    expected = pred_contribs(model, X[:1])
    return build_tree_shap(model.get_booster(), xgb_iteration_range(model), float(expected[0, -1]))


@pytest.fixture(scope="module")
def fitted() -> tuple[xgb.XGBClassifier, np.ndarray]:
    X, y = data()
    model = xgb.XGBClassifier(n_estimators=120, max_depth=6, learning_rate=0.1, n_jobs=1, random_state=0)
    return model.fit(X, y), X


@pytest.mark.parametrize("value", [np.nan, 3e38, -3e38, 0.0])  # xgboost refuses inf
def test_padding_steps_of_short_paths_add_nothing_whatever_the_row_holds(fitted, value: float) -> None:
    """Paths shorter than the longest are padded with steps on feature 0 (against +inf, bit 0):
    the row's own feature 0, whatever it is, must not change a leaf's mask."""
    model, X = fitted
    tables = tables_for(model, X)
    assert (tables.path_bit == 0).any() and tables.path_bit.shape[0] > 1  # padding exists
    rows = X[:20].copy()
    rows[:, 0] = value
    _, values = tables.contributions(rows)
    np.testing.assert_allclose(values, pred_contribs(model, rows)[:, :-1], atol=TOLERANCE)
    if value == 3e38:  # +inf fails every padding comparison (x < inf): only a zero bit keeps it out
        rows[:, 0] = np.inf  # and goes the way 3e38 does at every real split on feature 0
        np.testing.assert_array_equal(tables.contributions(rows)[1], values)


@pytest.mark.parametrize("rows", [1, 3, 13, 200])
def test_tables_equal_pred_contribs_on_rows_with_missing_values(fitted, rows: int) -> None:
    model, X = fitted
    tables = tables_for(model, X)
    base, values = tables.contributions(X[-rows:])
    expected = pred_contribs(model, X[-rows:])
    np.testing.assert_allclose(values, expected[:, :-1], atol=TOLERANCE)
    np.testing.assert_allclose(base, expected[:, -1], atol=TOLERANCE)
    margin = model.get_booster().predict(xgb.DMatrix(X[-rows:], missing=np.nan), output_margin=True)
    np.testing.assert_allclose(base + values.sum(axis=1), margin, atol=TOLERANCE)  # additive


def test_rows_exactly_on_a_threshold_and_all_missing_follow_xgboost(fitted) -> None:
    model, X = fitted
    tables = tables_for(model, X)
    booster = model.get_booster()
    thresholds = booster.trees_to_dataframe().query("Feature != 'Leaf'")
    on_threshold = np.zeros((len(thresholds), X.shape[1]))
    for i, (feature, split) in enumerate(zip(thresholds["Feature"], thresholds["Split"], strict=True)):
        on_threshold[i, int(feature[1:])] = split  # x == threshold goes right in xgboost
    rows = np.vstack([on_threshold[:40], np.full((1, X.shape[1]), np.nan)])
    _, values = tables.contributions(rows)
    np.testing.assert_allclose(values, pred_contribs(model, rows)[:, :-1], atol=TOLERANCE)


def test_early_stopping_explains_only_the_trees_predict_uses() -> None:
    X, y = data(seed=1)
    model = xgb.XGBClassifier(
        n_estimators=300, max_depth=4, learning_rate=0.3, early_stopping_rounds=5, n_jobs=1, random_state=0
    )
    model.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])], verbose=False)
    assert model.best_iteration < 299
    tables = tables_for(model, X)
    _, values = tables.contributions(X[:20])
    np.testing.assert_allclose(values, pred_contribs(model, X[:20])[:, :-1], atol=TOLERANCE)


def test_models_the_tables_do_not_cover_are_refused() -> None:
    X, y = data()
    frame = pd.DataFrame({"a": X[:, 0], "c": pd.Categorical(np.where(X[:, 1] > 0, "x", "y"))})
    categorical = xgb.XGBClassifier(n_estimators=5, enable_categorical=True, tree_method="hist", n_jobs=1)
    categorical.fit(frame, y)
    with pytest.raises(TreeShapNotBuilt, match="categorical"):
        build_tree_shap(categorical.get_booster(), (0, 0), 0.0)
    dart = xgb.XGBClassifier(n_estimators=5, booster="dart", n_jobs=1).fit(X, y)
    with pytest.raises(TreeShapNotBuilt, match="dart"):
        build_tree_shap(dart.get_booster(), (0, 0), 0.0)
    three = xgb.XGBClassifier(n_estimators=3, n_jobs=1).fit(X, np.arange(len(y)) % 3)
    with pytest.raises(TreeShapNotBuilt, match="multi-class"):
        build_tree_shap(three.get_booster(), (0, 0), 0.0)


def test_tables_over_the_memory_cap_are_refused_and_the_bundle_explains_with_xgboost(
    fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X = fitted
    monkeypatch.setattr(treeshap, "MAX_TABLE_BYTES", 1024)
    tables, record = fast_tree_shap(model, "xgboost", X[:10])
    assert tables is None and record["tables"] is False and "MiB" in record["reason"]


def test_fast_tree_shap_checks_itself_and_serves_a_blend_member(fitted) -> None:
    model, X = fitted
    tables, record = fast_tree_shap(model, "xgboost", X[:30])
    assert tables is not None and record["tables"] is True and record["rows_checked"] == 30
    assert record["max_abs_difference"] <= TOLERANCE
    logreg = make_estimator("logreg", {"C": 1.0}, seed=0).fit(np.nan_to_num(X), data()[1])
    blend = BlendModel({"xgboost": model, "logreg": logreg}, {"xgboost": 0.7, "logreg": 0.4}, -0.1)
    blend_tables, _ = fast_tree_shap(blend, "blend", X[:5])
    assert blend_tables is not None  # the member's tables, not pred_contribs twice
    rows, background = np.nan_to_num(X[:6]), np.nan_to_num(X[100:200])
    fast = contributions(blend, "blend", rows, background, blend_tables)
    slow = contributions(blend, "blend", rows, background)
    np.testing.assert_allclose(fast[0], slow[0], atol=TOLERANCE)
    np.testing.assert_allclose(fast[1], slow[1], atol=TOLERANCE)
    none, why = fast_tree_shap(logreg, "logreg", rows)
    assert none is None and "no xgboost model" in why["reason"]


def test_tables_that_disagree_with_xgboost_are_not_used(fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load-time check is the safety net: a table that is off by a little is caught."""
    model, X = fitted
    real = treeshap._tables

    def off(*args, **kwargs):
        built = real(*args, **kwargs)
        built.table[::3] += 1e-3
        return built

    monkeypatch.setattr(treeshap, "_tables", off)
    tables, record = fast_tree_shap(model, "xgboost", X[:30])
    assert tables is None and "differ from pred_contribs" in record["reason"]


def test_a_model_with_another_missing_value_or_wide_paths_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = data()
    coded = np.where(np.isnan(X), -999.0, X)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=4, missing=-999.0, n_jobs=1).fit(coded, y)
    tables, record = fast_tree_shap(model, "xgboost", coded[:10])
    assert tables is None and "-999.0" in record["reason"]
    monkeypatch.setattr(treeshap, "MAX_PATH_FEATURES", 3)
    deep = xgb.XGBClassifier(n_estimators=5, max_depth=6, n_jobs=1).fit(np.nan_to_num(X), y)
    with pytest.raises(TreeShapNotBuilt, match="distinct features on its path"):
        build_tree_shap(deep.get_booster(), (0, 0), 0.0)


def test_the_check_allows_xgboosts_float32_rounding_and_no_more(fitted) -> None:
    model, X = fitted
    tables = tables_for(model, X)
    assert 1e-6 <= tables.tolerance < 1e-4  # 120 trees of leaves below 1
    expected = pred_contribs(model, X[:20])
    assert treeshap.verify(tables, expected, X[:20]) <= tables.tolerance
    expected[:, 0] += 2 * tables.tolerance
    assert treeshap.verify(tables, expected, X[:20]) > tables.tolerance
