"""Compare the tuned families and their blend on out-of-fold predictions, pick the champion, refit.

Every candidate is judged by the same k-fold cross-validation on the development split (train +
what used to be a separate validation split): the mean of its fold ROC-AUCs, ties by the mean fold
PR-AUC, then by simplicity (the families in FAMILIES order, the blend last). One validation split
of 15% holds too few positives on small tables for its AUC noise to be smaller than the gaps
between families; k folds use every development row once as validation.

After the choice every family is refit on all development rows with its tuned params (XGBoost
with the tree count early stopping chose in CV); the blend is rebuilt from the refitted members
with its stacking weights. The test split is never seen here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

from components.model.blend import cross_fitted_logit, fit_stacker
from components.model.families import BLEND, FAMILIES, MODEL_KINDS, BlendModel, fit_model

# Mean fold AUCs closer than this are a tie: well below the fold-to-fold noise of any real table.
TIE_TOLERANCE = 1e-4
# F1 ties within float noise go to the smaller threshold (see best_f1_threshold).
F1_TIE_TOLERANCE = 1e-12


@dataclass
class Candidate:
    """One candidate model: its out-of-fold log-odds, fold scores and (after refit) the model."""

    family: str
    params: dict[str, Any]
    oof_logit: np.ndarray
    fold_roc_auc: list[float]
    fold_pr_auc: list[float]
    model: Any = None
    weights: dict[str, float] = field(default_factory=dict)  # blend only
    intercept: float = 0.0  # blend only

    @property
    def cv_roc_auc(self) -> float:
        return float(np.mean(self.fold_roc_auc))

    @property
    def cv_pr_auc(self) -> float:
        return float(np.mean(self.fold_pr_auc))

    @property
    def oof_proba(self) -> np.ndarray:
        return expit(self.oof_logit)


def _rank(family: str) -> int:
    """Simplicity order for ties: the tuned families as listed, the blend last."""
    return MODEL_KINDS.index(family) if family in MODEL_KINDS else len(MODEL_KINDS)


def check_binary(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y).astype(int).reshape(-1)
    present = set(np.unique(y).tolist())
    if present != {0, 1}:
        raise ValueError(
            f"{what} must contain both classes 0 and 1 to be scored, found only {sorted(present)}"
        )
    return y


def fold_scores(y: np.ndarray, score: np.ndarray, folds: np.ndarray) -> tuple[list[float], list[float]]:
    """ROC-AUC and PR-AUC (average precision) of ``score`` on each fold's rows."""
    roc, pr = [], []
    for k in range(int(folds.max()) + 1):
        rows = folds == k
        roc.append(float(roc_auc_score(y[rows], score[rows])))
        pr.append(float(average_precision_score(y[rows], score[rows])))
    return roc, pr


def family_candidate(
    family: str, params: dict[str, Any], oof_logit: np.ndarray, y: np.ndarray, folds: np.ndarray
) -> Candidate:
    oof = np.asarray(oof_logit, dtype=np.float64).reshape(-1)
    if oof.shape != y.shape or not np.all(np.isfinite(oof)):
        raise ValueError(f"{family}: out-of-fold predictions must be {len(y)} finite values")
    roc, pr = fold_scores(y, oof, folds)
    return Candidate(family, dict(params), oof, roc, pr)


def _stacked(members: list[Candidate], y: np.ndarray, folds: np.ndarray) -> Candidate | None:
    """The stacked blend of exactly ``members``; None unless at least two get a weight."""
    Z = np.column_stack([m.oof_logit for m in members])
    stacker = fit_stacker(Z, y)
    weights = {m.family: float(w) for m, w in zip(members, stacker.weights, strict=True) if w > 0}
    if len(weights) < 2:
        return None
    oof = cross_fitted_logit(Z, y, folds)
    roc, pr = fold_scores(y, oof, folds)
    params = {"intercept": stacker.intercept, "weights": weights}
    return Candidate(BLEND, params, oof, roc, pr, weights=weights, intercept=stacker.intercept)


def blend_candidate(members: list[Candidate], y: np.ndarray, folds: np.ndarray) -> Candidate | None:
    """The stacked blend of ``members``, scored with cross-fitted weights (None for fewer than two).

    Members are then dropped, the smallest weight first, while the blend's mean fold ROC-AUC stays
    within TIE_TOLERANCE of the full blend's: a member that adds nothing still costs prediction and
    (for the MLP's permutation SHAP) most of an explanation's time on the endpoint.
    """
    if len(members) < 2:
        return None
    best = _stacked(members, y, folds)
    if best is None:
        return None
    full_score = best.cv_roc_auc
    kept = [m for m in members if m.family in best.weights]
    while len(kept) > 2:
        weakest = min(kept, key=lambda m: best.weights[m.family])
        smaller = _stacked([m for m in kept if m is not weakest], y, folds)
        if smaller is None or smaller.cv_roc_auc < full_score - TIE_TOLERANCE:
            break
        best, kept = smaller, [m for m in kept if m.family in smaller.weights]
    return best


