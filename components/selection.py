"""The fitted candidates of every family: choosing the champion, saving them, scoring them on test.

Every family is kept (not only the champion) so the evaluation can report each family's test
metrics side by side, and so a reviewer can see what the champion won against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.artifacts import read_json, write_json
from components.calibrate import apply_temperature
from components.evaluate import classification_metrics, confusion, roc_points
from components.models import load_model, predict_proba, save_model
from components.train import Candidate, best_f1_threshold, fit_candidates, select_champion

INDEX_FILE = "candidates.json"


@dataclass
class SelectionOutcome:
    candidates: list[Candidate]
    champion: str
    thresholds: dict[str, float]  # each family's best-F1 threshold on its raw validation scores

    def summary(self) -> dict[str, dict[str, Any]]:
        return {
            c.family: {
                "params": c.params,
                "roc_auc": float(c.valid_roc_auc),
                "pr_auc": float(c.valid_pr_auc),
                "threshold": float(self.thresholds[c.family]),
                "champion": c.family == self.champion,
            }
            for c in self.candidates
        }


def fit_and_select(
    best_params: dict[str, dict],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    seed: int,
) -> SelectionOutcome:
    """Refit each family on the training split and pick the champion on validation."""
    candidates = fit_candidates(best_params, X_train, y_train, X_valid, y_valid, seed)
    champion = select_champion(candidates)
    thresholds = {c.family: best_f1_threshold(y_valid, c.valid_proba)[0] for c in candidates}
    return SelectionOutcome(candidates=candidates, champion=champion.family, thresholds=thresholds)


def save_candidates(outcome: SelectionOutcome, directory: str | Path) -> None:
    """One sub-folder per family (its own safe format) plus an index naming the champion."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for candidate in outcome.candidates:
        save_model(candidate.model, candidate.family, root / candidate.family)
    write_json({"champion": outcome.champion, "families": outcome.summary()}, root / INDEX_FILE)


def load_candidates(directory: str | Path) -> dict[str, Any]:
    """The index plus every family's model: ``{"champion", "families", "models": {family: model}}``."""
    root = Path(directory)
    index = read_json(root / INDEX_FILE)
    index["models"] = {family: load_model(family, root / family) for family in index["families"]}
    return index


def load_champion(directory: str | Path) -> tuple[str, Any]:
    root = Path(directory)
    champion = read_json(root / INDEX_FILE)["champion"]
    return champion, load_model(champion, root / champion)


def evaluate_candidates(
    candidates: dict[str, Any],
    calibration: dict[str, Any],
    X_test: np.ndarray,
    y_test: np.ndarray,
    top_k_fractions: list[float],
) -> dict[str, Any]:
    """Test metrics of the champion as served (calibrated, served threshold) and of every family.

    The other families are scored on their raw probabilities at their own validation threshold:
    that is how each would have been served had it won.
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
    }
