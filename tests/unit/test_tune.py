"""Tuning: grid covers the cartesian product, Optuna is seeded, scores mean what they say."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.datasets import make_classification

from components.config import TuneConfig
from components.errors import DataValidationError
from components.tune import tune_family


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


def test_timeout_stops_early_but_keeps_a_trial(data):
    X, y = data
    space = {"C": {"type": "float", "low": 1e-3, "high": 10.0, "log": True}}
    cfg = _cfg(
        strategy={"logreg": "optuna"}, n_trials={"logreg": 50}, spaces={"logreg": space}, timeout_seconds=1e-9
    )
    result = tune_family("logreg", X, y, cfg)
    assert len(result.trials) == 1  # the timeout is hit before the first trial: one is still run


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
    assert result.best_score > 0.8


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
