"""Refit each tuned family on the whole train split, score it on validation, pick the champion.

Validation (not the CV score from tuning) decides the champion because every family is then
judged on the same held-out rows with its final fit. The decision threshold is chosen on
validation too, so the test split stays untouched for the final evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from components.models import FAMILIES, fit_model, predict_proba

# Scores closer than this are treated as equal, so float noise never decides a tie.
TIE_TOLERANCE = 1e-12


@dataclass
class Candidate:
    """One refitted family with its validation scores and probabilities."""

    family: str
    params: dict[str, Any]
    model: Any
    valid_roc_auc: float
    valid_pr_auc: float  # average precision
    valid_proba: np.ndarray


def _family_rank(family: str) -> tuple[int, str]:
    """Position in FAMILIES (unknown names last, alphabetically): the final, stable tie-break."""
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), family)


def _check_binary(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y).astype(int).reshape(-1)
    present = set(np.unique(y).tolist())
    if present != {0, 1}:
        raise ValueError(
            f"{what} must contain both classes 0 and 1 to be scored, found only {sorted(present)}"
        )
    return y


def fit_candidates(
    best_params: dict[str, dict[str, Any]],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    seed: int,
) -> list[Candidate]:
    """Fit every family in ``best_params`` on the train split; returned in FAMILIES order."""
    if not best_params:
        raise ValueError("best_params is empty: at least one tuned family is needed")
    y_train = _check_binary(y_train, "y_train")
    y_valid = _check_binary(y_valid, "y_valid")
    candidates = []
    for family in sorted(best_params, key=_family_rank):
        params = dict(best_params[family])
        model = fit_model(family, params, X_train, y_train, seed)
        proba = predict_proba(model, X_valid)
        candidates.append(
            Candidate(
                family=family,
                params=params,
                model=model,
                valid_roc_auc=float(roc_auc_score(y_valid, proba)),
                valid_pr_auc=float(average_precision_score(y_valid, proba)),
                valid_proba=proba,
            )
        )
    return candidates


def select_champion(candidates: list[Candidate]) -> Candidate:
    """Highest validation ROC-AUC; ties by PR-AUC, then by FAMILIES order (deterministic).

    Ties use a tolerance rather than a sort key so that AUCs differing only by float noise are
    really treated as equal.
    """
    if not candidates:
        raise ValueError("no candidates to choose a champion from")
    best_roc = max(c.valid_roc_auc for c in candidates)
    tied = [c for c in candidates if best_roc - c.valid_roc_auc < TIE_TOLERANCE]
    best_pr = max(c.valid_pr_auc for c in tied)
    tied = [c for c in tied if best_pr - c.valid_pr_auc < TIE_TOLERANCE]
    return min(tied, key=lambda c: _family_rank(c.family))


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The threshold (predict positive when ``p >= threshold``) that maximises F1, and that F1.

    Candidates are the thresholds of sklearn's ``precision_recall_curve`` (the distinct scores).
    When several thresholds reach the same best F1 (within 1e-12) the smallest one is returned:
    at equal F1 it flags more rows, i.e. favours recall, which suits propensity campaigns where
    a missed responder usually costs more than an extra contact.
    """
    y = _check_binary(y, "y")
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"y and p must have the same length, got {y.shape[0]} and {p.shape[0]}")
    if not np.all(np.isfinite(p)):
        raise ValueError("p contains NaN or infinite probabilities")
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = f1.max()
    tied = np.flatnonzero(f1 >= best - TIE_TOLERANCE)
    index = tied[np.argmin(thresholds[tied])]
    return float(thresholds[index]), float(f1[index])
