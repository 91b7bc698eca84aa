"""The candidates of a run: the comparison on out-of-fold predictions, the refit models, saved and
scored on test.

Every family is kept (not only the champion) so the evaluation can report each candidate's test
metrics side by side, and so a reviewer can see what the champion won against. The out-of-fold
predictions are saved beside the models (``oof.parquet``) because calibration and the decision
threshold are fitted on them, never on rows a model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.model.calibration import apply_temperature
from components.model.families import load_model, predict_proba, save_model
from components.model.metrics import classification_metrics, confusion, roc_points
from components.shared.artifacts import read_json, write_json
from components.training.candidates import (
    Candidate,
    best_f1_threshold,
    build_candidates,
    refit,
    select_champion,
)

INDEX_FILE = "candidates.json"
OOF_FILE = "oof.parquet"


@dataclass
class SelectionOutcome:
    candidates: list[Candidate]
    champion: str
    thresholds: dict[str, float]  # each candidate's best-F1 threshold on its out-of-fold probabilities
    y: np.ndarray
    folds: np.ndarray

    def summary(self) -> dict[str, dict[str, Any]]:
        return {
            c.family: {
                "params": c.params,
                "cv_roc_auc": c.cv_roc_auc,
                "cv_pr_auc": c.cv_pr_auc,
                "fold_roc_auc": list(c.fold_roc_auc),
                "fold_pr_auc": list(c.fold_pr_auc),
                "threshold": float(self.thresholds[c.family]),
                "champion": c.family == self.champion,
            }
            for c in self.candidates
        }

    def oof_frame(self) -> pd.DataFrame:
        """y, fold and every candidate's out-of-fold log-odds, one row per development row."""
        columns = {"y": self.y.astype(np.int8), "fold": self.folds.astype(np.int16)}
        columns.update({c.family: c.oof_logit for c in self.candidates})
        return pd.DataFrame(columns)


def fit_and_select(
    tuned: dict[str, dict[str, Any]],
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    seed: int,
    blend: bool = True,
) -> SelectionOutcome:
    """Compare the tuned families (and their blend) on out-of-fold scores, then refit them all."""
    y = np.asarray(y).astype(int).reshape(-1)
    folds = np.asarray(folds).astype(int).reshape(-1)
    candidates = build_candidates(tuned, y, folds, blend=blend)
    champion = select_champion(candidates)
    refit(candidates, X, y, seed)
    thresholds = {c.family: best_f1_threshold(y, c.oof_proba)[0] for c in candidates}
    return SelectionOutcome(candidates, champion.family, thresholds, y, folds)


def save_candidates(outcome: SelectionOutcome, directory: str | Path) -> None:
    """One sub-folder per candidate (its own safe format), the out-of-fold table and an index."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for candidate in outcome.candidates:
        save_model(candidate.model, candidate.family, root / candidate.family)
    outcome.oof_frame().to_parquet(root / OOF_FILE, index=False)
    write_json({"champion": outcome.champion, "families": outcome.summary()}, root / INDEX_FILE)


def load_candidates(directory: str | Path) -> dict[str, Any]:
    """The index plus every candidate's model: ``{"champion", "families", "models": {family: model}}``."""
    root = Path(directory)
    index = read_json(root / INDEX_FILE)
    index["models"] = {family: load_model(family, root / family) for family in index["families"]}
    return index


def load_champion(directory: str | Path) -> tuple[str, Any]:
    root = Path(directory)
    champion = read_json(root / INDEX_FILE)["champion"]
    return champion, load_model(champion, root / champion)


def load_oof(directory: str | Path) -> pd.DataFrame:
    """The out-of-fold table written by :func:`save_candidates`."""
    return pd.read_parquet(Path(directory) / OOF_FILE)


def evaluate_candidates(
    candidates: dict[str, Any],
    calibration: dict[str, Any],
    X_test: np.ndarray,
    y_test: np.ndarray,
    top_k_fractions: list[float],
) -> dict[str, Any]:
    """Test metrics of the champion as served (calibrated, served threshold) and of every family.

    The other candidates are scored on their raw probabilities at their own out-of-fold
    threshold: that is how each would have been served had it won.
    """
    champion = candidates["champion"]
    served = apply_temperature(
        predict_proba(candidates["models"][champion], X_test), calibration["temperature"]
    )
    threshold = float(calibration["threshold"])
    families = {}
    for family, model in candidates["models"].items():
        family_threshold = candidates["families"][family]["threshold"]
        families[family] = classification_metrics(
            y_test, predict_proba(model, X_test), family_threshold, top_k_fractions
        )
    fpr, tpr, thresholds = roc_points(y_test, served)
    return {
        "champion": champion,
        "test": classification_metrics(y_test, served, threshold, top_k_fractions),
        "families": families,
        "confusion_matrix": confusion(y_test, served, threshold),
        "roc_curve": [fpr, tpr, thresholds],
        "calibrated": bool(calibration["kept"]),
        "threshold_stability": calibration.get("stability"),
        "cv": {
            family: {k: entry[k] for k in ("cv_roc_auc", "cv_pr_auc", "fold_roc_auc") if k in entry}
            for family, entry in candidates["families"].items()
        },
    }
