"""KFP component shells of the prediction pipeline: one thin function per step.

Same rules as ``shells.training``: each shell reads its typed inputs, calls the stage logic in
``components.batch`` and ``components.monitoring``, and writes its outputs and metadata; every import
is inside the body because KFP ships the function's source alone. ``build_prediction_ops(image)``
wraps them for one pipeline image, chosen at compile time.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output


def score_batch(
    batch_uri: str,
    batch_take: str,
    registry_uri: str,
    model_ref: str,
    config_json: str,
    write_csv: bool,
    prediction_log_uri: str,
    predictions: Output[Dataset],
    drift_sample: Output[Dataset],
    labelled: Output[Dataset],
    model: Output[Artifact],
    scoring_report: Output[Markdown],
) -> NamedTuple("ScoreOutputs", [("model_version", str), ("rows", int), ("labelled_rows", int)]):
    """Score the batch with the pinned champion; write predictions, the log part, samples for later steps."""
    from collections import namedtuple

    from components.batch.champion import load_champion
    from components.batch.scoring import (
        describe_scores,
        labelled_rows,
        run_batch_scoring,
        sample_for_drift,
    )
    from components.batch.summary import model_record, scoring_markdown
    from components.shared.artifacts import timed, write_frame, write_json, write_text
    from components.shared.config import Config

    config = Config.from_json(config_json)
    with timed(predictions, config.task_timeout_seconds):
        champion = load_champion(registry_uri, config.registry_model_name, model_ref)
        log_dir = prediction_log_uri or None  # a directory, or a gs:// prefix (read and written directly)
        run = run_batch_scoring(batch_uri, champion, predictions.path, batch_take, write_csv, log_dir)
        monitoring, seed = config.monitoring, config.split.seed
        write_frame(sample_for_drift(run, monitoring.drift_sample_rows, seed), drift_sample.path)
        write_frame(labelled_rows(run, monitoring.reference_rows, seed), labelled.path)
        write_json(model_record(champion), model.path)
        write_text(scoring_markdown(run), scoring_report.path)
    facts = describe_scores(run.predictions)
    predictions.metadata.update(
        {
            **facts,
            "model_version": champion.version,
            "labelled_rows": run.batch.labelled_rows,
            "sources": run.batch.sources[:20],
            "step_seconds": run.seconds,
            "rows_per_second": round(run.rows_per_second),
            "prediction_log_part": run.log_path,
            "notes": run.batch.notes,
        }
    )
    model.metadata.update({"model_name": champion.model_name, "version": champion.version})
    outputs = namedtuple("ScoreOutputs", ["model_version", "rows", "labelled_rows"])
    return outputs(champion.version, run.batch.rows, run.batch.labelled_rows)


def business_value(
    predictions: Input[Dataset],
    model: Input[Artifact],
    config_json: str,
    ranked: Output[Dataset],
    business: Output[Artifact],
    business_report: Output[HTML],
    business_summary: Output[Markdown],
    business_metrics: Output[Metrics],
):
    """Expected profit per customer, the ranked contact list, the profit curve and the best cut-off."""
    from components.batch.business import business_html, business_markdown, business_value, rank_customers
    from components.batch.scoring import read_predictions
    from components.shared.artifacts import read_json, timed, write_frame, write_json, write_text
    from components.shared.config import Config

    config = Config.from_json(config_json)
    cost, revenue = config.monitoring.contact_cost, config.monitoring.revenue_per_conversion
    with timed(business, config.task_timeout_seconds):
        scored = read_predictions(predictions.path)
        target = read_json(model.path).get("target")
        ordered = rank_customers(scored, cost, revenue, target=target)
        result = business_value(ordered, cost, revenue, target=target)
        write_frame(ordered, ranked.path)
        write_json({**result.to_dict(), "curve": result.curve.to_dict("list")}, business.path)
        write_text(business_html(result, ordered), business_report.path)
        write_text(business_markdown(result, ordered), business_summary.path)
    summary = result.to_dict()
    business_metrics.log_metric("best_share_contacted", round(result.best["share"], 5))
    business_metrics.log_metric("best_expected_profit", round(result.best["expected_profit"], 2))
    business_metrics.log_metric("everyone_expected_profit", round(result.everyone["expected_profit"], 2))
    business_metrics.log_metric("uplift_vs_everyone", round(summary["uplift_vs_everyone"], 2))
    if result.realised:
        business_metrics.log_metric("realised_profit_at_best", round(result.realised["at_best_cutoff"], 2))
    ranked.metadata.update({"rows": len(ordered), "to_contact": result.best["contacted"]})


def check_drift(
    drift_sample: Input[Dataset],
    model: Input[Artifact],
    config_json: str,
    drift_source: str,
    prediction_log_uri: str,
    drift_window_hours: float,
    drift: Output[Artifact],
    drift_report: Output[HTML],
    drift_summary: Output[Markdown],
    drift_metrics: Output[Metrics],
) -> NamedTuple("DriftOutputs", [("drift_share", float), ("threshold", float), ("drifted", bool)]):
    """Evidently data drift (batch or recent log vs the bundle's reference) and the score's PSI."""
    from collections import namedtuple

    from components.model.bundle import load_bundle, load_reference
    from components.monitoring.drift import (
        SCORE_COLUMN,
        current_from_log,
        drift_markdown,
        reference_scores,
        run_drift_report,
        sample_rows,
    )
    from components.shared.artifacts import read_frame, read_json, timed, write_json, write_text
    from components.shared.config import Config
    from components.shared.errors import DataValidationError

    config = Config.from_json(config_json)
    monitoring, seed = config.monitoring, config.split.seed
    with timed(drift, config.task_timeout_seconds):
        pinned = read_json(model.path)
        bundle = load_bundle(pinned["path"])
        reference = sample_rows(load_reference(pinned["path"]), monitoring.drift_sample_rows, seed)
        if drift_source == "batch":
            current, total, source = read_frame(drift_sample.path), None, "this batch"
        elif drift_source == "log":
            if not prediction_log_uri:
                raise DataValidationError("drift_source 'log' needs prediction_log_uri")
            logged = current_from_log(prediction_log_uri, drift_window_hours, pinned["version"])
            current = sample_rows(logged, monitoring.drift_sample_rows, seed)
            total, source = len(logged), f"prediction log, last {drift_window_hours:g} h"
        else:
            raise DataValidationError(f"drift_source must be 'batch' or 'log', got {drift_source!r}")
        result = run_drift_report(
            reference,
            current,
            bundle,
            monitoring.drift_threshold,
            current[SCORE_COLUMN].to_numpy(dtype=float),
            reference_scores(bundle, reference),
            source,
            current_total_rows=total,
        )
        write_text(result.html, drift_report.path)
        write_text(drift_markdown(result), drift_summary.path)
        write_json(result.to_dict(), drift.path)
    drift_metrics.log_metric("drift_share", round(result.share, 5))
    drift_metrics.log_metric("drifted_columns", result.drifted_count)
    drift_metrics.log_metric("score_psi", round(result.score_psi, 5))
    drift.metadata.update({"drifted": result.drifted, "reason": result.reason, "share": result.share})
    outputs = namedtuple("DriftOutputs", ["drift_share", "threshold", "drifted"])
    return outputs(result.share, result.threshold, result.drifted)


def plan_retraining(
    labelled: Input[Dataset],
    model: Input[Artifact],
    drift: Input[Artifact],
    config_json: str,
    labels_uri: str,
    prediction_log_uri: str,
    code_version: str,
    retrain_data: Output[Dataset],
    decision: Output[Artifact],
    retrain_report: Output[Markdown],
) -> NamedTuple(
    "RetrainPlanOutputs",
    [("retrain", bool), ("data_uri", str), ("config_json", str), ("retrain_context", str)],
):
    """Retrain only on something new: drift, enough newly labelled rows (the batch's, and labels
    joined to the prediction log), training data unlike the champion's; write what it trains on."""
    import json
    from collections import namedtuple
    from datetime import UTC, datetime

    from components.batch.labels import join_labels
    from components.model.bundle import load_bundle, load_reference
    from components.monitoring.retraining import (
        OBSERVED_AT,
        combine_labelled,
        plan_markdown,
        plan_retraining,
        write_retrain_files,
    )
    from components.shared.artifacts import read_frame, read_json, timed, write_json, write_text
    from components.shared.config import Config
    from components.shared.errors import DataValidationError

    config = Config.from_json(config_json)
    with timed(decision, config.task_timeout_seconds):
        pinned = read_json(model.path)
        bundle = load_bundle(pinned["path"])
        offered = [read_frame(labelled.path).assign(**{OBSERVED_AT: datetime.now(UTC)})]
        joined = None
        if labels_uri:
            if not prediction_log_uri:
                raise DataValidationError(
                    f"labels {labels_uri} join to the prediction log: set prediction_log_uri"
                )
            monitoring = config.monitoring
            joined = join_labels(
                labels_uri,
                prediction_log_uri,
                bundle,
                monitoring.reference_rows,
                config.split.seed,
            )
            offered.append(joined.labelled)
        plan, data = plan_retraining(
            read_json(drift.path),
            load_reference(pinned["path"]),
            combine_labelled(offered, config.dataset.id_columns),
            config,
            bundle,
            pinned["version"],
            code_version,
        )
        plan.labels = joined.report() if joined else {}
        context, data_uri, retrain_config = "", "", config_json
        if data is not None:
            table, holdout = write_retrain_files(data, retrain_data.path)
            # a gs:// artifact is read by URI (the next task runs elsewhere); a local one by its path
            remote = retrain_data.uri.rstrip("/") if retrain_data.uri.startswith("gs://") else None
            data_uri = f"{remote}/{table.name}" if remote else str(table)
            context = json.dumps(plan.provenance(f"{remote}/{holdout.name}" if remote else str(holdout)))
            retrain_config = data.config.to_json()
        write_json(plan.to_dict(), decision.path)
        write_text(plan_markdown(plan), retrain_report.path)
    decision.metadata.update({"retrain": plan.retrain, "reason": plan.reason, "alert": plan.alert or ""})
    retrain_data.metadata.update(
        {"rows": plan.training_rows, "new_rows": plan.new_rows, "base_model_version": pinned["version"]}
    )
    outputs = namedtuple("RetrainPlanOutputs", ["retrain", "data_uri", "config_json", "retrain_context"])
    return outputs(plan.retrain, data_uri, retrain_config, context)


def record_no_retrain(plan: Input[Artifact], decision: Output[Artifact]):
    """Nothing to retrain (no drift, too few new labels, nothing new): record that and why."""
    from components.shared.artifacts import read_json, write_json

    verdict = read_json(plan.path)
    record = {"retrained": False, "reason": verdict["reason"], "alert": verdict.get("alert")}
    write_json(record, decision.path)
    decision.metadata.update({"retrained": False, "reason": verdict["reason"]})


def summarize_prediction(
    predictions: Input[Dataset],
    model: Input[Artifact],
    business: Input[Artifact],
    drift: Input[Artifact],
    plan: Input[Artifact],
    scoring_report: Input[Markdown],
    business_report: Input[HTML],
    drift_report: Input[HTML],
    config_json: str,
    tracking_uri: str,
    run_name: str,
    code_version: str,
    runner: str,
    batch_uri: str,
    prediction_summary: Output[Artifact],
):
    """prediction_summary.json (scores, campaign value, drift decision, where the retrain reports), and
    the run tracked with its reports (MLflow or Vertex AI Experiments; never fatal)."""
    import os

    from components.batch.summary import build_prediction_summary
    from components.shared.artifacts import read_json, write_json
    from components.shared.config import Config
    from components.tracking.record import RunContext, prediction_run
    from components.tracking.track import report_files, track

    value = read_json(business.path)
    value.pop("curve", None)
    verdict = read_json(drift.path)
    decided = read_json(plan.path)
    stages = {"score": predictions, "business": business, "drift": drift, "retrain_plan": plan}
    document = build_prediction_summary(
        scoring=dict(predictions.metadata),
        model=read_json(model.path),
        business=value,
        drift=verdict,
        plan=decided,
        artifact_uris={name: a.uri for name, a in stages.items()},
        stage_seconds={name: a.metadata.get("stage_seconds") for name, a in stages.items()},
        run_root=os.path.dirname(os.path.dirname(prediction_summary.path)),
    )
    write_json(document, prediction_summary.path)
    reports = report_files(
        {
            "scoring_report.md": scoring_report,
            "business_report.html": business_report,
            "drift_report.html": drift_report,
            "prediction_summary.json": prediction_summary,
        }
    )
    config = Config.from_json(config_json)
    context = RunContext(run_name, code_version, runner, batch_uri)
    document["tracking"] = track(prediction_run(document, config, context, reports), tracking_uri, config)
    write_json(document, prediction_summary.path)
    prediction_summary.metadata.update(
        {
            "retrain_triggered": decided["retrain"],
            "rows": value["customers"],
            "tracked": document["tracking"]["logged"],
        }
    )


@dataclass(frozen=True)
class PredictionOps:
    """The prediction pipeline's components, built for one pipeline image."""

    score_batch: Any
    business_value: Any
    check_drift: Any
    plan_retraining: Any
    record_no_retrain: Any
    summarize_prediction: Any


SHELLS = (
    score_batch,
    business_value,
    check_drift,
    plan_retraining,
    record_no_retrain,
    summarize_prediction,
)


def build_prediction_ops(image: str) -> PredictionOps:
    from components.shells.training import make_components

    return PredictionOps(**make_components(SHELLS, image))
