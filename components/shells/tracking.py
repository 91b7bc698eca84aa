"""The exit task both pipelines end with: a run that failed is tracked as failed.

A finished run is tracked by its summary step, which never runs when a stage fails. On a cluster
(Vertex AI Pipelines, KFP) nothing else watches the run, so this task, the body of a
``dsl.ExitHandler``, records it from the orchestrator's final status. On a local runner the launcher
records it instead, with the failing task's own exception read from the log, which the final status
does not carry there. Same rules as the other shells: imports inside the body. The task must never
fail a run itself (an exit task that fails fails the run), so it returns early where it has nothing
to do and reports, rather than raises, what goes wrong.
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
    """Track the run as FAILED (stage and error from the orchestrator) when it failed or was
    cancelled on a cluster; returns what it did, one line."""
    state = str(status.state).upper()
    # Vertex: SUCCEEDED / FAILED / CANCELLED; KFP's driver: MLMD states (COMPLETE, CACHED, FAILED, CANCELED)
    if state not in ("FAILED", "CANCELLED", "CANCELED"):
        return f"{state.lower()}: nothing to track here (the summary step tracks a finished run)"
    try:
        from components.shared.config import Config
        from components.tracking.record import LAUNCHER_TRACKED_RUNNERS, RunContext, failed_run
        from components.tracking.track import track
        from components.tracking.vertex_backend import failure_of

        if runner in LAUNCHER_TRACKED_RUNNERS:
            return f"{state.lower()}: the {runner} launcher tracks the failed run"
        stage, error = failure_of(status, runner)
        config = Config.from_json(config_json)
        context = RunContext(run_name, code_version, runner, data_uri)
        run = failed_run(pipeline_name, config, context, stage, error, job=status.pipeline_job_resource_name)
        outcome = track(run, tracking_uri, config)
    except Exception as exc:  # e.g. the run failed because its config is invalid: say so, end cleanly
        print(f"tracking: the failed run was NOT recorded: {type(exc).__name__}: {exc}")
        return f"{state.lower()}: not tracked ({type(exc).__name__}: {exc})"
    if not outcome.get("logged"):
        print(f"tracking: the failed run was NOT recorded: {outcome.get('error') or outcome.get('reason')}")
    return f"{state.lower()} at {stage}: tracked {outcome.get('logged')}"


def build_record_failure(image: str) -> Any:
    """The exit component for ``image``."""
    from components.shells.training import make_components

    return make_components((record_failure,), image)["record_failure"]
