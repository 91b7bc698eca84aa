"""Endpoint benchmark (``make bench``): latency and throughput of the real server on loopback.

The server runs as its own process (``python -m pipelines.cli serve``, access log and
prediction log on, as deployed); this process drives it with raw HTTP/1.1 keep-alive connections
on asyncio (uvloop), each case bounded by a request count and a time limit. Cases: 1 and 100
instances per request, explain off and on; for each, a latency run (one connection, back to back:
sustained load without queueing) and a throughput run (several connections: the server's dynamic
batching merges concurrent requests). The same bodies are then scored in-process with the server's
own code (``LoadedModel.respond``: parse, validate, transform, predict, serialise; no HTTP, no
batching) and with ``bundle.predict`` on a DataFrame, the raw limit; ratios are endpoint over
in-process. Loopback only; nothing is asserted here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

HOST = "127.0.0.1"
STARTUP_SECONDS = 120.0


@dataclass(frozen=True)
class Case:
    name: str
    instances: int
    explain: bool
    connections: int  # for the throughput run
    max_requests: int  # per run
    seconds: float  # per run
    loaded_connections: int = 0  # > 0: also the latency with this many connections in flight


CASES = (
    Case("1 instance", 1, False, 8, 20_000, 6.0, loaded_connections=2),
    Case("100 instances", 100, False, 4, 3_000, 6.0),
    Case("1 instance, explain", 1, True, 2, 2_000, 4.0),
    Case("100 instances, explain", 100, True, 1, 15, 6.0),
)


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(registry_root: Path, model_name: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """The real server, as `propensity serve` runs it, with its logs in ``workdir``."""
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "serve",
        "--registry",
        str(registry_root),
        "--model-name",
        model_name,
        "--port",
        str(port),
        "--log-dir",
        str(workdir / "prediction_log"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIP_")}
    with open(workdir / "server.log", "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = STARTUP_SECONDS) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was healthy")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not healthy after {timeout:.0f}s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class FixedAnswer:
    """An ASGI app that answers every request with one fixed JSON body: the floor of the server
    stack the endpoint runs on (uvicorn, httptools, uvloop; the same settings), with no work."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the request body as the endpoint does
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def serve_fixed_answer(port: int, body_size: int) -> None:
    """``python -m pipelines.bench.serving --floor PORT SIZE``: FixedAnswer on loopback."""
    import uvicorn

    body = b'{"predictions": []}' + b" " * max(body_size - 19, 0)  # valid JSON of the endpoint's size
    config = uvicorn.Config(
        FixedAnswer(body),
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
    )
    uvicorn.Server(config).run()


def bench_floor(response_size: int, request: bytes, scale: float) -> dict[str, Any]:
    """One connection back to back and 8 connections against FixedAnswer (what any endpoint on
    this stack pays per request), with the same request bytes as the 1-instance case."""
    port = free_port()
    command = [sys.executable, "-m", "pipelines.bench.serving", "--floor", str(port), str(response_size)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, process)
        drive(port, request, 1, 50, 2.0)
        latency = drive(port, request, 1, 20_000, 6.0 * scale)
        throughput = drive(port, request, 8, 20_000, 6.0 * scale)
    finally:
        stop_server(process)
    return {"latency": latency, "throughput": throughput}


# --------------------------------------------------------------------------- load generator


def http_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    port: int, request: bytes, deadline: float, budget: list[int], latencies: list[float], failures: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
    finally:
        writer.close()


async def _drive(
    port: int, request: bytes, connections: int, max_requests: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[int] = []
    budget = [max_requests]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(port, request, deadline, budget, latencies, failures) for _ in range(connections))
    )
    return _summary(latencies, time.perf_counter() - started, failures)


def drive(port: int, request: bytes, connections: int, max_requests: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load: ``connections`` keep-alive connections, each sending back to back."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    return runner(_drive(port, request, connections, max_requests, seconds))


def _summary(latencies: list[float], seconds: float, failures: list[int]) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "failed": len(failures),
        "seconds": round(seconds, 3),
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "requests_per_s": len(latencies) / seconds if seconds else 0.0,
    }


# --------------------------------------------------------------------------- in-process


