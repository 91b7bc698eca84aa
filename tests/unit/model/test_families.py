"""Model families: build, predict, save/load round trip and the safety checks on loading."""

from __future__ import annotations

import collections
import warnings
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from components.model.families import (
    FAMILIES,
    SKOPS_FILE,
    BlendModel,
    _is_plain_binary,
    load_model,
    make_estimator,
    predict_logit,
    predict_proba,
    save_model,
)
from components.shared.errors import BundleError

SMALL_PARAMS = {
    "xgboost": {"n_estimators": 20, "max_depth": 3},
    "logreg": {"C": 1.0},
    "mlp": {"hidden_layer_sizes": [16], "max_iter": 100},
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> dict[str, object]:
    X, y = data
    return {f: make_estimator(f, SMALL_PARAMS[f], seed=1).fit(X, y) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_predicts_probabilities(family, data, fitted):
    X, _ = data
    p = predict_proba(fitted[family], X)
    assert p.shape == (len(X),)
    assert p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    logit = predict_logit(fitted[family], X)
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_predicts_identically(family, data, fitted, tmp_path: Path):
    X, _ = data
    files = save_model(fitted[family], family, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == files
    assert not any(name.endswith((".pkl", ".pickle", ".joblib")) for name in files)
    loaded = load_model(family, tmp_path)
    np.testing.assert_array_equal(predict_proba(loaded, X), predict_proba(fitted[family], X))


def test_untrusted_type_is_refused(data, tmp_path: Path):
    X, y = data
    model = LogisticRegression().fit(X, y)
    model.extra_ = collections.Counter()  # a type outside the allow-list
    sio.dump(model, tmp_path / SKOPS_FILE)
    with pytest.raises(BundleError, match=r"untrusted types: collections\.Counter"):
        load_model("logreg", tmp_path)


def test_file_of_another_family_is_refused(fitted, tmp_path: Path):
    save_model(fitted["mlp"], "mlp", tmp_path)
    with pytest.raises(BundleError, match="expected LogisticRegression"):
        load_model("logreg", tmp_path)


def test_missing_model_file(tmp_path: Path):
    with pytest.raises(BundleError, match=r"model\.ubj does not exist"):
        load_model("xgboost", tmp_path)


def test_unknown_family_names_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"'svm'.*xgboost, logreg, mlp"):
        make_estimator("svm", {}, seed=0)


def test_unknown_param_is_named():
    with pytest.raises(ValueError, match="'max_dept'"):
        make_estimator("xgboost", {"max_dept": 3}, seed=0)


def test_json_shaped_params_are_normalised():
    mlp = make_estimator("mlp", {"hidden_layer_sizes": [64, 32]}, seed=3)
    assert mlp.hidden_layer_sizes == (64, 32)
    assert mlp.random_state == 3 and not mlp.early_stopping and mlp.max_iter == 50  # tuned epochs
    xgb = make_estimator("xgboost", {"n_estimators": 300.0, "learning_rate": 0.1}, seed=3)
    assert xgb.n_estimators == 300 and isinstance(xgb.n_estimators, int)
    assert xgb.tree_method == "hist" and xgb.n_jobs == 1 and xgb.random_state == 3
    assert make_estimator("logreg", {}, seed=0).max_iter == 2000


def test_blend_is_a_weighted_sum_of_member_log_odds_and_round_trips(data, fitted, tmp_path: Path):
    X, _ = data
    members = {"xgboost": fitted["xgboost"], "logreg": fitted["logreg"]}
    blend = BlendModel(members, {"xgboost": 0.7, "logreg": 0.4}, intercept=-0.2)
    expected = -0.2 + 0.7 * predict_logit(fitted["xgboost"], X) + 0.4 * predict_logit(fitted["logreg"], X)
    np.testing.assert_allclose(predict_logit(blend, X), expected, rtol=1e-12)
    np.testing.assert_allclose(predict_proba(blend, X), 1 / (1 + np.exp(-expected)), rtol=1e-12)
    files = save_model(blend, "blend", tmp_path)
    assert files == ["blend.json", "members/xgboost/model.ubj", "members/logreg/model.skops"]
    loaded = load_model("blend", tmp_path)
    assert loaded.weights == blend.weights and loaded.intercept == blend.intercept
    np.testing.assert_array_equal(predict_proba(loaded, X), predict_proba(blend, X))


def test_blend_file_naming_an_unknown_member_is_refused(data, fitted, tmp_path: Path):
    save_model(BlendModel({"logreg": fitted["logreg"]}, {"logreg": 1.0}, 0.0), "blend", tmp_path)
    (tmp_path / "blend.json").write_text('{"members": ["svm"], "weights": {"svm": 1}, "intercept": 0}')
    with pytest.raises(BundleError, match="svm"):
        load_model("blend", tmp_path)
    with pytest.raises(ValueError, match="must match"):
        BlendModel({"logreg": fitted["logreg"]}, {"mlp": 1.0}, 0.0)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_the_unvalidated_path_equals_scikit_learn(data, fitted, activation: str) -> None:
    """predict_proba / predict_logit skip scikit-learn's input checks for the binary logistic
    regression and MLP; the numbers must be scikit-learn's own."""
    from sklearn.neural_network import MLPClassifier

    X, y = data
    mlp = MLPClassifier(hidden_layer_sizes=(7, 5), activation=activation, max_iter=30, random_state=0)
    with warnings.catch_warnings():  # 30 iterations may not converge: fine for an equality test
        warnings.simplefilter("ignore")
        mlp.fit(X, y)
    logreg = fitted["logreg"]
    rows = np.vstack([X[:50], X[:1] * 40.0])  # one far-out row saturates the probabilities
    for model in (logreg, mlp):
        assert _is_plain_binary(model)  # the path under test is the one taken
        for batch in (rows, rows[:1]):
            expected = model.predict_proba(batch)[:, 1]
            np.testing.assert_allclose(predict_proba(model, batch), expected, rtol=1e-12)
    np.testing.assert_allclose(predict_logit(logreg, rows), logreg.decision_function(rows), rtol=1e-12)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_xgboost_probabilities_and_margins_are_the_wrappers_to_the_bit(early_stopping: bool) -> None:
    """predict_proba / predict_logit call the booster as XGBClassifier does, minus its per-call
    configuration: the same numbers exactly, missing values and early stopping included."""
    import xgboost as xgb

    X, y = make_classification(n_samples=500, n_features=8, random_state=0)
    X[::9, 2] = np.nan
    params = {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.3, "n_jobs": 1, "random_state": 0}
    if early_stopping:
        model = xgb.XGBClassifier(**params, early_stopping_rounds=3)
        model.fit(X[:350], y[:350], eval_set=[(X[350:], y[350:])], verbose=False)
        assert model.best_iteration < 199
    else:
        model = xgb.XGBClassifier(**params).fit(X, y)
    for rows in (X[:1], X[:77]):
        np.testing.assert_array_equal(predict_proba(model, rows), model.predict_proba(rows)[:, 1])
        np.testing.assert_array_equal(predict_logit(model, rows), model.predict(rows, output_margin=True))
