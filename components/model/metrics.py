"""Test-set metrics for a binary propensity model: ranking, thresholded, calibration and top-K.

Everything here returns plain Python numbers so results can go straight into JSON, KFP metadata
and the quality gate. A metric that is undefined for the given data (for example ROC-AUC with one
class) raises ``ValueError`` instead of returning NaN: a NaN would silently fail (or pass) the gate
and break JSON serialisation further down the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

_LOG_EPS = 1e-15  # probabilities of exactly 0 or 1 would give an infinite log-loss


def check_binary_inputs(
    y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities once, so every metric can assume clean arrays.

    Returns ``(y, p)`` as an int64 array of 0/1 and a float64 array in [0, 1], both 1-D and of
    the same non-zero length.
    """
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.ndim != 1 or p_arr.ndim != 1:
        raise ValueError(f"labels and probabilities must be 1-D, got shapes {y_arr.shape} and {p_arr.shape}")
    if y_arr.shape[0] != p_arr.shape[0]:
        raise ValueError(f"labels ({y_arr.shape[0]} rows) and probabilities ({p_arr.shape[0]} rows) differ")
    if y_arr.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero rows")
    if not np.all(np.isin(y_arr, (0, 1))):
        bad = sorted({str(v) for v in np.unique(y_arr) if v not in (0, 1)})[:5]
        raise ValueError(f"labels must be 0/1, found {', '.join(bad)}")
    if not np.all(np.isfinite(p_arr)):
        raise ValueError(f"probabilities contain {int(np.sum(~np.isfinite(p_arr)))} non-finite value(s)")
    if p_arr.min() < 0.0 or p_arr.max() > 1.0:
        low, high = p_arr.min(), p_arr.max()
        raise ValueError(f"probabilities must lie in [0, 1], got range [{low:.4g}, {high:.4g}]")
    return y_arr.astype(np.int64), p_arr


