"""MLServer beside the endpoint (``make bench``): the same load generator, in the same run, against
MLServer + mlserver-xgboost serving an XGBoost model of the same table. The endpoint and each MLServer
configuration are up at once and measured in turn, case by case, in rotating rounds
(``bench_interleaved``): the figures compared were taken minutes, not seconds, apart before, and
this machine's speed drifts by 1.5-2x within a run.

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
from dataclasses import dataclass
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
    request_bodies,
    start_server,
    stop_server,
    wait_healthy,
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


ENDPOINT = "endpoint"
ROUNDS = 3  # interleaved rounds per case: each target measured once a round, in a rotating order


@dataclass
class Target:
    """One server under comparison and the request bytes it gets for each case."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    requests: dict[str, bytes]


def bench_interleaved(
    endpoint: tuple[Path, str, bytes, bytes],
    model_file: Path,
    encoded_rows: np.ndarray,
    workdir: Path,
    scale: float = 1.0,
) -> dict[str, Any]:
    """The endpoint and MLServer in each of ``CONFIGURATIONS``, all started at once and measured in
    turn (``ROUNDS`` rounds per case, rotating the order), so that a machine whose speed drifts
    during the run (these do, by 1.5-2x) weighs on every side alike. Per target and case: the
    median over rounds of p50, p99 (one connection) and instances/s (``case.connections``).

    ``endpoint``: (registry root, model name, the 1- and 100-instance request bodies).
    """
    python = ensure_venv(workdir / "mlserver-venv")
    registry_root, model_name, one, hundred = endpoint
    cases = [case for case in CASES if not case.explain]
    bodies = {1: one, 100: hundred}
    targets: list[Target] = []
    try:
        port = free_port()
        (workdir / ENDPOINT).mkdir(parents=True, exist_ok=True)
        process = start_server(registry_root, model_name, workdir / ENDPOINT, port)
        ours = {c.name: http_request("/predict", bodies[c.instances]) for c in cases}
        targets.append(Target(ENDPOINT, port, process, ours))
        wait_healthy(port, process)
        for name, settings in CONFIGURATIONS.items():
            port = free_port()
            repository = write_model_repository(model_file, workdir / f"mlserver-{name}", port, settings)
            theirs = {
                c.name: http_request(
                    INFER_PATH, infer_body(np.resize(encoded_rows, (c.instances, encoded_rows.shape[1])))
                )
                for c in cases
            }
            targets.append(Target(f"MLServer {name}", port, start_mlserver(python, repository), theirs))
            wait_ready(port, targets[-1].process, repository / "mlserver.log")
        measured = {case.name: _interleave(targets, case, scale) for case in cases}
    finally:
        for target in targets:
            stop_server(target.process)
    return {
        "pins": [*MLSERVER_PINS, *COMPATIBLE],
        "rounds": ROUNDS,
        "settings": {f"MLServer {name}": settings for name, settings in CONFIGURATIONS.items()},
        "cases": measured,
    }


def _interleave(targets: list[Target], case: Case, scale: float) -> dict[str, Any]:
    seconds = case.seconds * scale / ROUNDS
    runs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {t.name: [] for t in targets}
    for target in targets:
        drive(target.port, target.requests[case.name], 1, min(50, case.max_requests), seconds)  # warm-up
    for round_ in range(ROUNDS):
        for target in targets[round_ % len(targets) :] + targets[: round_ % len(targets)]:
            request = target.requests[case.name]
            latency = drive(target.port, request, 1, case.max_requests, seconds)
            throughput = drive(target.port, request, case.connections, case.max_requests, seconds)
            runs[target.name].append((latency, throughput))
    return {
        name: {
            "p50_ms": float(np.median([lat["p50_ms"] for lat, _ in pairs])),
            "p99_ms": float(np.median([lat["p99_ms"] for lat, _ in pairs])),
            "instances_per_s": float(np.median([thr["requests_per_s"] for _, thr in pairs])) * case.instances,
            "connections": case.connections,
            "rounds": [{"latency": lat, "throughput": thr} for lat, thr in pairs],
        }
        for name, pairs in runs.items()
    }


def comparison_lines(measured: dict[str, Any]) -> list[str]:
    """Endpoint / each MLServer configuration for each case (p50 below 1 and throughput above 1:
    ours is faster), from the interleaved medians."""
    lines = [
        "",
        f"  against {' + '.join(measured['pins'])}, interleaved in {measured['rounds']} rounds"
        " (medians; endpoint / MLServer):",
    ]
    for case, by_target in measured["cases"].items():
        ours = by_target[ENDPOINT]
        for name, theirs in by_target.items():
            if name == ENDPOINT:
                continue
            lines.append(
                f"  {case:<14} {name:<20} p50 {ours['p50_ms']:.2f} / {theirs['p50_ms']:.2f} ms"
                f" = {ours['p50_ms'] / theirs['p50_ms']:.2f}, p99 {ours['p99_ms']:.2f} /"
                f" {theirs['p99_ms']:.2f} ms, {theirs['connections']} connections:"
                f" {ours['instances_per_s']:.0f} / {theirs['instances_per_s']:.0f} instances/s"
                f" = {ours['instances_per_s'] / theirs['instances_per_s']:.2f}"
            )
    for name, settings in measured["settings"].items():
        lines.append(f"  {name}: {json.dumps(settings) if settings else 'its defaults'}")
    return lines


def find_xgboost_candidate(run_root: Path) -> Path | None:
    """The newest refit XGBoost candidate a training run under ``run_root`` saved."""
    candidates = newest_candidates(run_root)
    model = candidates / "xgboost" / "model.ubj" if candidates else None
    return model if model and model.is_file() else None


def compare_with_endpoint(
    registry_root: Path,
    model_name: str,
    registry_version: Path,
    model_file: Path | None,
    workdir: Path,
    scale: float = 1.0,
) -> dict[str, Any]:
    """The endpoint and MLServer interleaved on the non-explain cases, printed as endpoint / MLServer
    ratios; MLServer's rows are the bundle's reference rows through the bundle's own transformer,
    the endpoint's the same requests as the serving benchmark's."""
    from components.model.bundle import load_bundle, load_reference
    from components.serving.model import load_model
    from components.serving.settings import ServeSettings

    if model_file is None:
        print("\n  MLServer not measured: the run saved no XGBoost candidate")
        return {"error": "no XGBoost candidate"}
    encoded = load_bundle(registry_version).transformer.transform(load_reference(registry_version).head(100))
    model = load_model(registry_version, ServeSettings())
    one, hundred = (request_bodies(model, rows, False)[0] for rows in (1, 100))
    endpoint = (registry_root, model_name, one, hundred)
    try:
        measured = bench_interleaved(endpoint, model_file, encoded, workdir, scale)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"\n  MLServer not measured: {exc}")
        return {"error": str(exc)}
    print("\n".join(comparison_lines(measured)))
    return measured
