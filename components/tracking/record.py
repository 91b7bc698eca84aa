"""What a tracked run holds, built from a run's summary: params, metrics, tags and report files.

Plain dictionaries in, one :class:`TrackedRun` out, the same for every backend (MLflow locally,
Vertex AI Experiments in the cloud), so what a user compares does not depend on where a run ran.
Names are dotted paths (``test.roc_auc``, ``family.xgboost.cv_roc_auc``, ``gate.min_f1``) that both
backends accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from components.shared.config import Config

FINISHED = "FINISHED"
FAILED = "FAILED"
TRAINING = "training"
PREDICTION = "prediction"
# Runners whose launcher (pipelines.runs) tracks a failed run itself; elsewhere the exit task does:
# the local runner's ones (pipelines.containers.RUNNERS) and the pipeline parameter's default.
LAUNCHER_TRACKED_RUNNERS = ("subprocess", "docker", "local")
# Run names as `propensity run` makes them (pipelines.runs.new_run_name): the run's start, in UTC.
RUN_NAME_TIME = "run-%Y%m%d-%H%M%S-%f"
# Metric names `propensity runs` shows and `runs compare` starts with.
HEADLINE_METRICS = ("test.roc_auc", "test.pr_auc", "test.f1", "test.precision", "test.recall", "test.brier")


@dataclass(frozen=True)
class RunContext:
    """What the caller knows about the run that its summary does not say."""

    run_name: str
    code_version: str = "unknown"
    runner: str = "local"  # local | docker | kfp | vertex
    data_uri: str = ""


@dataclass
class TrackedRun:
    """One run, ready for any backend. ``artifacts``: file name in the run -> local path or URI."""

    name: str
    experiment: str
    pipeline: str  # training | prediction
    status: str = FINISHED
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    start_time_ms: int | None = None  # when the run started (None: when it is logged)


def started_at(run_name: str) -> int | None:
    """The start of a run named by ``RUN_NAME_TIME`` in epoch milliseconds (None for other names)."""
    try:
        return int(datetime.strptime(run_name, RUN_NAME_TIME).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists of scalars joined with commas, None dropped."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            if all(isinstance(v, str | int | float | bool) for v in value):
                out[name] = ",".join(map(str, value))
        elif value is not None:
            out[name] = value
    return out


def numbers(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of ``values`` as metrics (booleans as 0/1; text dropped)."""
    out: dict[str, float] = {}
    for name, value in flatten(values, prefix).items():
        if isinstance(value, int | float) and value == value:  # bools too (0/1); NaN is not a metric
            out[name] = float(value)
    return out


def config_params(config: Config) -> dict[str, str]:
    """The settings that change what a training run makes (not every search-space detail)."""
    tune, gate, split = config.tune, config.gate, config.split
    families = list(tune.families)
    params: dict[str, Any] = {
        "model_name": config.registry_model_name,
        "dataset.name": config.dataset.name,
        "dataset.target": config.dataset.target,
        "split.test_size": split.test_size,
        "split.seed": split.seed,
        "tune.families": ",".join(families),
        "tune.cv_folds": tune.cv_folds,
        "tune.time_budget_seconds": tune.time_budget_seconds,
        "tune.blend": tune.blend,
        "tune.seed": tune.seed,
        "features.derived": config.features.derived,
        "calibration.enabled": config.calibration.enabled,
        "gate.min_roc_auc": gate.min_roc_auc,
        "gate.min_f1": gate.min_f1,
        "gate.max_auc_drop_vs_champion": gate.max_auc_drop_vs_champion,
        "gate.compare_with_champion": gate.compare_with_champion,
    }
    for family in families:
        params[f"tune.strategy.{family}"] = tune.strategy.get(family, "auto")
        params[f"tune.n_trials.{family}"] = tune.n_trials.get(family)
        params[f"tune.budget_share.{family}"] = tune.budget_share.get(family)
    return {name: _text(value) for name, value in params.items() if value is not None}


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def base_tags(context: RunContext, pipeline: str) -> dict[str, str]:
    tags = {
        "run_name": context.run_name,
        "pipeline": pipeline,
        "code_version": context.code_version,
        "runner": context.runner,
    }
    if context.data_uri:
        tags["data_uri"] = context.data_uri
    return tags


def training_run(
    summary: dict[str, Any], config: Config, context: RunContext, reports: dict[str, str]
) -> TrackedRun:
    """A finished training run from its pipeline_summary.json document and its report files."""
    metrics_section = summary["metrics"]
    test_rows = sum(map(sum, metrics_section.get("confusion_matrix") or []))
    rows = int(summary.get("dataset", {}).get("rows") or 0)
    params = config_params(config)
    params.update({"data.rows": str(rows), "data.test_rows": str(test_rows)})
    params["data.development_rows"] = str(rows - test_rows)

    metrics = numbers(metrics_section["test"], "test.")
    metrics.update(numbers(metrics_section.get("families", {}), "family."))
    for family, scores in metrics_section.get("cv", {}).items():
        metrics.update(numbers(scores, f"family.{family}."))  # validation: out-of-fold on development
    metrics.update(numbers(metrics_section.get("threshold_stability") or {}, "threshold_stability."))
    for family, meta in summary.get("tuning", {}).items():
        metrics.update(numbers({k: meta.get(k) for k in ("trials", "budget_seconds")}, f"tuning.{family}."))
    metrics.update(_calibration_metrics(summary.get("calibration", {})))
    gate = summary["gate"]
    metrics["gate.passed"] = float(bool(gate["passed"]))
    for check in gate.get("checks", []):
        key = "gate." + _slug(check["name"])
        metrics[f"{key}.passed"] = float(bool(check["passed"]))
        if isinstance(check.get("value"), int | float):
            metrics[f"{key}.value"] = float(check["value"])
    metrics.update(numbers(summary.get("stage_seconds", {}), "stage_seconds."))
    dataset = {k: v for k, v in summary.get("dataset", {}).items() if k != "stage_seconds"}
    metrics.update(numbers(dataset, "data."))

    deployment = summary.get("deployment", {})
    tags = base_tags(context, TRAINING)
    tags.update(
        {
            "champion": str(summary["champion"]),
            "gate": "passed" if gate["passed"] else "failed",
            "deployed": _text(bool(deployment.get("deployed"))),
        }
    )
    if summary.get("data_fingerprint"):
        tags["data_fingerprint"] = str(summary["data_fingerprint"])
    if deployment.get("deployed") and deployment.get("version"):
        tags["registry_version"] = str(deployment["version"])
        tags["registry_model"] = str(deployment.get("model_name", config.registry_model_name))
    elif deployment.get("reasons"):  # e.g. the model is the champion's, byte for byte
        tags["not_deployed"] = "; ".join(deployment["reasons"])[:5000]
    if gate.get("reasons"):
        tags["gate_reasons"] = "; ".join(gate["reasons"])[:5000]
    return TrackedRun(
        name=context.run_name,
        experiment=config.experiment_name,
        pipeline=TRAINING,
        params=params,
        metrics=metrics,
        tags=tags,
        artifacts=dict(reports),
        start_time_ms=started_at(context.run_name),
    )


