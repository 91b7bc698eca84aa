"""Candidate comparison on out-of-fold scores, the blend, the refit and the F1-optimal threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import average_precision_score, roc_auc_score

from components.model.families import BlendModel, predict_logit
from components.training.candidates import (
    Candidate,
    best_f1_threshold,
    build_candidates,
    collect_tuned,
    refit,
    select_champion,
    threshold_stability,
)
from components.training.tune import cross_validate, make_folds


def _candidate(family: str, roc: float, pr: float) -> Candidate:
    return Candidate(family, {}, np.zeros(1), [roc, roc], [pr, pr])


@pytest.fixture(scope="module")
def tuned() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    X, y = make_classification(n_samples=600, n_features=10, n_informative=6, random_state=0)
    folds = make_folds(y, 4, seed=0)
    params = {"logreg": {"C": 1.0}, "xgboost": {"n_estimators": 40, "max_depth": 3}}
    results = {f: cross_validate(f, p, X, y, folds, seed=0) for f, p in params.items()}
    return X, y, folds, {f: {"params": p, "oof_logit": results[f].oof_logit} for f, p in params.items()}


def test_candidates_are_scored_per_fold_on_their_out_of_fold_predictions(tuned):
    _, y, folds, records = tuned
    candidates = build_candidates(records, y, folds)
    assert [c.family for c in candidates] == ["xgboost", "logreg", "blend"]
    for c in candidates:
        assert len(c.fold_roc_auc) == 4
        rows = folds == 2
        assert c.fold_roc_auc[2] == pytest.approx(roc_auc_score(y[rows], c.oof_logit[rows]))
        assert c.fold_pr_auc[2] == pytest.approx(average_precision_score(y[rows], c.oof_logit[rows]))
        assert c.cv_roc_auc == pytest.approx(np.mean(c.fold_roc_auc)) and c.cv_roc_auc > 0.85


def test_blend_weights_are_non_negative_and_its_score_is_cross_fitted(tuned):
    _, y, folds, records = tuned
    blend = build_candidates(records, y, folds)[-1]
    assert set(blend.weights) <= {"xgboost", "logreg"} and all(w > 0 for w in blend.weights.values())
    # cross-fitted: the blend's out-of-fold log-odds differ from the in-sample stacker's
    Z = np.column_stack([records[f]["oof_logit"] for f in ("xgboost", "logreg")])
    in_sample = blend.intercept + Z @ np.array([blend.weights.get(f, 0.0) for f in ("xgboost", "logreg")])
    assert not np.allclose(blend.oof_logit, in_sample)
    assert np.corrcoef(blend.oof_logit, in_sample)[0, 1] > 0.99
    assert build_candidates(records, y, folds, blend=False)[-1].family == "logreg"
    single = {"logreg": records["logreg"]}
    assert [c.family for c in build_candidates(single, y, folds)] == ["logreg"]


def test_refit_fits_every_family_on_all_rows_and_builds_the_blend(tuned):
    X, y, folds, records = tuned
    candidates = build_candidates(records, y, folds)
    refit(candidates, X, y, seed=0)
    by_family = {c.family: c for c in candidates}
    assert by_family["logreg"].model.coef_.shape == (1, 10)
    blend = by_family["blend"].model
    assert isinstance(blend, BlendModel)
    expected = blend.intercept + sum(
        w * predict_logit(by_family[f].model, X[:5]) for f, w in blend.weights.items()
    )
    np.testing.assert_allclose(predict_logit(blend, X[:5]), expected)


def test_collect_tuned_refuses_results_on_other_folds(tuned):
    _, y, folds, records = tuned
    record = {"family": "logreg", "params": {}, "oof_logit": list(records["logreg"]["oof_logit"])}
    got, got_folds = collect_tuned([{**record, "folds": folds.tolist()}], len(y))
    assert list(got) == ["logreg"] and np.array_equal(got_folds, folds)
    other = make_folds(y, 4, seed=1).tolist()
    with pytest.raises(ValueError, match="same folds"):
        collect_tuned(
            [{**record, "folds": folds.tolist()}, {**record, "family": "mlp", "folds": other}], len(y)
        )
    with pytest.raises(ValueError, match="601 development rows"):
        collect_tuned([{**record, "folds": folds.tolist()}], 601)


def test_champion_is_highest_mean_fold_roc_auc():
    cands = [_candidate("xgboost", 0.80, 0.9), _candidate("logreg", 0.85, 0.1), _candidate("mlp", 0.84, 0.9)]
    assert select_champion(cands).family == "logreg"


def test_champion_tie_on_roc_auc_goes_to_pr_auc():
    cands = [
        _candidate("xgboost", 0.85, 0.50),
        _candidate("logreg", 0.85 + 1e-5, 0.40),  # within the tie tolerance
        _candidate("mlp", 0.85, 0.60),
    ]
    assert select_champion(cands).family == "mlp"


def test_champion_full_tie_goes_to_the_simplest_blend_last():
    cands = [_candidate("blend", 0.85, 0.5), _candidate("mlp", 0.85, 0.5), _candidate("logreg", 0.85, 0.5)]
    assert select_champion(cands).family == "logreg"
    assert (
        select_champion([_candidate("blend", 0.86, 0.5), _candidate("logreg", 0.85, 0.5)]).family == "blend"
    )
    with pytest.raises(ValueError, match="no candidates"):
        select_champion([])


def test_threshold_stability_reports_each_folds_threshold_and_f1():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 * y + 0.5 * rng.random(400), 0, 1)
    folds = make_folds(y, 4, seed=0)
    threshold = best_f1_threshold(y, p)[0]
    stability = threshold_stability(y, p, folds, threshold)
    assert len(stability["fold_thresholds"]) == len(stability["fold_f1"]) == 4
    rows = folds == 1
    assert stability["fold_thresholds"][1] == best_f1_threshold(y[rows], p[rows])[0]
    predicted = p[rows] >= threshold
    tp = np.sum(predicted & (y[rows] == 1))
    assert stability["fold_f1"][1] == pytest.approx(2 * tp / (predicted.sum() + y[rows].sum()))
    assert stability["f1_min"] <= stability["f1_mean"] <= stability["f1_max"]


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


def test_a_blend_member_that_adds_nothing_is_dropped(tuned):
    _, y, folds, records = tuned
    rng = np.random.default_rng(1)
    # a third member that is the logreg's log-odds plus tiny noise: no information of its own
    noisy = records["logreg"]["oof_logit"] + 1e-3 * rng.normal(size=len(y))
    with_copy = {**records, "mlp": {"params": {}, "oof_logit": noisy}}
    blend = build_candidates(with_copy, y, folds)[-1]
    assert blend.family == "blend"
    assert len(blend.weights) == 2 and "xgboost" in blend.weights
    full = build_candidates(records, y, folds)[-1]
    assert blend.cv_roc_auc >= full.cv_roc_auc - 1e-4
