"""The quality gate: a challenger is deployed only if it is good enough and not worse than the champion.

The champion is re-scored on the challenger's own test split, so both are judged on the same rows.
After a drift retrain, both are also scored on the newly labelled rows that were held out of
training: there the challenger must be better, since adapting to the drift is what it was trained for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from components.registry.uri import open_registry
from components.shared.config import Config
from components.shared.errors import BundleError, DataValidationError, RegistryError
from components.shared.tables import markdown_table

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from components.model.bundle import ModelBundle

NEW_ROWS_CHECK = "better than champion on the new rows"


@dataclass
class Check:
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: str = ""


@dataclass
class GateResult:
    passed: bool
    checks: list[Check]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # context that decides nothing (threshold spread)
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # challenger vs champion, per data

    @property
    def failed_reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    @property
    def markdown(self) -> str:
        verdict = "PASSED: the model will be deployed" if self.passed else "FAILED: nothing is deployed"
        rows = [
            {
                "check": c.name,
                "value": c.value,
                "threshold": c.threshold,
                "result": "pass" if c.passed else "FAIL",
                "detail": c.detail,
            }
            for c in self.checks
        ]
        text = f"# Quality gate: {verdict}\n\n" + markdown_table(rows)
        if self.comparisons:
            text += "\n\n## Challenger vs champion\n\n" + markdown_table(self.comparisons)
        if self.notes:
            text += "\n\n## Threshold stability\n\n" + "\n".join(f"- {note}" for note in self.notes)
        return text + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
            "failed_reasons": self.failed_reasons,
            "champion_version": self.champion_version,
            "champion_metrics": self.champion_metrics,
            "notes": list(self.notes),
            "comparisons": list(self.comparisons),
        }


def threshold_check(name: str, value: float, minimum: float) -> Check:
    passed = value >= minimum
    relation = ">=" if passed else "<"
    return Check(name, round(value, 5), minimum, passed, f"{value:.4f} {relation} {minimum}")


def decide(
    evaluation: dict[str, Any],
    test_frame: pd.DataFrame,
    config: Config,
    registry_uri: str,
    new_rows: pd.DataFrame | None = None,
    challenger: ModelBundle | None = None,
) -> GateResult:
    """All checks are always evaluated and reported, so a failure lists every reason at once.

    ``new_rows`` (after a drift retrain: the newly labelled rows held out of training) adds the
    comparison where the drift is; ``challenger`` is the packaged bundle that scores them.
    """
    metrics = evaluation["test"]
    checks = [
        threshold_check("test ROC-AUC", metrics["roc_auc"], config.gate.min_roc_auc),
        threshold_check("test F1", metrics["f1"], config.gate.min_f1),
    ]
    champion_check, version, champion_metrics = compare_with_champion(
        metrics, test_frame, config, registry_uri
    )
    checks.append(champion_check)
    comparisons = []
    if version is not None and "roc_auc" in champion_metrics:
        comparisons.append(
            _comparison(
                f"test split ({len(test_frame)} rows)", metrics["roc_auc"], champion_metrics["roc_auc"]
            )
        )
    if new_rows is not None:
        if challenger is None:
            raise ValueError("comparing on the new rows needs the challenger bundle")
        new_check, comparison = compare_on_new_rows(challenger, new_rows, config, registry_uri)
        checks.append(new_check)
        if comparison:
            comparisons.append(comparison)
    return GateResult(
        passed=all(c.passed for c in checks),
        checks=checks,
        champion_version=version,
        champion_metrics=champion_metrics,
        notes=stability_notes(evaluation.get("threshold_stability"), config.gate.min_f1),
        comparisons=comparisons,
    )


def _comparison(data: str, challenger_auc: float, champion_auc: float) -> dict[str, Any]:
    return {
        "data": data,
        "challenger ROC-AUC": round(challenger_auc, 5),
        "champion ROC-AUC": round(champion_auc, 5),
        "difference": round(challenger_auc - champion_auc, 5),
    }


def _roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score  # lazy: ~1-3 s

    return float(roc_auc_score(y, scores))


def held_out_new_rows(
    retrain_context: str, bundle_path: str
) -> tuple[pd.DataFrame | None, ModelBundle | None]:
    """(the new rows a drift retrain held out, the challenger bundle), or (None, None) otherwise."""
    import json

    context = json.loads(retrain_context) if retrain_context else {}
    if not context.get("holdout_uri"):
        return None, None
    from components.data.reading import read_table  # lazy: pandas, only after a drift retrain
    from components.model.bundle import load_bundle

    return read_table(context["holdout_uri"])[0], load_bundle(bundle_path)


def compare_on_new_rows(
    challenger: ModelBundle, new_rows: pd.DataFrame, config: Config, registry_uri: str
) -> tuple[Check, dict[str, Any] | None]:
    """Challenger vs champion on the held-out new rows: the challenger must be better there."""
    target, gain = config.dataset.target, config.gate.min_auc_gain_on_new_rows
    registry = open_registry(registry_uri)
    version = registry.champion(config.registry_model_name)
    if version is None:
        return Check(NEW_ROWS_CHECK, None, None, True, "no champion to compare with"), None
    y = new_rows[target].to_numpy(dtype=int)
    if len(set(y.tolist())) < 2:
        detail = f"the {len(y)} held-out new rows have one outcome only: no ROC-AUC, nothing shows it adapts"
        return Check(NEW_ROWS_CHECK, None, None, False, detail), None
    features = new_rows.drop(columns=[target])
    try:
        champion_auc = _roc_auc(y, registry.load(config.registry_model_name, version).predict(features)[1])
    except (DataValidationError, BundleError, RegistryError) as exc:
        detail = f"champion {version} cannot score the new rows ({exc})"
        return Check(NEW_ROWS_CHECK, None, None, False, detail), None
    challenger_auc = _roc_auc(y, challenger.predict(features)[1])
    floor = champion_auc + gain
    passed = challenger_auc > floor
    relation = ">" if passed else "<="
    detail = (
        f"on {len(y)} newly labelled rows held out of training: challenger ROC-AUC {challenger_auc:.4f} "
        f"{relation} champion {version} {champion_auc:.4f}" + (f" + {gain}" if gain else "")
    )
    comparison = _comparison(f"new labelled rows, held out ({len(y)} rows)", challenger_auc, champion_auc)
    return Check(NEW_ROWS_CHECK, round(challenger_auc, 5), round(floor, 5), passed, detail), comparison


def stability_notes(stability: dict[str, Any] | None, min_f1: float) -> list[str]:
    """What the fold spread of the out-of-fold threshold says about the F1 check."""
    if not stability:
        return []
    folds = len(stability["fold_f1"])
    notes = [
        f"The threshold {stability['threshold']:.4f} maximises F1 on the out-of-fold predictions of the "
        f"development split (the test rows were not used). Each of the {folds} folds alone would have "
        f"chosen {stability['threshold_min']:.4f} to {stability['threshold_max']:.4f}.",
        f"F1 per fold at that threshold: {stability['f1_min']:.4f} to {stability['f1_max']:.4f} "
        f"(mean {stability['f1_mean']:.4f}, std {stability['f1_std']:.4f}).",
    ]
    if stability["f1_min"] < min_f1 <= stability["f1_max"]:
        notes.append(
            f"The gate's minimum F1 ({min_f1}) lies inside that range: on this data whether one test "
            "split passes the F1 check is close to a coin flip."
        )
    return notes


def compare_with_champion(
    metrics: dict[str, float], test_frame: pd.DataFrame, config: Config, registry_uri: str
) -> tuple[Check, str | None, dict[str, float]]:
    name = "not worse than champion"
    if not config.gate.compare_with_champion:
        return (
            Check(name, None, None, True, "comparison switched off (gate.compare_with_champion=false)"),
            None,
            {},
        )
    registry = open_registry(registry_uri)
    model_name = config.registry_model_name
    version = registry.champion(model_name)
    if version is None:
        return (
            Check(name, None, None, True, f"first model of {model_name!r}: no champion to compare with"),
            None,
            {},
        )
    target = config.dataset.target
    try:
        bundle = registry.load(model_name, version)
        _, served = bundle.predict(test_frame.drop(columns=[target]))
    except (DataValidationError, BundleError, RegistryError) as exc:
        detail = (
            f"champion {version} cannot score this test split ({exc}); deploy under a new model_name "
            "or set gate.compare_with_champion=false"
        )
        return Check(name, None, None, False, detail), version, {}
    from sklearn.metrics import roc_auc_score  # lazy: ~1-3 s, needed only when a champion exists

    champion_auc = float(roc_auc_score(test_frame[target].to_numpy(dtype=int), served))
    floor = champion_auc - config.gate.max_auc_drop_vs_champion
    passed = metrics["roc_auc"] >= floor
    relation = ">=" if passed else "<"
    detail = f"challenger ROC-AUC {metrics['roc_auc']:.4f} {relation} champion {version} {champion_auc:.4f}"
    if config.gate.max_auc_drop_vs_champion:
        detail += f" - {config.gate.max_auc_drop_vs_champion}"
    return (
        Check(name, round(metrics["roc_auc"], 5), round(floor, 5), passed, detail),
        version,
        {"roc_auc": champion_auc},
    )
