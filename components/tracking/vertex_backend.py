"""The Vertex AI Experiments backend: one experiment run per tracked run, through the SDK.

Params, tags (as ``tag.<name>`` params) and report links (``artifact.<name>``, their gs:// URIs)
go to ``log_params``, numbers to ``log_metrics``; the run ends COMPLETE or FAILED. Written against
the few ``google.cloud.aiplatform`` calls named in :class:`ExperimentsSdk`; the module itself in
production. No google-cloud import at module level.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from components.tracking.record import FAILED, TRAINING, TrackedRun, failure_from_status

_RUN_RE = re.compile(r"[^a-z0-9-]+")
_MAX_PARAM = 1000


class ExperimentsSdk(Protocol):
    """``init(project, location, experiment)``, ``start_run(run, resume)``, ``log_params``,
    ``log_metrics``, ``end_run(state)`` of ``google.cloud.aiplatform``."""

    def init(self, **kwargs: Any) -> None: ...

    def start_run(self, run: str, *, resume: bool = False) -> Any: ...

    def log_params(self, params: dict[str, float | int | str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float | int | str]) -> None: ...

    def end_run(self, state: Any = ...) -> None: ...


def vertex_name(text: str) -> str:
    """Experiment and run ids: lowercase letters, digits and '-', at most 128 characters."""
    cleaned = _RUN_RE.sub("-", text.lower()).strip("-")
    return (cleaned or "run")[:128].rstrip("-")


def run_id(run: TrackedRun) -> str:
    """The experiment run's id: the run name; a prediction run's gets '-prediction', because the
    training run it may start (nested, same run name) is a run of its own and ids are unique."""
    return vertex_name(run.name if run.pipeline == TRAINING else f"{run.name}-{run.pipeline}")


class VertexBackend:
    """Logs a :class:`TrackedRun` as a Vertex AI Experiments run (project/location: the config's
    ``vertex`` section, or the SDK's defaults, e.g. the project a Vertex pipeline runs in)."""

    name = "vertex"

    def __init__(self, project: str = "", location: str = "", sdk: ExperimentsSdk | None = None) -> None:
        self.project = project or None
        self.location = location or None
        self.sdk = sdk

    def log(self, run: TrackedRun) -> str:
        from google.api_core import exceptions

        sdk = self.sdk or _load_sdk()
        name = run_id(run)
        # No backing Tensorboard: params and final metrics only (no time series); a Tensorboard is a
        # billed resource the SDK would otherwise create on first use.
        sdk.init(
            project=self.project,
            location=self.location,
            experiment=vertex_name(run.experiment),
            experiment_tensorboard=False,
        )
        try:
            sdk.start_run(name)
        except exceptions.Conflict:  # the task was retried: the same run goes on (REST: 409 Conflict,
            sdk.start_run(name, resume=True)  # gRPC: AlreadyExists, a Conflict too)
        state = _state(run.status)
        try:
            params: dict[str, float | int | str] = dict(run.params)
            params.update({f"tag.{k}": v for k, v in run.tags.items()})
            params.update({f"artifact.{k}": v for k, v in run.artifacts.items()})
            sdk.log_params({k: str(v)[:_MAX_PARAM] for k, v in params.items()})
            if run.metrics:
                sdk.log_metrics(dict(run.metrics))
        except BaseException:
            sdk.end_run(state=_state(FAILED))
            raise
        sdk.end_run(state=state)
        return name


def _state(status: str) -> Any:
    """The SDK's Execution.State for a run status (COMPLETE, or FAILED)."""
    from google.cloud.aiplatform.compat.types import execution as gca_execution

    states = gca_execution.Execution.State
    return states.FAILED if status == FAILED else states.COMPLETE


def failure_of(status: Any, runner: str, sdk: Any = None) -> tuple[str, str]:
    """(stage, error) of a pipeline whose final ``status`` (a ``PipelineTaskFinalStatus``) is a
    failure. On Vertex, the job's innermost failed tasks and their own errors (its task details:
    the steps, not the loop, condition and exit-handler groups that fail with them, which are all
    that the status message names); elsewhere, or when the job cannot be read, what the message
    names."""
    stage, error = failure_from_status(status.state, status.error_message, status.error_code)
    job = status.pipeline_job_resource_name
    if runner != "vertex" or not job:
        return stage, error
    try:
        failed = failed_tasks(job, sdk)
    except Exception as exc:  # the message's names are still an answer
        return stage, f"{error} (the job's task details could not be read: {type(exc).__name__}: {exc})"
    if not failed:
        return stage, error
    messages = "; ".join(f"{name}: {message}" for name, message in failed if message)
    return ",".join(name for name, _ in failed), f"pipeline {status.state.lower()}: {messages or error}"


def failed_tasks(job_resource_name: str, sdk: Any = None) -> list[tuple[str, str]]:
    """(task name, error message) of each failed task of a Vertex pipeline job that has no failed
    task inside it."""
    from google.cloud.aiplatform_v1.types import PipelineTaskDetail

    sdk = sdk or _load_sdk()
    details = list(sdk.PipelineJob.get(resource_name=job_resource_name).task_details)
    failed = [d for d in details if d.state == PipelineTaskDetail.State.FAILED]
    containing = {d.parent_task_id for d in failed}
    return [(d.task_name, d.error.message) for d in failed if d.task_id not in containing]


def _load_sdk() -> ExperimentsSdk:
    from google.cloud import aiplatform

    return aiplatform  # type: ignore[return-value]
