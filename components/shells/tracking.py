"""The exit task both pipelines end with: a run that failed is tracked as failed.

A finished run is tracked by its summary step, which never runs when a stage fails. On a cluster
(Vertex AI Pipelines, KFP) nothing else watches the run, so this task, the body of a
``dsl.ExitHandler``, records it from the orchestrator's final status. On a local runner the launcher
records it instead, with the failing task's own exception read from the log, which the final status
does not carry there. Same rules as the other shells: imports inside the body.
"""

from typing import Any

from kfp import dsl


def record_failure(
    status: dsl.PipelineTaskFinalStatus,
    pipeline_name: str,
    config_json: str,
    tracking_uri: str,
    run_name: str,
    code_version: str,
    runner: str,
    data_uri: str,
) -> str:
    """Track the run as FAILED (stage and error from the final status) unless it succeeded or a local
    launcher tracks it; returns what it did, one line."""
    from components.shared.config import Config
    from components.tracking.record import (
        LAUNCHER_TRACKED_RUNNERS,
        RunContext,
        failed_run,
        failure_from_status,
    )
    from components.tracking.track import track

    if status.state == "SUCCEEDED":
        return "succeeded: the summary step tracked the run"
    if runner in LAUNCHER_TRACKED_RUNNERS:
        return f"{status.state.lower()}: the {runner} launcher tracks the failed run"
    stage, error = failure_from_status(status.state, status.error_message, status.error_code)
    config = Config.from_json(config_json)
    context = RunContext(run_name, code_version, runner, data_uri)
    run = failed_run(pipeline_name, config, context, stage, error, job=status.pipeline_job_resource_name)
    outcome = track(run, tracking_uri, config)
    if not outcome.get("logged"):
        print(f"tracking: the failed run was NOT recorded: {outcome.get('error') or outcome.get('reason')}")
    return f"{status.state.lower()} at {stage}: tracked {outcome.get('logged')}"


def build_record_failure(image: str) -> Any:
    """The exit component for ``image``."""
    from components.shells.training import make_components

    return make_components((record_failure,), image)["record_failure"]
