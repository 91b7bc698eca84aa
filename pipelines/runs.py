"""What every run shares: the default workdir and data size, run names, run folders, the code version,
and where runs are tracked (the tracking URI, the record of a run that failed)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.shared.config import Config, ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from components.tracking.record import RunContext
    from pipelines.local_runner import LocalRun

DEFAULT_WORKDIR = Path(".propensity")
DEFAULT_ROWS = 2240
DEFAULT_SEED = 7


def local_run_dir(pipeline_root: str | None, workdir: Path, run_name: str) -> Path:
    if pipeline_root and pipeline_root.startswith("gs://"):
        raise ConfigError(
            f"--pipeline-root {pipeline_root}: the local runner cannot write to GCS (it would silently treat "
            "the URI as a relative local path); use a local directory, or submit to Vertex AI"
        )
    return Path(pipeline_root).resolve() if pipeline_root else workdir / "runs" / run_name


def new_run_name() -> str:
    """``run-YYYYmmdd-HHMMSS-ffffff`` (UTC): the tracked run's start is read back from it."""
    from datetime import UTC, datetime

    from components.tracking.record import RUN_NAME_TIME

    return datetime.now(UTC).strftime(RUN_NAME_TIME)


def code_version() -> str:
    """The git commit of the code that trains, marked dirty when there are local edits."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import version

        return f"propensity-{version('propensity')}"
    return f"{sha}-dirty" if dirty else sha


TRACKING_FOLDER = "tracking"  # WORKDIR/tracking: mlflow.db and the runs' artifacts
NO_TRACKING = "none"


def add_tracking_argument(parser: Any) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="where the run is tracked: an MLflow store URI (sqlite:///..., http://host:port), 'vertex',"
        f" or '{NO_TRACKING}' (default: the SQLite store WORKDIR/{TRACKING_FOLDER}/mlflow.db)",
    )


def tracking_uri(argument: str | None, workdir: Path) -> str:
    """The tracking URI a local run hands its pipeline ("" switches tracking off)."""
    from components.tracking.mlflow_backend import local_store_uri

    if argument == NO_TRACKING:
        return ""
    return argument or local_store_uri(workdir / TRACKING_FOLDER)


def tracking_folders(uri: str) -> list[str]:
    """Local folders a task container must be able to write for ``uri`` (a SQLite store's folder)."""
    from components.tracking.mlflow_backend import sqlite_path

    database = sqlite_path(uri) if uri else None
    return [str(database.parent)] if database is not None else []


def run_tracking_failure(
    run: Callable[[], LocalRun], pipeline: str, config: Config, uri: str, context: RunContext
) -> LocalRun:
    """``run()``; when the pipeline fails, track it as a failed run (its summary step, which tracks
    finished runs, never ran), say where, and raise the failure as it was."""
    from components.tracking.record import failed_run
    from components.tracking.track import track
    from pipelines.local_runner import PipelineRunError

    try:
        return run()
    except PipelineRunError as error:
        outcome = track(failed_run(pipeline, config, context, error.task, error.cause), uri, config)
        print(tracking_line(outcome))
        raise


def tracking_line(outcome: dict[str, Any] | None) -> str:
    """One line on where the run was tracked, or why it was not (said once, never fatal)."""
    if not outcome:
        return "tracking: not recorded (the summary has no tracking outcome)"
    if outcome.get("logged"):
        where = outcome["uri"]
        return (
            f"tracking: {outcome['backend']} run {outcome['run_id']} in experiment"
            f" {outcome['experiment']!r} ({where})"
        )
    if outcome.get("error"):
        return f"tracking: NOT recorded, the run goes on: {outcome['error']} (store {outcome.get('uri')})"
    return f"tracking: off ({outcome.get('reason', 'no tracking URI')})"
