"""What a batch run reports: the scoring summary in Markdown, the pinned model, prediction_summary.json."""

from __future__ import annotations

from typing import Any

from components.batch.champion import Champion
from components.batch.scoring import ScoringRun, describe_scores
from components.shared.report import markdown_table


def scoring_markdown(run: ScoringRun) -> str:
    facts = describe_scores(run.predictions)
    rows = [{"step": k, "seconds": v} for k, v in run.seconds.items()]
    lines = [
        "# Batch scoring",
        "",
        f"- Batch: {run.batch.source} ({len(run.batch.sources)} file(s))",
        f"- Model: {run.champion.model_name} {run.champion.version} ({run.champion.bundle.family}), "
        f"threshold {run.champion.bundle.threshold:.4f}",
        f"- Rows scored: {facts['rows']}; predicted positive: {facts['positive_labels']} "
        f"({facts['positive_rate']:.2%}); mean calibrated probability "
        f"{facts['mean_calibrated_probability']:.4f}",
        f"- Labelled rows: {run.batch.labelled_rows}",
        f"- Throughput: {run.rows_per_second:,.0f} rows/s (read to written, prediction log excluded)",
        f"- Predictions: {', '.join(run.paths.values())}",
        f"- Prediction log part: {run.log_path or 'not written (no log configured)'}",
        "",
        "## Steps",
        markdown_table(rows),
    ]
    if run.batch.notes:
        lines += ["## Notes", *[f"- {note}" for note in run.batch.notes]]
    return "\n".join(lines) + "\n"


def model_record(champion: Champion) -> dict[str, Any]:
    """The pinned model, handed to the later steps (they load this exact version)."""
    bundle = champion.bundle
    return {
        "model_name": champion.model_name,
        "version": champion.version,
        "path": str(champion.path),
        "family": bundle.family,
        "threshold": float(bundle.threshold),
        "temperature": float(bundle.temperature),
        "created_at": bundle.created_at,
        "target": (bundle.input_schema or {}).get("target"),
    }


def build_prediction_summary(
    scoring: dict[str, Any],
    model: dict[str, Any],
    business: dict[str, Any],
    drift: dict[str, Any],
    artifact_uris: dict[str, str],
    stage_seconds: dict[str, float | None],
    run_root: str,
    plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """prediction_summary.json: scores, campaign value, drift, the retraining decision, alerts.

    ``plan`` is the retraining decision (``monitoring.retraining.RetrainPlan.to_dict``): drift alone
    does not retrain, new labelled rows must be there too; when drift is detected and nothing is
    trained, its reason is an alert.
    """
    plan = plan or {"retrain": bool(drift["drifted"]), "reason": drift["reason"], "alert": None}
    retrain = {
        "triggered": bool(plan["retrain"]),
        "drift_detected": bool(drift["drifted"]),
        "reason": plan["reason"],
        "decision": plan,
        "training_summary": (
            f"the nested training pipeline's pipeline_summary output in this run (locally: {run_root}/"
            "summarize*/pipeline_summary); its gate decides whether the new model is deployed"
            if plan["retrain"]
            else None
        ),
    }
    return {
        "model": model,
        "scoring": _integral_floats_as_ints(scoring),
        "business": business,
        "drift": {k: v for k, v in drift.items() if k != "columns"},
        "drift_columns": drift.get("columns", []),
        "retrain": retrain,
        "alerts": [plan["alert"]] if plan.get("alert") else [],
        "artifacts": artifact_uris,
        "stage_seconds": stage_seconds,
    }


def _integral_floats_as_ints(data: dict[str, Any]) -> dict[str, Any]:
    """KFP metadata hands ints back as floats (2000 -> 2000.0); counts read better as ints again."""
    return {
        k: int(v) if isinstance(v, float) and v.is_integer() and k != "stage_seconds" else v
        for k, v in data.items()
    }