def _require_both_classes(y: np.ndarray, metric: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.shape[0]:
        only = 1 if positives else 0
        raise ValueError(
            f"{metric} is undefined: all {y.shape[0]} labels are {only}; "
            "the evaluation split needs both classes"
        )


def _check_fraction(frac: float) -> None:
    if not (isinstance(frac, int | float) and 0.0 < frac <= 1.0):
        raise ValueError(f"top-K fraction must be in (0, 1], got {frac!r}")


def top_k_label(frac: float) -> str:
    """Metric-name suffix for a fraction: 0.1 -> "10", 0.125 -> "12_5" (no dots in metric names)."""
    _check_fraction(frac)
    pct = round(frac * 100.0, 6)
    if pct.is_integer():
        return str(int(pct))
    return f"{pct:g}".replace(".", "_")


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy with probabilities clipped away from 0 and 1 (finite always)."""
    y, p = check_binary_inputs(y, p)
    q = np.clip(p, _LOG_EPS, 1.0 - _LOG_EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probability: rewards calibration and sharpness together."""
    y, p = check_binary_inputs(y, p)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin summary behind ECE and the reliability diagram (empty bins have count 0)."""

    edges: list[float]
    counts: list[int]
    mean_predicted: list[float | None]
    observed_rate: list[float | None]


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> CalibrationBins:
    """Equal-width bins on [0, 1]; p == 1.0 goes into the last bin.

    Equal width (not equal mass) so the bins are the same for every model and the reliability
    diagrams of two runs can be compared directly.
    """
    y, p = check_binary_inputs(y, p)
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    index = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=p, minlength=n_bins)
    sum_y = np.bincount(index, weights=y, minlength=n_bins)
    mean_p: list[float | None] = []
    rate: list[float | None] = []
    for count, sp, sy in zip(counts, sum_p, sum_y, strict=True):
        mean_p.append(float(sp / count) if count else None)
        rate.append(float(sy / count) if count else None)
    edges = [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)]
    return CalibrationBins(edges, [int(c) for c in counts], mean_p, rate)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Weighted mean over equal-width bins of |observed positive rate - mean predicted probability|."""
    bins = calibration_bins(y, p, n_bins)
    total = sum(bins.counts)
    ece = 0.0
    for count, conf, acc in zip(bins.counts, bins.mean_predicted, bins.observed_rate, strict=True):
        if count and conf is not None and acc is not None:
            ece += count / total * abs(acc - conf)
    return float(ece)


def _top_k_count(n: int, frac: float) -> int:
    # round first: 0.3 * 10 is 3.0000000000000004 in floating point and must not become 4
    return min(n, max(1, math.ceil(round(frac * n, 9))))


def precision_at_k(y: np.ndarray, p: np.ndarray, frac: float) -> float:
    """Share of positives among the top ceil(frac * n) rows by score.

    Ties are broken by a stable sort on the descending score, so tied rows are taken in their
    original order and the result does not change from run to run.
    """
    y, p = check_binary_inputs(y, p)
    _check_fraction(frac)
    k = _top_k_count(y.shape[0], frac)
    order = np.argsort(-p, kind="stable")
    return float(y[order[:k]].mean())


def lift_at_k(y: np.ndarray, p: np.ndarray, frac: float) -> float:
    """precision_at_k divided by the base rate: how much better than contacting at random."""
    y, p = check_binary_inputs(y, p)
    base_rate = float(y.mean())
    if base_rate == 0.0:
        raise ValueError(f"lift is undefined: none of the {y.shape[0]} labels is positive")
    return precision_at_k(y, p, frac) / base_rate


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"decision threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> list[list[int]]:
    """[[tn, fp], [fn, tp]] with label = p >= threshold (the KFP confusion-matrix layout)."""
    y, p = check_binary_inputs(y, p)
    predicted = p >= _check_threshold(threshold)
    actual = y == 1
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    tn = int(np.sum(~predicted & ~actual))
    return [[tn, fp], [fn, tp]]


def roc_points(
    y: np.ndarray, p: np.ndarray, max_points: int = 200
) -> tuple[list[float], list[float], list[float]]:
    """(fpr, tpr, thresholds) for KFP's ``log_roc_curve``: at most ``max_points``, all finite.

    sklearn's first threshold is +inf (nothing predicted positive); it becomes 1.0 because the
    metadata store rejects non-finite numbers. Points are kept evenly spaced by index, always
    including the first (0, 0) and the last (1, 1), which keeps the curve's ends exact.
    """
    y, p = check_binary_inputs(y, p)
    _require_both_classes(y, "ROC curve")
    if not isinstance(max_points, int) or max_points < 2:
        raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
    fpr, tpr, thresholds = roc_curve(y, p)
    thresholds = np.clip(thresholds, 0.0, 1.0)
    if fpr.shape[0] > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.shape[0] - 1, max_points)).astype(np.int64))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return [float(v) for v in fpr], [float(v) for v in tpr], [float(v) for v in thresholds]


def classification_metrics(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    top_k_fractions: Sequence[float],
    n_bins: int = 10,
) -> dict[str, float]:
    """All test-set metrics as a flat ``{name: float}`` (JSON- and KFP-metadata-safe).

    Precision, recall and F1 are 0.0 (not an error) when nothing is predicted positive at the
    threshold: that is a real, bad outcome the quality gate must see and reject. ``n_bins`` is
    the ECE bin count (pass the calibration config's so both stages report the same ECE).
    """
    y, p = check_binary_inputs(y, p)
    _require_both_classes(y, "ROC-AUC / PR-AUC")
    threshold = _check_threshold(threshold)
    for frac in top_k_fractions:
        _check_fraction(frac)
    [[tn, fp], [fn, tp]] = confusion(y, p, threshold)
    n = int(y.shape[0])
    positives = int(y.sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    metrics: dict[str, float] = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float((tp + tn) / n),
        "log_loss": log_loss(y, p),
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p, n_bins),
        "threshold": threshold,
        "rows": float(n),
        "positives": float(positives),
        "positive_rate": float(positives / n),
    }
    for frac in top_k_fractions:
        label = top_k_label(frac)
        metrics[f"precision_at_{label}"] = precision_at_k(y, p, frac)
        metrics[f"lift_at_{label}"] = lift_at_k(y, p, frac)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:  # defensive: nothing above should produce these, and NaN must never reach the gate
        raise ValueError(f"non-finite metric(s): {', '.join(bad)}")
    return metrics
