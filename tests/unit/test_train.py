"""Refit, champion selection and the F1-optimal threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import average_precision_score, roc_auc_score

from components.train import Candidate, best_f1_threshold, fit_candidates, select_champion


def _candidate(family: str, roc: float, pr: float) -> Candidate:
    return Candidate(family, {}, None, roc, pr, np.zeros(1))


def test_fit_candidates_refits_each_family_and_scores_on_valid():
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)
    X_train, y_train, X_valid, y_valid = X[:200], y[:200], X[200:], y[200:]
    best = {"logreg": {"C": 1.0}, "xgboost": {"n_estimators": 20, "max_depth": 3}}
    candidates = fit_candidates(best, X_train, y_train, X_valid, y_valid, seed=0)
    assert [c.family for c in candidates] == ["xgboost", "logreg"]  # FAMILIES order
    for c in candidates:
        assert c.valid_proba.shape == (100,)
        assert c.valid_roc_auc == pytest.approx(roc_auc_score(y_valid, c.valid_proba))
        assert c.valid_pr_auc == pytest.approx(average_precision_score(y_valid, c.valid_proba))
        assert c.valid_roc_auc > 0.8
    assert candidates[1].params == {"C": 1.0}


def test_fit_candidates_needs_both_classes_in_valid():
    X, y = make_classification(n_samples=100, n_features=4, random_state=0)
    with pytest.raises(ValueError, match="y_valid must contain both classes"):
        fit_candidates({"logreg": {}}, X, y, X[:5], np.zeros(5, dtype=int), seed=0)


def test_champion_is_highest_roc_auc():
    cands = [_candidate("xgboost", 0.80, 0.9), _candidate("logreg", 0.85, 0.1), _candidate("mlp", 0.84, 0.9)]
    assert select_champion(cands).family == "logreg"


def test_champion_tie_on_roc_auc_goes_to_pr_auc():
    cands = [
        _candidate("xgboost", 0.85, 0.50),
        _candidate("logreg", 0.85 + 1e-13, 0.40),
        _candidate("mlp", 0.85, 0.60),
    ]
    assert select_champion(cands).family == "mlp"


def test_champion_full_tie_goes_to_family_order():
    cands = [_candidate("mlp", 0.85, 0.5), _candidate("logreg", 0.85, 0.5)]
    assert select_champion(cands).family == "logreg"
    with pytest.raises(ValueError, match="no candidates"):
        select_champion([])


def test_best_f1_threshold_hand_example():
    # Sorted by score: 0.9(+) 0.8(+) 0.7(-) 0.4(-) 0.35(+) 0.1(-), 3 positives; F1 = 2tp/(2tp+fp+fn):
    # t=0.9: 2/4=0.5  t=0.8: 4/5=0.8  t=0.7: 4/6  t=0.4: 4/7  t=0.35: 6/8=0.75  -> best t=0.8, F1=0.8
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])
    threshold, f1 = best_f1_threshold(y, p)
    assert threshold == 0.8
    assert f1 == pytest.approx(0.8)


def test_best_f1_threshold_tie_takes_smallest_threshold():
    # 0.9(+) 0.8(-) 0.7(-) 0.6(+): t=0.9 gives 2/3, t=0.8 2/4, t=0.7 2/5, t=0.6 4/6=2/3 -> tie, take 0.6
    threshold, f1 = best_f1_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6]))
    assert threshold == 0.6
    assert f1 == pytest.approx(2 / 3)


def test_best_f1_threshold_degenerate_inputs():
    with pytest.raises(ValueError, match="both classes"):
        best_f1_threshold(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match="same length"):
        best_f1_threshold(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        best_f1_threshold(np.array([0, 1]), np.array([0.1, np.nan]))
