"""MLServer beside the endpoint (``make bench``): the same load generator, in the same run, against
MLServer + mlserver-xgboost serving an XGBoost model of the same table.

MLServer is installed by this benchmark into its own virtual environment (``MLSERVER_PINS``;
``xgboost-cpu`` stands in for ``xgboost``, as in the images), so none of its dependencies reach the
project's. It serves the run's refit XGBoost candidate with the V2 inference protocol and takes
pre-encoded float rows (our transformer's output), so it does less work per request than the
endpoint, which validates and encodes raw columns. Settings: MLServer's defaults except loopback
ports and no metrics server, measured twice:

* ``default``: as installed, inference in MLServer's worker pool (``parallel_workers: 1``, its
  default), which is how the issue's figures were taken. MLServer 1.7.1's workers die at start with
  uvloop 0.22 ("There is no current event loop", SeldonIO/MLServer#2286; MLflow pins
  ``uvloop<0.22`` for it), so its venv has ``uvloop<0.22``.
* ``in-process``: ``parallel_workers: 0``, inference in the server process: MLServer's fastest
  setting for one small model here, reported beside the default so neither figure flatters us.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.bench.serving import (
    CASES,
    HOST,
    STARTUP_SECONDS,
    Case,
    drive,
    free_port,
    http_request,
    newest_candidates,
    stop_server,
)

MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-xgboost==1.7.1")
# MLServer 1.7.1's worker pool needs uvloop < 0.22 (SeldonIO/MLServer#2286)
COMPATIBLE = ("uvloop<0.22",)
# settings.json beyond the common ones, per measured configuration
CONFIGURATIONS: dict[str, dict[str, Any]] = {"default": {}, "in-process": {"parallel_workers": 0}}
MODEL_NAME = "propensity"
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"


def ensure_venv(directory: Path) -> Path:
    """MLServer's own venv (made once, reused while the pins are the same); returns its python."""
    import xgboost

    python = directory / "bin" / "python"
    wanted = [*MLSERVER_PINS, f"xgboost-cpu=={xgboost.__version__}", "scikit-learn", *COMPATIBLE]
    marker = directory / "propensity-pins.json"
    if marker.exists() and json.loads(marker.read_text()) == wanted and python.exists():
        return python
    shutil.rmtree(directory, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # mlserver-xgboost asks for the xgboost distribution (with CUDA and NCCL); xgboost-cpu is the
    # same import package, so it goes in without its dependencies, which are listed here.
    with open(directory / "install.log", "wb") as log:  # pip's own chatter stays out of the report
        for args in ([MLSERVER_PINS[0], *wanted[2:]], ["--no-deps", MLSERVER_PINS[1]]):
            subprocess.run([*pip, *args], check=True, stdout=log, stderr=subprocess.STDOUT)
    marker.write_text(json.dumps(wanted))
    return python


def write_model_repository(
    model_file: Path, directory: Path, port: int, settings: dict[str, Any] | None = None
) -> Path:
    """An MLServer model repository: settings.json (``settings`` added to the common ones) and one
    model with its model-settings.json."""
    model_dir = directory / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, model_dir / model_file.name)
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_xgboost.XGBoostModel",
                "parameters": {"uri": f"./{model_file.name}"},
            }
        )
    )
    common = {"host": HOST, "http_port": port, "grpc_port": free_port(), "metrics_endpoint": None}
    (directory / "settings.json").write_text(json.dumps({**common, "debug": False, **(settings or {})}))
    return directory


def start_mlserver(python: Path, repository: Path) -> subprocess.Popen[bytes]:
    command = [str(python.parent / "mlserver"), "start", str(repository)]
    with open(repository / "mlserver.log", "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=repository)


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MLServer exited with code {process.returncode}; see {log}")
        try:
            ready = httpx.get(f"http://{HOST}:{port}/v2/models/{MODEL_NAME}/ready", timeout=1.0)
            if ready.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"MLServer was not ready after {STARTUP_SECONDS:.0f}s; see {log}")


