"""The Vertex AI Experiments backend with the real ``google-cloud-aiplatform`` SDK, against the
loopback Vertex API of ``tests/vertex_api.py`` (fixture ``vertex_api``): what the SDK sends is what
Vertex would receive, and what the metadata store holds afterwards is what the console shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.shared.config import Config
from components.tracking.record import RunContext, failed_run, training_run
from components.tracking.track import track
from components.tracking.vertex_backend import vertex_name
from tests.vertex_api import VertexApi

SUMMARY = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "tracking" / "pipeline_summary.json").read_text()
)
CONTEXT = RunContext("run-20261203-082426-324111", "abc123", "vertex", "gs://bucket/data/customers.csv")
CONFIG = Config().with_overrides(["tracking.experiment=propensity-training"])
SHAP = "gs://bucket/root/propensity-training-123/explain/shap_report"


def experiment_run(api: VertexApi, run_name: str) -> dict:
    return api.metadata[
        f"{api.parent}/metadataStores/default/contexts/propensity-training-{vertex_name(run_name)}"
    ]


def test_a_training_run_becomes_an_experiment_run_with_its_params_metrics_tags_and_reports(
    vertex_api: VertexApi,
) -> None:
    run = training_run(SUMMARY, CONFIG, CONTEXT, {"shap_report.html": SHAP})
    outcome = track(run, "vertex", CONFIG)

    assert outcome["logged"] is True, outcome
    assert outcome["backend"] == "vertex" and outcome["run_id"] == "run-20261203-082426-324111"
    context = experiment_run(vertex_api, CONTEXT.run_name)
    assert context["schemaTitle"] == "system.ExperimentRun"
    assert context["parentContexts"] == [
        f"{vertex_api.parent}/metadataStores/default/contexts/propensity-training"
    ]
    assert context["metadata"]["_state"] == "COMPLETE"
    metrics, params = context["metadata"]["_metrics"], context["metadata"]["_params"]
    assert metrics["test.roc_auc"] == SUMMARY["metrics"]["test"]["roc_auc"]
    assert metrics["family.xgboost.cv_roc_auc"] == SUMMARY["metrics"]["cv"]["xgboost"]["cv_roc_auc"]
    assert metrics["calibration.after.log_loss"] == SUMMARY["calibration"]["after"]["log_loss"]
    assert metrics["gate.passed"] == 1.0
    assert params["gate.min_roc_auc"] == "0.75" and params["tune.families"] == "xgboost,logreg,mlp"
    assert params["tag.registry_version"] == "v0001" and params["tag.runner"] == "vertex"
    assert params["tag.data_fingerprint"] == SUMMARY["data_fingerprint"]
    assert params["artifact.shap_report.html"] == SHAP  # the report stays in GCS, linked
    assert not [c for c in vertex_api.requests if "tensorboards" in c.path]  # no billed Tensorboard


def test_a_retried_summary_step_resumes_its_run(vertex_api: VertexApi) -> None:
    run = training_run(SUMMARY, CONFIG, CONTEXT, {})
    assert track(run, "vertex", CONFIG)["logged"] is True
    run.metrics["test.roc_auc"] = 0.5
    assert track(run, "vertex", CONFIG)["logged"] is True
    assert [c.status for c in vertex_api.calls("contexts", "POST")][-1] == 409  # the run existed
    assert experiment_run(vertex_api, CONTEXT.run_name)["metadata"]["_metrics"]["test.roc_auc"] == 0.5


def test_a_failed_run_ends_failed_with_its_stage_and_error(vertex_api: VertexApi) -> None:
    run = failed_run("training", CONFIG, CONTEXT, "tune", "TaskTimeout: its body ran past 3600 s")
    assert track(run, "vertex", CONFIG)["logged"] is True
    context = experiment_run(vertex_api, CONTEXT.run_name)
    assert context["metadata"]["_state"] == "FAILED"
    params = context["metadata"]["_params"]
    assert params["tag.failed_stage"] == "tune" and params["tag.error"].startswith("TaskTimeout")


def test_an_unavailable_vertex_api_is_reported_and_the_run_goes_on(vertex_api: VertexApi) -> None:
    vertex_api.fail("POST", "contexts", code=403, times=10)
    outcome = track(training_run(SUMMARY, CONFIG, CONTEXT, {}), "vertex", CONFIG)
    assert outcome["logged"] is False
    assert "403" in outcome["error"] or "PermissionDenied" in outcome["error"]


def test_a_prediction_run_and_the_retraining_it_starts_are_two_runs(vertex_api: VertexApi) -> None:
    assert track(training_run(SUMMARY, CONFIG, CONTEXT, {}), "vertex", CONFIG)["logged"] is True
    stopped = failed_run("prediction", CONFIG, CONTEXT, "check-drift", "DataValidationError: empty batch")
    outcome = track(stopped, "vertex", CONFIG)
    assert outcome["run_id"] == f"{CONTEXT.run_name}-prediction"
    assert experiment_run(vertex_api, CONTEXT.run_name)["metadata"]["_state"] == "COMPLETE"
    assert (
        experiment_run(vertex_api, outcome["run_id"])["metadata"]["_params"]["tag.pipeline"] == "prediction"
    )


@pytest.mark.parametrize(("text", "name"), [("Run_2026.01 01", "run-2026-01-01"), ("---", "run")])
def test_vertex_names(text: str, name: str) -> None:
    assert vertex_name(text) == name


def final_status(state: str, message: str = "", job: str = "") -> Any:
    from kfp import dsl

    return dsl.PipelineTaskFinalStatus(
        state=state,
        pipeline_job_resource_name=job
        or "projects/p/locations/europe-west4/pipelineJobs/propensity-training-1",
        pipeline_task_name="training-run",
        error_code=9 if message else None,
        error_message=message,
    )


def run_exit_task(status: Any, runner: str = "vertex", config_json: str = CONFIG.to_json()) -> str:
    from components.shells.tracking import record_failure

    return record_failure(
        status=status,
        pipeline_name="training",
        config_json=config_json,
        tracking_uri="vertex",
        run_name=CONTEXT.run_name,
        code_version=CONTEXT.code_version,
        runner=runner,
        data_uri=CONTEXT.data_uri,
    )


VERTEX_MESSAGE = "The DAG failed because some tasks failed. The failed tasks are: [for-loop-2]."


def running_job(api: VertexApi, tasks: list[dict]) -> str:
    """A pipeline job in the loopback API, still running (its exit task is), with these task details."""
    name = f"{api.parent}/pipelineJobs/propensity-training-42"
    job = {"name": name, "state": "PIPELINE_STATE_RUNNING", "jobDetail": {"taskDetails": tasks}}
    api.pipeline_jobs["propensity-training-42"] = {"job": job, "polls": -1000}
    return name


def test_the_exit_task_of_a_run_that_failed_on_vertex_records_the_failed_step_and_its_error(
    vertex_api: VertexApi,
) -> None:
    """Vertex's message names the failed group (the tune loop); the job's task details name the step."""
    job = running_job(
        vertex_api,
        [
            {"taskId": "1", "taskName": "propensity-training", "state": "FAILED"},
            {"taskId": "2", "parentTaskId": "1", "taskName": "exit-handler-1", "state": "FAILED"},
            {"taskId": "3", "parentTaskId": "2", "taskName": "ingest", "state": "SUCCEEDED"},
            {"taskId": "4", "parentTaskId": "2", "taskName": "for-loop-2", "state": "FAILED"},
            {
                "taskId": "5",
                "parentTaskId": "4",
                "taskName": "tune",
                "state": "FAILED",
                "error": {"code": 9, "message": "TaskTimeout: its body ran past 3600 s"},
            },
            {"taskId": "6", "parentTaskId": "2", "taskName": "train", "state": "CANCELLED"},
            {"taskId": "7", "parentTaskId": "1", "taskName": "record-failure", "state": "RUNNING"},
        ],
    )
    assert run_exit_task(final_status("FAILED", VERTEX_MESSAGE, job)) == "failed at tune: tracked True"
    context = experiment_run(vertex_api, CONTEXT.run_name)
    assert context["metadata"]["_state"] == "FAILED"
    params = context["metadata"]["_params"]
    assert params["tag.failed_stage"] == "tune" and params["tag.runner"] == "vertex"
    assert params["tag.error"] == "pipeline failed: tune: TaskTimeout: its body ran past 3600 s"
    assert params["tag.pipeline_job"] == job
    assert params["gate.min_roc_auc"] == "0.75"  # the settings of the run that failed


def test_when_the_job_cannot_be_read_the_status_message_names_the_stage(vertex_api: VertexApi) -> None:
    message = "The DAG failed because some tasks failed. The failed tasks are: [train]."
    assert run_exit_task(final_status("FAILED", message)) == "failed at train: tracked True"  # no such job
    params = experiment_run(vertex_api, CONTEXT.run_name)["metadata"]["_params"]
    assert params["tag.error"].startswith(f"pipeline failed (code 9): {message} (the job's task details")


@pytest.mark.parametrize("state", ["SUCCEEDED", "COMPLETE", "CACHED"])  # Vertex's, then KFP's (MLMD)
def test_the_exit_task_records_nothing_for_a_run_that_succeeded(vertex_api: VertexApi, state: str) -> None:
    assert run_exit_task(final_status(state)).startswith(f"{state.lower()}: nothing to track")
    assert not vertex_api.calls("contexts", "POST")  # no experiment, no run


def test_the_exit_task_leaves_a_local_runs_failure_to_its_launcher(vertex_api: VertexApi) -> None:
    failed = final_status("FAILED", "The failed tasks are: [ingest].")
    assert (
        run_exit_task(failed, runner="subprocess") == "failed: the subprocess launcher tracks the failed run"
    )
    assert not vertex_api.calls("contexts", "POST")


def test_the_exit_task_never_fails_the_run_itself(vertex_api: VertexApi) -> None:
    """A run that failed because its config is invalid: the exit task says why it could not track."""
    outcome = run_exit_task(final_status("CANCELED", "cancelled"), runner="kfp", config_json="{not json")
    assert outcome.startswith("canceled: not tracked (")


@pytest.mark.parametrize(
    ("state", "message", "stage"),
    [
        (
            "FAILED",
            "The DAG failed because some tasks failed. The failed tasks are: [tune, train].",
            "tune,train",
        ),
        ("CANCELLED", "Pipeline job was cancelled by the user.", "unknown"),
        ("FAILED", "", "unknown"),
    ],
)
def test_the_failed_stage_is_read_from_the_final_status(state: str, message: str, stage: str) -> None:
    from components.tracking.record import failure_from_status

    found, error = failure_from_status(state, message)
    assert found == stage and error.startswith(f"pipeline {state.lower()}: ")