def _timed(fn: Any, max_calls: int, seconds: float) -> dict[str, Any]:
    fn()  # warm-up
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    while len(latencies) < max_calls and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - t0)
    return _summary(latencies, time.perf_counter() - started, [])


def in_process(model: Any, body: bytes, rows: list[dict[str, Any]], case: Case) -> dict[str, Any]:
    """The server's own request code without HTTP, and ``bundle.predict`` on a DataFrame."""
    import pandas as pd

    calls = min(case.max_requests, 3000)
    handler = _timed(lambda: model.respond(body), calls, case.seconds / 2)
    frame = pd.DataFrame(rows)
    raw = _timed(lambda: model.bundle.predict(frame), calls, case.seconds / 2)
    return {"handler": handler, "bundle_predict": raw}


# --------------------------------------------------------------------------- the benchmark


def request_bodies(model: Any, rows: int, explain: bool) -> tuple[bytes, list[dict[str, Any]]]:
    instances = [dict(model.example) for _ in range(rows)]
    for i, instance in enumerate(instances):  # vary one numeric input so rows differ
        for name in model.schema.model_columns:
            if model.schema.fields[name].kind == "integer" and isinstance(instance.get(name), int):
                instance[name] = instance[name] + i % 7
                break
    params = {"explain": explain, "top_k": 5, "use_calibration": True}
    return orjson.dumps({"instances": instances, "parameters": params}), instances


def _per_instance(result: dict[str, Any], rows: int) -> dict[str, Any]:
    return {**result, "instances_per_s": result["requests_per_s"] * rows}


