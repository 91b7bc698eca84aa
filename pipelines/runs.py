"""What every run shares: the default workdir and data size, run names, run folders, the code version."""

from __future__ import annotations

import subprocess
from pathlib import Path

from components.shared.config import ConfigError

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
    from datetime import UTC, datetime

    return "run-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")


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