def select_champion(candidates: list[Candidate]) -> Candidate:
    """Highest mean fold ROC-AUC; within TIE_TOLERANCE by mean fold PR-AUC, then the simplest."""
    if not candidates:
        raise ValueError("no candidates to choose a champion from")
    best_roc = max(c.cv_roc_auc for c in candidates)
    tied = [c for c in candidates if best_roc - c.cv_roc_auc < TIE_TOLERANCE]
    best_pr = max(c.cv_pr_auc for c in tied)
    tied = [c for c in tied if best_pr - c.cv_pr_auc < TIE_TOLERANCE]
    return min(tied, key=lambda c: _rank(c.family))


def refit(candidates: list[Candidate], X: np.ndarray, y: np.ndarray, seed: int) -> None:
    """Fit every family on all development rows; build the blend from the refitted members."""
    fitted = {}
    for candidate in candidates:
        if candidate.family in FAMILIES:
            candidate.model = fit_model(candidate.family, candidate.params, X, y, seed)
            fitted[candidate.family] = candidate.model
    for candidate in candidates:
        if candidate.family == BLEND:
            members = {f: fitted[f] for f in candidate.weights}
            candidate.model = BlendModel(members, candidate.weights, candidate.intercept)


def build_candidates(
    tuned: dict[str, dict[str, Any]], y: np.ndarray, folds: np.ndarray, blend: bool = True
) -> list[Candidate]:
    """Family candidates (FAMILIES order) from ``{family: {"params", "oof_logit"}}``, plus the blend."""
    if not tuned:
        raise ValueError("no tuned family: at least one is needed")
    y = check_binary(y, "y")
    families = [
        family_candidate(f, tuned[f]["params"], tuned[f]["oof_logit"], y, folds)
        for f in sorted(tuned, key=_rank)
    ]
    stacked = blend_candidate(families, y, folds) if blend else None
    return families + ([stacked] if stacked is not None else [])


def collect_tuned(records: list[dict[str, Any]], n_rows: int) -> tuple[dict[str, dict[str, Any]], np.ndarray]:
    """The tune tasks' JSON records as ``{family: {"params", "oof_logit"}}`` plus their common folds.

    Every record must cover the ``n_rows`` development rows with the same folds: otherwise the
    families were not compared on the same data (e.g. a stale cached task), and that is refused.
    """
    if not records:
        raise ValueError("no tuning results: at least one family must be tuned")
    folds = np.asarray(records[0]["folds"], dtype=np.int64)
    tuned = {}
    for record in records:
        family = record["family"]
        if len(record["oof_logit"]) != n_rows or not np.array_equal(record["folds"], folds):
            raise ValueError(
                f"tuning result of {family!r} does not cover the {n_rows} development rows with the "
                "same folds as the other families"
            )
        tuned[family] = {
            "params": record["params"],
            "oof_logit": np.asarray(record["oof_logit"], dtype=float),
        }
    return tuned, folds


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The threshold (predict positive when ``p >= threshold``) that maximises F1, and that F1.

    Candidates are the thresholds of sklearn's ``precision_recall_curve`` (the distinct scores).
    When several thresholds reach the same best F1 (within 1e-12) the smallest one is returned:
    at equal F1 it flags more rows, i.e. favours recall, which suits propensity campaigns where
    a missed responder usually costs more than an extra contact.
    """
    y = check_binary(y, "y")
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
    tied = np.flatnonzero(f1 >= best - F1_TIE_TOLERANCE)
    index = tied[np.argmin(thresholds[tied])]
    return float(thresholds[index]), float(f1[index])


def threshold_stability(y: np.ndarray, p: np.ndarray, folds: np.ndarray, threshold: float) -> dict[str, Any]:
    """How much the max-F1 decision moves between folds: each fold's own best threshold, and the F1
    each fold gets at the chosen (pooled) threshold. A wide F1 range around the gate's minimum means
    the gate's F1 verdict on one test split is close to a coin flip on this data."""
    y = check_binary(y, "y")
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    fold_thresholds, fold_f1 = [], []
    for k in range(int(folds.max()) + 1):
        rows = folds == k
        fold_thresholds.append(best_f1_threshold(y[rows], p[rows])[0])
        fold_f1.append(float(f1_score(y[rows], p[rows] >= threshold, zero_division=0.0)))
    return {
        "threshold": float(threshold),
        "fold_thresholds": fold_thresholds,
        "fold_f1": fold_f1,
        "f1_mean": float(np.mean(fold_f1)),
        "f1_std": float(np.std(fold_f1)),
        "f1_min": float(np.min(fold_f1)),
        "f1_max": float(np.max(fold_f1)),
        "threshold_min": float(np.min(fold_thresholds)),
        "threshold_max": float(np.max(fold_thresholds)),
    }
