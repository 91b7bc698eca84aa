"""The run summary (pipeline_summary.json): what a CI job or a reviewer reads first."""

from __future__ import annotations

from typing import Any


def build_summary(
    stage_seconds: dict[str, float | None],
    artifact_uris: dict[str, str],
    tuning: dict[str, dict[str, Any]],
    evaluation: dict[str, Any],
    calibration: dict[str, Any],
    importance: dict[str, Any],
    decision: dict[str, Any],
    deployment: dict[str, Any],
    dataset: dict[str, Any],
) -> dict[str, Any]:
    """One JSON document with every metric, the gate decision and reasons, and where things are."""
    top_features = list(importance.get("importance_raw", {}).items())[:10]
    return {
        "dataset": dataset,
        "champion": evaluation["champion"],
        "metrics": {
            "test": evaluation["test"],
            "families": evaluation["families"],
            "cv": evaluation.get("cv", {}),
            "threshold_stability": evaluation.get("threshold_stability"),
            "confusion_matrix": evaluation["confusion_matrix"],
        },
        "tuning": {
            family: {k: v for k, v in meta.items() if k != "stage_seconds"} for family, meta in tuning.items()
        },
        "calibration": calibration,
        "top_features": dict(top_features),
        "gate": {
            "passed": decision["passed"],
            "checks": decision["checks"],
            "reasons": decision["failed_reasons"],
            "champion_version": decision.get("champion_version"),
            "comparisons": decision.get("comparisons", []),
        },
        "deployment": deployment,
        "artifacts": artifact_uris,
        "stage_seconds": stage_seconds,
    }