def _calibration_metrics(calibration: dict[str, Any]) -> dict[str, float]:
    """Log-loss, Brier and ECE before and after temperature scaling, and the temperature."""
    out = numbers(
        {k: calibration.get(k) for k in ("temperature", "fitted_temperature", "kept", "threshold", "oof_f1")},
        "calibration.",
    )
    out.update(numbers(calibration.get("before") or {}, "calibration.before."))
    out.update(numbers(calibration.get("after") or {}, "calibration.after."))
    return out


def prediction_run(
    summary: dict[str, Any], config: Config, context: RunContext, reports: dict[str, str]
) -> TrackedRun:
    """A finished batch-prediction run: rows scored, campaign value, drift share, retrain decision."""
    scoring, drift, retrain = summary["scoring"], summary["drift"], summary["retrain"]
    model = summary.get("model", {})
    metrics = numbers(
        {k: scoring.get(k) for k in ("rows", "positive_labels", "positive_rate", "labelled_rows")},
        "scoring.",
    )
    metrics.update(
        numbers({k: scoring.get(k) for k in ("mean_calibrated_probability", "rows_per_second")}, "scoring.")
    )
    drift_keys = ("share", "threshold", "drifted", "drifted_count", "column_count", "score_psi")
    metrics.update(numbers({k: drift.get(k) for k in drift_keys}, "drift."))
    metrics["retrain.triggered"] = float(bool(retrain["triggered"]))
    business = summary.get("business", {})
    metrics.update(numbers({k: business.get(k) for k in ("best", "everyone")}, "business."))
    metrics.update(numbers(summary.get("stage_seconds", {}), "stage_seconds."))
    params = {
        "model_name": str(model.get("model_name", config.registry_model_name)),
        "model_version": str(model.get("version", "")),
        "monitoring.drift_threshold": _text(config.monitoring.drift_threshold),
        "monitoring.contact_cost": _text(config.monitoring.contact_cost),
        "monitoring.revenue_per_conversion": _text(config.monitoring.revenue_per_conversion),
    }
    tags = base_tags(context, PREDICTION)
    tags.update(
        {
            "model_version": str(model.get("version", "")),
            "retrain": "triggered" if retrain["triggered"] else "not needed",
            "retrain_reason": str(retrain.get("reason", ""))[:5000],
            "drift_reason": str(drift.get("reason", ""))[:5000],
        }
    )
    return TrackedRun(
        name=context.run_name,
        experiment=config.experiment_name,
        pipeline=PREDICTION,
        params=params,
        metrics=metrics,
        tags=tags,
        artifacts=dict(reports),
        start_time_ms=started_at(context.run_name),
    )


def failed_run(
    pipeline: str,
    config: Config,
    context: RunContext,
    stage: str | None,
    error: str,
    job: str = "",
) -> TrackedRun:
    """A run that stopped: its settings, the stage that failed and the error, status FAILED
    (``job``: the pipeline job's resource name, when the orchestrator gives one)."""
    tags = base_tags(context, pipeline)
    tags.update({"failed_stage": stage or "unknown", "error": error[:5000]})
    if job:
        tags["pipeline_job"] = job
    return TrackedRun(
        name=context.run_name,
        experiment=config.experiment_name,
        pipeline=pipeline,
        status=FAILED,
        params=config_params(config) if pipeline == TRAINING else {"model_name": config.registry_model_name},
        tags=tags,
        start_time_ms=started_at(context.run_name),
    )


# Vertex AI Pipelines' final-status message names the tasks that failed, e.g. "The DAG failed because
# some tasks failed. The failed tasks are: [train]."
_FAILED_TASKS = re.compile(r"failed tasks are:\s*\[([^\]]*)\]", re.IGNORECASE)


def failure_from_status(
    state: str, error_message: str | None, error_code: int | None = None
) -> tuple[str, str]:
    """(stage, error) of a pipeline that ended in ``state``, from its final status: the failed task(s)
    the orchestrator's message names ("unknown" when it names none), and its message."""
    named = _FAILED_TASKS.search(error_message or "")
    tasks = [t.strip().strip("'\"") for t in named.group(1).split(",")] if named else []
    stage = ",".join(t for t in tasks if t) or "unknown"
    code = f" (code {error_code})" if error_code else ""
    return stage, f"pipeline {state.lower()}{code}: {error_message or 'no message from the orchestrator'}"


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
