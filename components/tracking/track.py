"""Log a run to the store its URI names, and never let tracking break the run.

``tracking_uri``: empty (off), ``vertex`` (Vertex AI Experiments), or an MLflow tracking URI
(``sqlite:///...`` locally, ``http(s)://`` for a tracking server). Any error becomes an outcome that
says why the run was not recorded; the run itself goes on.
"""

from __future__ import annotations

from typing import Any

from components.shared.config import Config
from components.tracking.record import TrackedRun

VERTEX = "vertex"
MLFLOW_SCHEMES = ("sqlite:", "http:", "https:", "postgresql", "mysql", "mssql", "databricks")


def open_backend(tracking_uri: str, config: Config, sdk: Any = None) -> Any:
    """The backend a tracking URI names (ValueError for a URI it does not know)."""
    if tracking_uri == VERTEX:
        from components.tracking.vertex_backend import VertexBackend

        return VertexBackend(config.vertex.project, config.vertex.location, sdk=sdk)
    if tracking_uri.startswith(MLFLOW_SCHEMES):
        from components.tracking.mlflow_backend import MlflowBackend

        return MlflowBackend(tracking_uri)
    raise ValueError(
        f"tracking URI {tracking_uri!r}: expected 'vertex' or an MLflow store URI"
        " (sqlite:///path/mlflow.db, http://host:port)"
    )


def track(run: TrackedRun, tracking_uri: str, config: Config, sdk: Any = None) -> dict[str, Any]:
    """Log ``run``; the outcome says where (``logged``, ``backend``, ``run_id``) or why not (``error``)."""
    if not tracking_uri:
        return {"logged": False, "reason": "tracking is off (no tracking URI)"}
    outcome: dict[str, Any] = {"uri": tracking_uri, "experiment": run.experiment, "run_name": run.name}
    try:
        backend = open_backend(tracking_uri, config, sdk)
        run_id = backend.log(run)
    except Exception as exc:  # tracking never breaks a run: say why, go on
        return {**outcome, "logged": False, "error": f"{type(exc).__name__}: {exc}"}
    return {**outcome, "logged": True, "backend": backend.name, "run_id": run_id}


def report_files(artifacts: dict[str, Any]) -> dict[str, str]:
    """Report name -> where it is: the local file (copied into an MLflow run) when the task can read
    it, else its URI (a gs:// report on Vertex is linked from the experiment run)."""
    import os

    located = {}
    for name, artifact in artifacts.items():
        path = getattr(artifact, "path", "")
        uri = getattr(artifact, "uri", "")
        located[name] = uri if uri.startswith("gs://") or not os.path.isfile(path) else path
    return located
