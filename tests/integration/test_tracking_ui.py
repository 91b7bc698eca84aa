"""The MLflow UI (`make ui`, i.e. `propensity ui`) on loopback shows a tracked run: headless Chromium
loads the run's page, rendered by MLflow's React app, and finds the run's metrics in it; the run's
reports are served beside it.

The run is the session's trained registry (tests/conftest.py), tracked by the pipeline itself.
Needs Debian's `chromium` and the UI's venv (`make ui-install`, which `make test` does); outside CI
a missing one skips with the reason, in CI (CI=true) it fails: .ci/run installs chromium.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from components.tracking.mlflow_backend import local_store_uri, read_runs
from pipelines.bench.serving import wait_healthy
from pipelines.cli.tracking import UI_VENV

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def required(path: str | None, what: str) -> str:
    """The tool's path; missing: skip with the reason, or fail in CI (where .ci/run provides it)."""
    if path and Path(path).exists():
        return path
    message = f"{what} is not installed"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; in CI this test never skips")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_ui_shows_the_tracked_run_with_its_metrics_and_reports(trained_registry, tmp_path: Path) -> None:
    chromium = required(shutil.which("chromium"), "chromium (apt-get install chromium)")
    required(str(ROOT / UI_VENV / "bin" / "mlflow"), f"the MLflow UI ({UI_VENV}/, make ui-install)")
    workdir = trained_registry.workdir / "work"
    runs = read_runs(local_store_uri(workdir / "tracking"))
    run = next(r for r in runs if r.data.tags["pipeline"] == "training" and r.info.status == "FINISHED")
    run_id, roc_auc = run.info.run_id, run.data.metrics["test.roc_auc"]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "ui.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "ui", "--workdir", str(workdir), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the mlflow server it starts is stopped with it
        )
    try:
        wait_healthy(port, process, timeout=120.0)  # type: ignore[arg-type]
        assert f"http://127.0.0.1:{port}" in log_path.read_text().splitlines()[0]  # it prints the address

        # the REST API the React app reads: the same run and metric as in the store
        served = httpx.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30).json()
        metrics = {m["key"]: m["value"] for m in served["run"]["data"]["metrics"]}
        assert metrics["test.roc_auc"] == roc_auc

        # the run page as a browser renders it
        page = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
        dom = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--virtual-time-budget=30000",
                "--dump-dom",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
        assert run.info.run_name in dom
        assert "test.roc_auc" in dom and repr(roc_auc) in dom
        assert "family.xgboost.cv_roc_auc" in dom

        # the reports are served from the run's artifacts
        gate = httpx.get(
            f"{base}/get-artifact", params={"path": "reports/gate_report.md", "run_uuid": run_id}, timeout=30
        )
        assert gate.status_code == 200 and "PASSED" in gate.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
