"""Tuning: grid covers the cartesian product, Optuna is seeded, scores mean what they say."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from components.model.families import make_estimator
from components.shared.config import TuneConfig
from components.shared.errors import DataValidationError
from components.training.tune import family_budget, make_folds, resolve_strategy, tune_family


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)
    return X, y


def _cfg(**kwargs) -> TuneConfig:
    return TuneConfig(cv_folds=3, seed=7, **kwargs)


def test_grid_evaluates_the_cartesian_product(data):
    X, y = data
    grid = {"C": [0.001, 0.1, 10.0], "fit_intercept": [True, False]}
    result = tune_family("logreg", X, y, _cfg(strategy={"logreg": "grid"}, grids={"logreg": grid}))
    trials = result.trials
    assert result.strategy == "grid"
    assert len(trials) == 6
    assert set(zip(trials["C"], trials["fit_intercept"], strict=True)) == set(
        itertools.product(grid["C"], grid["fit_intercept"])
    )
    assert list(trials["trial"]) == list(range(6))
    assert {"mean_roc_auc", "std_roc_auc", "seconds"} <= set(trials.columns)
    best_row = trials.loc[trials["mean_roc_auc"].idxmax()]
    assert result.best_params == {"C": best_row["C"], "fit_intercept": best_row["fit_intercept"]}
    assert result.best_score == pytest.approx(best_row["mean_roc_auc"])


def test_grid_with_list_values_gives_json_params(data):
    X, y = data
    grid = {"hidden_layer_sizes": [[8], [8, 4]], "max_iter": [50]}
    result = tune_family("mlp", X, y, _cfg(strategy={"mlp": "grid"}, grids={"mlp": grid}))
    assert len(result.trials) == 2
    assert set(result.trials["hidden_layer_sizes"]) == {"8", "8-4"}
    assert result.best_params["hidden_layer_sizes"] in ([8], [8, 4])
    assert json.loads(json.dumps(result.best_params)) == result.best_params


def test_optuna_runs_n_trials_and_is_deterministic(data):
    X, y = data
    space = {"C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True}}
    cfg = _cfg(strategy={"logreg": "optuna"}, n_trials={"logreg": 5}, spaces={"logreg": space})
    first = tune_family("logreg", X, y, cfg)
    second = tune_family("logreg", X, y, cfg)
    assert first.strategy == "optuna"
    assert len(first.trials) == 5
    cols = ["trial", "C", "mean_roc_auc", "std_roc_auc"]
    assert first.trials[cols].equals(second.trials[cols])
    assert first.best_params == second.best_params
    best_row = first.trials.loc[first.trials["mean_roc_auc"].idxmax()]
    assert first.best_params == {"C": best_row["C"]}


def test_optuna_categorical_lists_are_decoded(data):
    X, y = data
    space = {
        "hidden_layer_sizes": {"type": "categorical", "choices": [[8], [8, 4]]},
        "max_iter": {"type": "int", "low": 30, "high": 60},
    }
    cfg = _cfg(strategy={"mlp": "optuna"}, n_trials={"mlp": 3}, spaces={"mlp": space})
    result = tune_family("mlp", X, y, cfg)
    assert len(result.trials) == 3
    assert set(result.trials["hidden_layer_sizes"]) <= {"8", "8-4"}
    assert result.best_params["hidden_layer_sizes"] in ([8], [8, 4])
    assert isinstance(result.best_params["max_iter"], int)
    assert json.loads(json.dumps(result.best_params)) == result.best_params


def test_budget_stops_early_but_keeps_a_trial(data):
    X, y = data
    space = {"C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True}}
    cfg = _cfg(strategy={"logreg": "optuna"}, n_trials={"logreg": 50}, spaces={"logreg": space})
    result = tune_family("logreg", X, y, cfg, budget_seconds=1e-9)
    assert len(result.trials) == 1  # the budget is spent before the first trial ends: one is still run
    assert result.stopped_by_budget and "time budget" in result.notes[0]
    grid = _cfg(strategy={"logreg": "grid"}, grids={"logreg": {"C": [0.1, 1.0, 10.0]}})
    assert len(tune_family("logreg", X, y, grid, budget_seconds=1e-9).trials) == 1
    assert len(tune_family("logreg", X, y, grid, budget_seconds=None).trials) == 3


def test_family_budget_shares_the_total_between_the_run_families():
    cfg = TuneConfig(time_budget_seconds=100.0, budget_share={"xgboost": 3.0, "logreg": 1.0, "mlp": 1.0})
    assert family_budget(cfg, "xgboost", ["xgboost", "logreg"]) == pytest.approx(75.0)
    assert family_budget(cfg, "logreg", ["xgboost", "logreg", "mlp"]) == pytest.approx(20.0)
    assert family_budget(TuneConfig(time_budget_seconds=None), "logreg", ["logreg"]) is None


def test_out_of_fold_predictions_come_from_models_that_did_not_see_the_row(data):
    X, y = data
    cfg = _cfg(strategy={"logreg": "grid"}, grids={"logreg": {"C": [1.0]}})
    result = tune_family("logreg", X, y, cfg)
    assert np.array_equal(result.folds, make_folds(y, 3, seed=7))
    rows = result.folds == 0
    model = make_estimator("logreg", {"C": 1.0}, seed=7).fit(X[~rows], y[~rows])
    np.testing.assert_allclose(result.oof_logit[rows], model.decision_function(X[rows]), rtol=1e-6)
    assert result.fold_scores[0] == pytest.approx(roc_auc_score(y[rows], result.oof_logit[rows]))
    assert {"fold_1_roc_auc", "fold_2_roc_auc", "fold_3_roc_auc"} <= set(result.trials.columns)


def test_folds_are_stratified_and_a_function_of_labels_and_seed(data):
    _, y = data
    folds = make_folds(y, 5, seed=3)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    for k in range(5):
        assert abs(y[folds == k].mean() - y.mean()) < 0.03
    assert np.array_equal(folds, make_folds(y, 5, seed=3))
    assert not np.array_equal(folds, make_folds(y, 5, seed=4))


def test_xgboost_optuna_early_stops_at_one_tree_count_for_all_folds(data):
    X, y = data
    cfg = _cfg(n_trials={"xgboost": 2}, max_estimators=400, early_stopping_rounds=10)
    result = tune_family("xgboost", X, y, cfg, marketing=False)
    assert result.strategy == "optuna"
    n_trees = result.best_params["n_estimators"]
    assert 1 <= n_trees < 400  # stopped early, and the refit uses the count CV chose
    first = result.trials.iloc[0]
    assert first["learning_rate"] == 0.3 and first["max_depth"] == 6  # XGBoost defaults tried first
    rows = result.folds == 1
    model = make_estimator("xgboost", result.best_params, seed=7).fit(X[~rows], y[~rows])
    np.testing.assert_allclose(
        result.oof_logit[rows], model.predict(X[rows], output_margin=True), rtol=1e-5, atol=1e-5
    )


def test_auto_strategy_uses_the_known_good_grid_only_on_the_marketing_table():
    cfg = TuneConfig()
    assert resolve_strategy("xgboost", cfg, marketing=True) == "grid"
    assert resolve_strategy("xgboost", cfg, marketing=False) == "optuna"
    assert resolve_strategy("logreg", cfg, marketing=True) == "optuna"


def test_scores_high_on_learnable_and_chance_on_shuffled_labels(data):
    X, y = data
    cfg = _cfg(strategy={"logreg": "grid"}, grids={"logreg": {"C": [1.0]}})
    assert tune_family("logreg", X, y, cfg).best_score > 0.8
    shuffled = np.random.default_rng(0).permutation(y)
    assert abs(tune_family("logreg", X, shuffled, cfg).best_score - 0.5) < 0.1


def test_xgboost_grid_runs(data):
    X, y = data
    grid = {"n_estimators": [20], "max_depth": [2, 3]}
    result = tune_family("xgboost", X, y, _cfg(strategy={"xgboost": "grid"}, grids={"xgboost": grid}))
    assert len(result.trials) == 2
    assert result.best_params["n_estimators"] == 20  # the grid's own count: no early stopping
    assert result.best_score > 0.8


def test_a_tree_count_grid_scores_exactly_as_separate_fits(data):
    """n_estimators points share one fit per fold (the longest): same fold scores and OOF log-odds
    as fitting each count on its own, with sampling on (subsample, colsample_bytree)."""
    from components.training import tune as T
    X, y = data
    grid = {"n_estimators": [15, 30, 40], "max_depth": [2, 3], "subsample": [0.8], "colsample_bytree": [0.7]}
    shared = tune_family("xgboost", X, y, _cfg(strategy={"xgboost": "grid"}, grids={"xgboost": grid}))
    folds = make_folds(np.asarray(y), 3, 7)
    for index, row in shared.trials.iterrows():
        params = {k: row[k] for k in grid}
        params = {k: (int(v) if k in {"n_estimators", "max_depth"} else float(v)) for k, v in params.items()}
        alone = T.cross_validate("xgboost", params, np.asarray(X, dtype=np.float64), np.asarray(y), folds, 7)
        scores = [row[f"fold_{k + 1}_roc_auc"] for k in range(3)]
        assert scores == pytest.approx(alone.fold_scores, abs=1e-12), index
        if params == {**shared.best_params}:
            np.testing.assert_allclose(shared.oof_logit, alone.oof_logit, rtol=1e-6, atol=1e-6)
    assert len(shared.trials) == 6


def test_errors_name_the_problem(data):
    X, y = data
    with pytest.raises(ValueError, match="'svm'"):
        tune_family("svm", X, y, _cfg())
    with pytest.raises(ValueError, match="'random'"):
        tune_family("logreg", X, y, _cfg(strategy={"logreg": "random"}))
    with pytest.raises(ValueError, match="unknown parameter"):
        tune_family("logreg", X, y, _cfg(strategy={"logreg": "grid"}, grids={"logreg": {"Cc": [1.0]}}))
    y_rare = np.zeros_like(y)
    y_rare[:2] = 1
    with pytest.raises(DataValidationError, match="at least 3 rows of each class"):
        tune_family("logreg", X, y_rare, _cfg())