def infer_body(encoded: np.ndarray) -> bytes:
    """A V2 inference request for these encoded rows, asking for probabilities."""
    rows = np.asarray(encoded, dtype=np.float32)
    request = {
        "inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    return json.dumps(request).encode()


def bench_mlserver(
    model_file: Path, encoded_rows: np.ndarray, workdir: Path, scale: float = 1.0
) -> dict[str, Any]:
    """The non-explain cases of ``CASES`` against MLServer in each of ``CONFIGURATIONS``: latency
    (one connection) and throughput. ``cases``: the default configuration's."""
    python = ensure_venv(workdir / "mlserver-venv")
    results: dict[str, Any] = {"pins": [*MLSERVER_PINS, *COMPATIBLE], "configurations": {}}
    for name, settings in CONFIGURATIONS.items():
        port = free_port()
        repository = write_model_repository(model_file, workdir / f"mlserver-{name}", port, settings)
        process = start_mlserver(python, repository)
        cases: dict[str, Any] = {}
        try:
            wait_ready(port, process, repository / "mlserver.log")
            for case in CASES:
                if not case.explain:
                    cases[case.name] = _run_case(port, case, encoded_rows, scale)
        finally:
            stop_server(process)
        results["configurations"][name] = {"settings": settings, "cases": cases}
    results["cases"] = results["configurations"]["default"]["cases"]
    return results


def _run_case(port: int, case: Case, encoded_rows: np.ndarray, scale: float) -> dict[str, Any]:
    rows = np.resize(encoded_rows, (case.instances, encoded_rows.shape[1]))
    request = http_request(INFER_PATH, infer_body(rows))
    seconds = case.seconds * scale
    drive(port, request, 1, min(50, case.max_requests), seconds)  # warm-up
    latency = drive(port, request, 1, case.max_requests, seconds)
    throughput = drive(port, request, case.connections, case.max_requests, seconds)
    per_instance = {"instances_per_s": throughput["requests_per_s"] * case.instances}
    return {
        "instances": case.instances,
        "latency": latency,
        "throughput": {**throughput, **per_instance, "connections": case.connections},
    }


def comparison_lines(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Endpoint / MLServer for each case both ran, per MLServer configuration (p50 below 1 and
    throughput above 1: ours is faster)."""
    lines = ["", f"  against {' + '.join(theirs['pins'])} in the same run (endpoint / MLServer):"]
    for configuration, measured in theirs["configurations"].items():
        settings = json.dumps(measured["settings"]) if measured["settings"] else "its defaults"
        lines.append(f"  MLServer {configuration} ({settings}):")
        lines += _ratio_lines(ours, measured["cases"])
    return lines


def _ratio_lines(ours: dict[str, Any], cases: dict[str, Any]) -> list[str]:
    lines = []
    for name, their in cases.items():
        our = ours["cases"][name]
        throughput = our["throughput"]["instances_per_s"] / their["throughput"]["instances_per_s"]
        lines.append(
            f"  {name:<16} p50 {our['latency']['p50_ms']:.2f} / {their['latency']['p50_ms']:.2f} ms"
            f" = {our['latency']['p50_ms'] / their['latency']['p50_ms']:.2f},"
            f" p99 {our['latency']['p99_ms']:.2f} / {their['latency']['p99_ms']:.2f} ms,"
            f" {their['throughput']['connections']} connections:"
            f" {our['throughput']['instances_per_s']:.0f} / {their['throughput']['instances_per_s']:.0f}"
            f" instances/s = {throughput:.2f}"
        )
    return lines


def find_xgboost_candidate(run_root: Path) -> Path | None:
    """The newest refit XGBoost candidate a training run under ``run_root`` saved."""
    candidates = newest_candidates(run_root)
    model = candidates / "xgboost" / "model.ubj" if candidates else None
    return model if model and model.is_file() else None


def compare_with_endpoint(
    ours: dict[str, Any], registry_version: Path, model_file: Path | None, workdir: Path, scale: float = 1.0
) -> dict[str, Any]:
    """MLServer on the endpoint's cases, in the same run, printed as endpoint / MLServer ratios;
    its rows are the bundle's reference rows through the bundle's own transformer."""
    from components.model.bundle import load_bundle, load_reference

    if model_file is None:
        print("\n  MLServer not measured: the run saved no XGBoost candidate")
        return {"error": "no XGBoost candidate"}
    encoded = load_bundle(registry_version).transformer.transform(load_reference(registry_version).head(100))
    try:
        theirs = bench_mlserver(model_file, encoded, workdir, scale)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"\n  MLServer not measured: {exc}")
        return {"error": str(exc)}
    print("\n".join(comparison_lines(ours, theirs)))
    return theirs