def bench_serving(
    registry_root: Path,
    model_name: str,
    cases: tuple[Case, ...] = CASES,
    scale: float = 1.0,
    candidates: Path | None = None,
) -> dict[str, Any]:
    """Start the server on loopback, measure every case, print a table, return the figures.

    ``scale`` multiplies every time limit (e.g. 0.2 for a quick look).
    """
    from components.registry.local import LocalRegistry
    from components.serving.model import limit_threads, load_model
    from components.serving.settings import ServeSettings

    limit_threads()  # the in-process figures run with the server's thread settings
    registry_root = Path(registry_root).resolve()
    directory = LocalRegistry(registry_root).resolve(model_name)
    model = load_model(directory, ServeSettings())
    results: dict[str, Any] = {
        "model": {"name": model_name, "version": model.version, "family": model.bundle.family},
        "cpus": os.cpu_count(),
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        port = free_port()
        process = start_server(registry_root, model_name, Path(tmp), port)
        try:
            wait_healthy(port, process)
            for case in cases:
                results["cases"][case.name] = _run_case(model, port, case, scale)
        finally:
            stop_server(process)
    results["encoder"] = bench_encoder(model)
    print(format_table(results))
    results["floor"] = _floor_against_endpoint(model, results["cases"].get("1 instance"), scale)
    results["explain_costs"] = bench_explain_costs(model, candidates)
    enc = results["encoder"]
    print(
        f"  one row through the feature transformer, in process: fitted scikit-learn steps"
        f" {enc['sklearn_ms']:.3f} ms, compiled encoder {enc['compiled_ms']:.3f} ms"
        f" (compiled / sklearn {enc['compiled_over_sklearn']:.2f}; the endpoint serves {enc['served']})"
    )
    return results


def _floor_against_endpoint(model: Any, one: dict[str, Any] | None, scale: float) -> dict[str, Any]:
    """The server stack's floor beside the endpoint's one-instance figures, printed as ratios."""
    if one is None:
        return {}
    body, _ = request_bodies(model, 1, False)
    _, _, answer = model.respond(body)
    floor = bench_floor(len(answer), http_request("/predict", body), scale)
    p50 = floor["latency"]["p50_ms"]
    rps = floor["throughput"]["requests_per_s"]
    print(
        f"  the server stack's floor (uvicorn + httptools + uvloop answering a fixed {len(answer)}-byte body,"
        f" same request): p50 {p50:.3f} ms, p99 {floor['latency']['p99_ms']:.3f} ms, 8 connections"
        f" {rps:.0f} requests/s; 1 instance endpoint / floor: p50 {one['latency']['p50_ms'] / p50:.2f},"
        f" requests/s {one['throughput']['requests_per_s'] / rps:.2f}"
    )
    return floor


def newest_candidates(run_root: Path) -> Path | None:
    """The refit candidate models (one folder per family) of the newest training run under ``run_root``."""
    found = sorted(run_root.glob("*/artifacts/*/train/models"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def bench_explain_costs(model: Any, candidates: Path | None, calls: int = 300) -> dict[str, Any]:
    """One example row explained by each family's candidate, in process, beside its own predict:
    what ``explain: true`` costs per family as the endpoint explains it (TreeSHAP tables for
    XGBoost, permutation SHAP over the budgeted centroid background for the MLP), and as it did
    before (xgboost's ``pred_contribs``; 50 reference rows) on the same row."""
    from components.model.bundle import load_reference
    from components.model.explain import contributions, fast_tree_shap
    from components.model.families import MODEL_KINDS, load_model, predict_proba
    from components.serving.model import budgeted_background
    from components.shared.errors import BundleError

    if candidates is None:
        return {}
    bundle = model.bundle
    columns = model.schema.validate_instances([model.example])
    row = bundle.transformer.transform(model.schema.model_arrays(columns))
    try:
        raw_reference = load_reference(Path(model.source))
    except BundleError:
        print("  (no explain costs: the bundle has no reference rows)")
        return {}
    sample = raw_reference.sample(n=min(1000, len(raw_reference)), random_state=0)  # as the endpoint
    reference = bundle.transformer.transform(sample)
    before = (None, reference[:50], None)  # pred_contribs; 50 rows, equally weighted
    costs: dict[str, Any] = {}
    for family in MODEL_KINDS:
        if not (candidates / family).is_dir():
            continue
        fitted = load_model(family, candidates / family)
        tables, _ = fast_tree_shap(fitted, family, reference[:50])
        served = (tables, *budgeted_background(family, fitted, reference))

        def explain(how: tuple, fitted: Any = fitted, family: str = family) -> None:
            tables, background, weights = how
            _, values = contributions(fitted, family, row, background, tables, weights)
            values @ model.raw_map

        served_ms = _timed(lambda e=explain, h=served: e(h), calls, 20.0)["p50_ms"]
        before_ms = _timed(lambda e=explain: e(before), calls, 20.0)["p50_ms"]
        predict_ms = _timed(lambda fitted=fitted: predict_proba(fitted, row), calls * 10, 10.0)["p50_ms"]
        costs[family] = {
            "explain_ms": served_ms,
            "before_ms": before_ms,
            "predict_ms": predict_ms,
            "ratio": served_ms / predict_ms,
            "served_over_before": served_ms / before_ms,
        }
    lines = [
        "",
        "  explain one instance, in process, per family (p50): as served now / as before "
        "(pred_contribs; 50 background rows), and / its own predict_proba on the row:",
    ]
    lines += [
        f"  {family:<10}{c['explain_ms']:>8.3f} ms  before {c['before_ms']:.3f} ms "
        f"({c['served_over_before']:.2f})  predict {c['predict_ms']:.3f} ms  ratio {c['ratio']:.0f}"
        for family, c in costs.items()
    ]
    print("\n".join(lines))
    return costs


def bench_encoder(model: Any, calls: int = 2000) -> dict[str, Any]:
    """One example row through ``transformer.transform``: compiled encoder vs the fitted steps."""
    transformer = model.bundle.transformer
    columns = model.schema.validate_instances([model.example])
    row = model.schema.model_arrays(columns)
    compiled = transformer.compiled
    timings = {}
    try:
        for name, encoder in (("sklearn_ms", None), ("compiled_ms", compiled)):
            transformer.compiled = encoder
            if name == "compiled_ms" and encoder is None:
                timings[name] = float("nan")
                continue
            timings[name] = _timed(lambda: transformer.transform(row), calls, 30.0)["p50_ms"]
    finally:
        transformer.compiled = compiled
    return {
        **timings,
        "compiled_over_sklearn": timings["compiled_ms"] / timings["sklearn_ms"],
        "served": "compiled" if compiled is not None else "scikit-learn steps",
    }


def _run_case(model: Any, port: int, case: Case, scale: float) -> dict[str, Any]:
    body, rows = request_bodies(model, case.instances, case.explain)
    request = http_request("/predict", body)
    seconds = case.seconds * scale
    drive(port, request, 1, min(50, case.max_requests), seconds)  # warm-up
    latency = _per_instance(drive(port, request, 1, case.max_requests, seconds), case.instances)
    throughput = _per_instance(
        drive(port, request, case.connections, case.max_requests, seconds), case.instances
    )
    loaded = None
    if case.loaded_connections:
        loaded = drive(port, request, case.loaded_connections, case.max_requests, seconds)
        loaded = {**_per_instance(loaded, case.instances), "connections": case.loaded_connections}
    local = in_process(model, body, rows, Case(**{**case.__dict__, "seconds": seconds}))
    handler = _per_instance(local["handler"], case.instances)
    raw = _per_instance(local["bundle_predict"], case.instances)
    return {
        "instances": case.instances,
        "explain": case.explain,
        "latency": latency,
        "throughput": {**throughput, "connections": case.connections},
        "loaded_latency": loaded,
        "in_process": handler,
        "bundle_predict": raw,
        "ratios": {
            "p50_endpoint_over_in_process": latency["p50_ms"] / handler["p50_ms"],
            "p99_endpoint_over_in_process": latency["p99_ms"] / handler["p99_ms"],
            "throughput_endpoint_over_in_process": throughput["instances_per_s"] / handler["instances_per_s"],
            "p50_endpoint_over_bundle_predict": latency["p50_ms"] / raw["p50_ms"],
        },
    }


def format_table(results: dict[str, Any]) -> str:
    model = results["model"]
    lines = [
        "",
        f"serving benchmark: {model['name']} {model['version']} ({model['family']}), {results['cpus']} CPUs",
        "",
        f"  {'case':<24}{'p50 ms':>8}{'p99 ms':>8}{'req/s':>9}{'inst/s':>10}{'  in-proc p50':>14}"
        f"{'inst/s':>10}{'bundle.predict':>16}{'p50 ratio':>11}{'thr. ratio':>11}{'failed':>8}",
    ]
    for name, case in results["cases"].items():
        lat, thr, local, raw, ratio = (
            case["latency"],
            case["throughput"],
            case["in_process"],
            case["bundle_predict"],
            case["ratios"],
        )
        failed = lat["failed"] + thr["failed"]
        lines.append(
            f"  {name:<24}{lat['p50_ms']:>8.2f}{lat['p99_ms']:>8.2f}{thr['requests_per_s']:>9.0f}"
            f"{thr['instances_per_s']:>10.0f}{local['p50_ms']:>14.2f}{local['instances_per_s']:>10.0f}"
            f"{raw['p50_ms']:>13.2f} ms{ratio['p50_endpoint_over_in_process']:>11.2f}"
            f"{ratio['throughput_endpoint_over_in_process']:>11.2f}{failed:>8d}"
        )
    lines.append("")
    for name, case in results["cases"].items():
        for key, label in (("loaded_latency", "latency with"), ("throughput", "throughput run,")):
            run = case.get(key)
            if run:
                lines.append(
                    f"  {name}, {label} {run['connections']} connections: p50 {run['p50_ms']:.2f} ms, "
                    f"p99 {run['p99_ms']:.2f} ms at {run['requests_per_s']:.0f} requests/s"
                )
    lines += [
        "",
        "  p50/p99: one connection, back to back; req/s and inst/s: several connections (see JSON);",
        "  in-proc: the server's request code without HTTP; ratios: endpoint / in-process.",
        "  targets (1 instance): p50 <= 2 ms, p99 <= 5 ms, >= 1000 predictions/s; 100 instances: >= 20000/s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--floor"]:
        serve_fixed_answer(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=Path(".propensity") / "registry")
    parser.add_argument("--model-name", default="marketing-propensity")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every time limit")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--runs", type=Path, help="a runs folder: explain costs of its newest candidates")
    args = parser.parse_args(argv)
    candidates = newest_candidates(args.runs) if args.runs else None
    results = bench_serving(args.registry, args.model_name, scale=args.scale, candidates=candidates)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
