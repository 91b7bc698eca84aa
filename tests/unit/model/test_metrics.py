"""Evaluation metrics, checked by hand on a 10-row example and on edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from components.model.metrics import (
    calibration_bins,
    classification_metrics,
    confusion,
    expected_calibration_error,
    lift_at_k,
    precision_at_k,
    roc_points,
    top_k_label,
)

# 4 positives in 10 rows, scores already sorted descending
Y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_metrics_hand_checked() -> None:
    m = classification_metrics(Y, P, threshold=0.5, top_k_fractions=[0.1, 0.2])
    # predicted positive: the top 5 rows -> tp 3 (rows 0, 2, 3), fp 2 (rows 1, 4); fn 1 (row 6); tn 4
    precision, recall = 3 / 5, 3 / 4
    assert m["precision"] == pytest.approx(precision)
    assert m["recall"] == pytest.approx(recall)
    assert m["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert m["accuracy"] == pytest.approx(7 / 10)
    # positive > negative pairs: 6 + 5 + 5 + 3 of 4 * 6
    assert m["roc_auc"] == pytest.approx(19 / 24)
    # P@10%: k = 1 -> row 0 (positive); P@20%: k = 2 -> rows 0, 1 -> 1 of 2; base rate 0.4
    assert m["precision_at_10"] == pytest.approx(1.0)
    assert m["lift_at_10"] == pytest.approx(1.0 / 0.4)
    assert m["precision_at_20"] == pytest.approx(0.5)
    assert m["lift_at_20"] == pytest.approx(0.5 / 0.4)
    assert m["brier"] == pytest.approx(float(np.mean((P - Y) ** 2)))
    assert m["log_loss"] == pytest.approx(sk_log_loss(Y, P))
    assert m["threshold"] == 0.5
    assert (m["rows"], m["positives"], m["positive_rate"]) == (10.0, 4.0, 0.4)
    assert 0.0 < m["pr_auc"] <= 1.0
    assert all(type(v) is float for v in m.values())
    json.dumps(m, allow_nan=False)
    assert confusion(Y, P, 0.5) == [[4, 2], [1, 3]]


def test_metric_keys() -> None:
    m = classification_metrics(Y, P, 0.5, [0.1, 0.2])
    expected = {
        "roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "log_loss", "brier", "ece",
        "threshold", "rows", "positives", "positive_rate",
        "precision_at_10", "lift_at_10", "precision_at_20", "lift_at_20",
    }  # fmt: skip
    assert set(m) == expected
    assert top_k_label(0.125) == "12_5"
    assert top_k_label(1.0) == "100"


def test_threshold_is_inclusive_and_nothing_predicted_gives_zero() -> None:
    assert confusion(Y, P, 0.55) == [[4, 2], [1, 3]]
    m = classification_metrics(Y, P, threshold=1.0, top_k_fractions=[])
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_ece_perfect_vs_overconfident() -> None:
    # perfectly calibrated: p = 0.25 with 1 in 4 positive, p = 0.75 with 3 in 4 positive
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    # over-confident: says 0.95 / 0.05 where the truth is 50/50
    p = np.array([0.95] * 10 + [0.05] * 10)
    y = np.array([1, 0] * 10)
    assert expected_calibration_error(y, p) == pytest.approx(0.45)


def test_ece_by_hand_two_bins() -> None:
    y, p = np.array([0, 1, 1, 1]), np.array([0.1, 0.2, 0.8, 1.0])
    # bin [0, .5): conf .15, acc .5; bin [.5, 1]: conf .9, acc 1 (p == 1 falls in the last bin)
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.1)
    bins = calibration_bins(y, p, n_bins=4)
    assert bins.counts == [2, 0, 0, 2]
    assert bins.mean_predicted[1] is None


def test_precision_at_k_ties_are_stable() -> None:
    p = np.full(10, 0.5)
    y = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    # all tied: the first ceil(0.2 * 10) = 2 rows in original order are taken
    assert precision_at_k(y, p, 0.2) == 0.5
    assert precision_at_k(y[::-1].copy(), p, 0.2) == 0.5
    assert precision_at_k(np.roll(y, -1), p, 0.2) == 1.0
    # 0.3 * 10 is 3.0000000000000004 in floating point: still 3 rows, not 4
    assert precision_at_k(y, p, 0.3) == pytest.approx(2 / 3)
    # a small fraction still takes at least one row
    assert precision_at_k(Y, P, 0.01) == 1.0
    assert lift_at_k(Y, P, 1.0) == pytest.approx(1.0)


def test_undefined_metrics_raise() -> None:
    ones = np.ones(5, dtype=int)
    p = np.linspace(0.1, 0.9, 5)
    with pytest.raises(ValueError, match="undefined"):
        classification_metrics(ones, p, 0.5, [0.1])
    with pytest.raises(ValueError, match="undefined"):
        classification_metrics(1 - ones, p, 0.5, [0.1])
    with pytest.raises(ValueError, match="undefined"):
        roc_points(ones, p)
    with pytest.raises(ValueError, match="lift is undefined"):
        lift_at_k(1 - ones, p, 0.2)
    with pytest.raises(ValueError, match="fraction"):
        precision_at_k(Y, P, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        confusion(Y, P, 1.5)
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]), 0.5, [])
    with pytest.raises(ValueError, match="non-finite"):
        classification_metrics(Y, np.where(P > 0.5, np.nan, P), 0.5, [])
    with pytest.raises(ValueError, match="differ"):
        classification_metrics(Y, P[:-1], 0.5, [])


def test_roc_points_bounded_finite_monotone() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 2000), 0, 1)
    fpr, tpr, thr = roc_points(y, p, max_points=50)
    assert 2 <= len(fpr) == len(tpr) == len(thr) <= 50
    assert all(math.isfinite(v) for v in fpr + tpr + thr)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thr) <= 0)
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, 1.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    # a short curve is returned whole
    fpr, tpr, thr = roc_points(Y, P)
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and thr[0] == 1.0
