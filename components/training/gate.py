"""The quality gate: a challenger is deployed only if it is good enough and not worse than the champion.

The champion is re-scored on the challenger's own test split, so both are judged on the same rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from components.registry.uri import open_registry
from components.shared.config import Config
from components.shared.errors import BundleError, DataValidationError, RegistryError
from components.shared.tables import markdown_table

if TYPE_CHECKING:
    import pandas as pd


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
        }


def threshold_check(name: str, value: float, minimum: float) -> Check:
    passed = value >= minimum
    relation = ">=" if passed else "<"
    return Check(name, round(value, 5), minimum, passed, f"{value:.4f} {relation} {minimum}")


def decide(
    evaluation: dict[str, Any], test_frame: pd.DataFrame, config: Config, registry_uri: str
) -> GateResult:
    """All checks are always evaluated and reported, so a failure lists every reason at once."""
    metrics = evaluation["test"]
    checks = [
        threshold_check("test ROC-AUC", metrics["roc_auc"], config.gate.min_roc_auc),
        threshold_check("test F1", metrics["f1"], config.gate.min_f1),
    ]
    champion_check, version, champion_metrics = compare_with_champion(
        metrics, test_frame, config, registry_uri
    )
    checks.append(champion_check)
    return GateResult(
        passed=all(c.passed for c in checks),
        checks=checks,
        champion_version=version,
        champion_metrics=champion_metrics,
        notes=stability_notes(evaluation.get("threshold_stability"), config.gate.min_f1),
    )


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
