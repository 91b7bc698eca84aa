"""The MLflow backend: one MLflow run per tracked run, in any MLflow tracking store.

Locally the store is a SQLite file under the work directory (``local_store_uri``): no server is
needed to log, and ``mlflow ui`` reads the same file. Report files are copied into the run's
artifact folder (next to the database) under names with their real extension, so the UI previews
them. mlflow is imported only when a run is logged or read: it costs 1.5-2.5 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from components.tracking.record import TrackedRun

DATABASE = "mlflow.db"
ARTIFACTS = "artifacts"
# log_batch's limits (MLflow REST API): 1000 metrics, 100 params, 100 tags per call
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}
_MAX_PARAM = 6000
# MLflow 3's UI opens an experiment without this tag as a GenAI one (traces, evaluations); with it,
# as model training: the runs table with their metrics and params.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def local_store_uri(folder: str | Path) -> str:
    """The SQLite store of a work directory's runs: ``sqlite:////abs/folder/mlflow.db``."""
    return f"sqlite:///{Path(folder).resolve() / DATABASE}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    prefix = "sqlite:///"  # then the file's path: /abs/mlflow.db (four slashes in all) or relative
    if not uri.startswith(prefix):
        return None
    return Path(unquote(uri[len(prefix) :].split("?", 1)[0]))


def artifact_root(uri: str) -> str | None:
    """Where a local store keeps artifacts: ``artifacts/`` beside its database (None: the server's)."""
    database = sqlite_path(uri)
    return str(database.parent / ARTIFACTS) if database is not None else None


class MlflowBackend:
    """Logs a :class:`TrackedRun` with MLflow's own client (never mlflow's global active run)."""

    name = "mlflow"

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def client(self) -> Any:
        database = sqlite_path(self.uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        # MLflow 3 sends usage telemetry to its project's servers by default: not from users' runs
        # (MLFLOW_DISABLE_TELEMETRY=false set by the user is respected)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        if urlparse(self.uri).scheme in {"http", "https"}:
            # a tracking server that does not answer must not hold the run for minutes
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def experiment_id(self, client: Any, name: str) -> str:
        """The experiment's id, created (with its artifacts beside a local database) when missing."""
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is not None:
            for key, value in EXPERIMENT_KIND.items():
                if key not in found.tags:
                    client.set_experiment_tag(found.experiment_id, key, value)
            return str(found.experiment_id)
        root = artifact_root(self.uri)
        location = Path(root, name).as_uri() if root else None
        try:
            return str(client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND))
        except MlflowException:  # created meanwhile by a concurrent run
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def log(self, run: TrackedRun) -> str:
        """Create the run, log everything, end it with the run's status; returns the run id."""
        from mlflow.entities import Metric, Param, RunTag

        client = self.client()
        experiment = self.experiment_id(client, run.experiment)
        created = client.create_run(
            experiment, run_name=run.name, tags={"pipeline": run.pipeline}, start_time=run.start_time_ms
        )
        run_id = created.info.run_id
        try:
            now = int(time.time() * 1000)
            tags = dict(run.tags)
            for name, uri in run.artifacts.items():
                if not _is_local_file(uri):
                    tags[f"artifact.{name}"] = uri  # a gs:// report: linked, not copied
            metrics = [Metric(k, v, now, 0) for k, v in sorted(run.metrics.items())]
            params = [Param(k, v[:_MAX_PARAM]) for k, v in sorted(run.params.items())]
            run_tags = [RunTag(k, v[:_MAX_PARAM]) for k, v in sorted(tags.items())]
            for kind, items in (("metrics", metrics), ("params", params), ("tags", run_tags)):
                for chunk in _chunks(items, _BATCH[kind]):
                    client.log_batch(run_id, **{kind: chunk})
            self._log_reports(client, run_id, run.artifacts)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, run.status)
        return run_id

    @staticmethod
    def _log_reports(client: Any, run_id: str, artifacts: dict[str, str]) -> None:
        """Copy each local report under its name in the run (e.g. ``reports/shap_report.html``)."""
        local = {name: path for name, path in artifacts.items() if _is_local_file(path)}
        if not local:
            return
        with tempfile.TemporaryDirectory(prefix="propensity-tracking-") as tmp:
            folder = Path(tmp, "reports")
            folder.mkdir()
            for name, path in local.items():
                shutil.copyfile(path, folder / name)
            client.log_artifacts(run_id, str(folder), "reports")


def _is_local_file(path: str) -> bool:
    return "://" not in path and Path(path).is_file()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_runs(uri: str, experiment: str | None = None, max_results: int = 50) -> list[Any]:
    """The store's runs, newest first (MLflow ``Run`` objects), of one experiment or of all."""
    client = MlflowBackend(uri).client()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        ids = [found.experiment_id] if found is not None else []
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    return list(client.search_runs(ids, max_results=max_results, order_by=["attributes.start_time DESC"]))
