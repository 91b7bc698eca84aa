"""The prediction pipeline DAG: score -> (business value, drift check) -> plan -> dsl.If: retrain -> summary.

    score_batch ──> business_value ─────────────────────────────────────┐
        │                                                                ├─> summarize_prediction
        └──────> check_drift ──> plan_retraining ──────────────────────┘
                                     │ drift, enough new labelled rows, data unlike the champion's
                                     ├─ yes: training pipeline (nested; its own gate deploys)
                                     └─ no:  record_no_retrain (drift without labels: an alert)

Drift alone does not retrain: ``plan_retraining`` also needs newly labelled rows (the batch's, and
labels joined by id to the prediction log with ``labels_uri``) and training data that differs from
the champion's (``components.monitoring.retraining``). The retrain runs the *training* pipeline as
a nested pipeline on the reference plus the new rows (the configured window), with part of the new
rows held out: its gate compares challenger and champion on them too. The condition has an Else
branch: besides recording the "no retrain" decision, that shape is what the KFP local runner
evaluates correctly (a lone ``dsl.If`` on a task output is never taken there). The summary is a
top-level task fed by the plan, so it shows the decision and its alert.
"""

from typing import Any

from kfp import dsl

from components.shared.config import Config
from components.shells.prediction import build_prediction_ops
from components.shells.tracking import build_record_failure
from pipelines.training import DEFAULT_IMAGE, build_training_pipeline, configure_task, failure_handler

PIPELINE_NAME = "propensity-prediction"
SUMMARY_OUTPUT = "prediction_summary"

# (cpu, memory) requests per step for cluster runners (kind, Vertex); ignored by the local runner.
RESOURCES: dict[str, tuple[str, str]] = {
    "score": ("2", "8G"),  # a million-row batch is read, scored and written in memory
    "business": ("1", "4G"),
    "drift": ("2", "4G"),
    "retrain-data": ("1", "4G"),
    "summary": ("1", "1G"),
}


def _configure(task: Any, display_name: str, step: str) -> Any:
    return configure_task(task, display_name, step, RESOURCES)


def build_prediction_pipeline(image: str = DEFAULT_IMAGE) -> Any:
    """Return the ``@dsl.pipeline`` whose components (and the nested training) run in ``image``."""
    ops = build_prediction_ops(image)
    training = build_training_pipeline(image, track_failures=False)  # this pipeline's own handler
    record_failure = build_record_failure(image)
    default_config = Config()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Score a batch with the champion, value the campaign, watch drift, retrain on drift.",
    )
    def prediction_pipeline(
        batch_uri: str,
        registry_uri: str,
        config_json: str = default_config.to_json(),
        model_ref: str = "champion",
        batch_take: str = "newest",
        write_csv: bool = False,
        prediction_log_uri: str = "",
        drift_source: str = "batch",
        drift_window_hours: float = 24.0,
        families: list = default_config.tune.families,
        deploy_target: str = "local",
        run_name: str = "",
        code_version: str = "unknown",
        labels_uri: str = "",
        tracking_uri: str = "",
        runner: str = "local",
    ):
        failure_tracking = failure_handler(
            record_failure,
            _configure,
            "prediction",
            config_json=config_json,
            tracking_uri=tracking_uri,
            run_name=run_name,
            code_version=code_version,
            runner=runner,
            data_uri=batch_uri,
        )
        with failure_tracking:
            score = _configure(
                ops.score_batch(
                    batch_uri=batch_uri,
                    batch_take=batch_take,
                    registry_uri=registry_uri,
                    model_ref=model_ref,
                    config_json=config_json,
                    write_csv=write_csv,
                    prediction_log_uri=prediction_log_uri,
                ),
                "Score batch",
                "score",
            )
            score.set_caching_options(False)  # the champion and the log change between runs
            value = _configure(
                ops.business_value(
                    predictions=score.outputs["predictions"],
                    model=score.outputs["model"],
                    config_json=config_json,
                ),
                "Business value",
                "business",
            )
            drift = _configure(
                ops.check_drift(
                    drift_sample=score.outputs["drift_sample"],
                    model=score.outputs["model"],
                    config_json=config_json,
                    drift_source=drift_source,
                    prediction_log_uri=prediction_log_uri,
                    drift_window_hours=drift_window_hours,
                ),
                "Drift check",
                "drift",
            )
            drift.set_caching_options(False)
            plan = _configure(
                ops.plan_retraining(
                    labelled=score.outputs["labelled"],
                    model=score.outputs["model"],
                    drift=drift.outputs["drift"],
                    config_json=config_json,
                    labels_uri=labels_uri,
                    prediction_log_uri=prediction_log_uri,
                    code_version=code_version,
                ),
                "Plan retraining",
                "retrain-data",
            )
            plan.set_caching_options(False)  # the log and the registry change between runs
            with dsl.If(plan.outputs["retrain"] == True, name="retrain"):  # noqa: E712 - KFP condition
                training(
                    data_uri=plan.outputs["data_uri"],
                    registry_uri=registry_uri,
                    config_json=plan.outputs["config_json"],
                    families=families,
                    deploy_target=deploy_target,
                    run_name=run_name,
                    code_version=code_version,
                    retrain_context=plan.outputs["retrain_context"],
                    tracking_uri=tracking_uri,
                    runner=runner,
                ).set_display_name("Retrain (training pipeline)")
            with dsl.Else(name="no-retrain"):
                _configure(
                    ops.record_no_retrain(plan=plan.outputs["decision"]), "Record: no retrain", "summary"
                )
            _configure(
                ops.summarize_prediction(
                    predictions=score.outputs["predictions"],
                    model=score.outputs["model"],
                    business=value.outputs["business"],
                    drift=drift.outputs["drift"],
                    plan=plan.outputs["decision"],
                    scoring_report=score.outputs["scoring_report"],
                    business_report=value.outputs["business_report"],
                    drift_report=drift.outputs["drift_report"],
                    config_json=config_json,
                    tracking_uri=tracking_uri,
                    run_name=run_name,
                    code_version=code_version,
                    runner=runner,
                    batch_uri=batch_uri,
                ),
                "Summary",
                "summary",
            )

    return prediction_pipeline
