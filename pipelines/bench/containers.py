"""``make bench-containers``: the images and the pipelines in them, measured against the venv in one run.

1. Builds: a cold one (``--cold``: no layer cache and a new stand-in base) and a warm one (the cache
   as it is), seconds per image, and both image sizes.
2. The default training run (synthetic marketing data, default config) in this venv and then with
   every task in the pipeline image, on the same data: wall times, their ratio, and each task's wall
   time beside its stage body (the difference is start-up: the process, its imports, the container).
3. The endpoint: ``docker run`` of the serving image on the bundle just trained, to the first 200 on
   health, against ``propensity serve`` started in this venv on the same bundle.

Figures are printed and written to WORKDIR/containers.json; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pipelines.containers import DEFAULT_PIPELINE_IMAGE, ContainerPlan, same_path_mounts

REPO = Path(__file__).resolve().parents[1]
SERVING_IMAGE = "propensity-serving:local"
HEALTHY_WITHIN_SECONDS = 180.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-containers", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".propensity") / "bench-containers")
    parser.add_argument("--cold", action="store_true", help="also time a build without any cache")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if args.cold:
        results["cold_build"] = build_images(workdir / "cold-build.json", no_cache=True)
    results["warm_build"] = build_images(workdir / "warm-build.json", no_cache=False)
    results["default_run"] = bench_default_runs(workdir)
    bundle = Path(results["default_run"]["docker"]["bundle"])
    results["serving_start"] = bench_serving_start(bundle, workdir)
    out = workdir / "containers.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")
    return 0


def build_images(record: Path, no_cache: bool) -> dict[str, Any]:
    env = {**os.environ, "IMAGES_RECORD": str(record)}
    if no_cache:
        env["NO_CACHE"] = "1"
    subprocess.run(["bash", "containers/build.sh"], cwd=REPO, env=env, check=True)
    built = json.loads(record.read_text())
    kind = "cold" if no_cache else "warm"
    for image in built["images"].values():
        print(
            f"{kind} build of {image['tag']}: {image['build_seconds']:.1f} s, "
            f"{image['size_bytes'] / 1e6:.0f} MB (base: {built['base_kind']} {built['base']})"
        )
    if built.get("standin_seconds") is not None and no_cache:
        print(f"  stand-in base made in {built['standin_seconds']:.1f} s (debootstrap + docker import)")
    return built


def bench_default_runs(workdir: Path) -> dict[str, Any]:
    """The default run twice on the same data: tasks in this venv, then in the pipeline image."""
    from components.data.synthetic import ensure_default_data
    from components.shared.config import Config
    from pipelines.bench.pipeline import describe_run, train_locally

    data = str(ensure_default_data(workdir / "data" / "marketing-2240").resolve())
    runs: dict[str, Any] = {}
    for runner in ("venv", "docker"):
        plan = None
        if runner == "docker":
            plan = ContainerPlan(
                image=DEFAULT_PIPELINE_IMAGE,
                user=f"{os.getuid()}:{os.getgid()}",
                run_label=f"bench-{time.time_ns()}",
                mounts=same_path_mounts(workdir, [data], []),
                environment={"HOME": "/tmp"},
            )
        run = train_locally(Config(), data, workdir, f"default-{runner}", containers=plan)
        runs[runner] = describe_run("containers" if plan else "the venv", run)
    ratio = runs["docker"]["wall_seconds"] / runs["venv"]["wall_seconds"]
    print(f"default run, tasks in containers / in the venv: {ratio:.2f} (wall time)")
    return {**runs, "docker_over_venv": ratio}


def bench_serving_start(bundle: Path, workdir: Path) -> dict[str, Any]:
    """Seconds from start to the first 200 on health: the serving container vs the venv's server."""
    import docker

    from pipelines.bench.serving import free_port, stop_server

    port = free_port()
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "serve",
        "--bundle",
        str(bundle),
        "--port",
        str(port),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIP_")}
    with open(workdir / "serve-venv.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        venv_seconds = seconds_to_healthy(port, started, alive=lambda: process.poll() is None)
    finally:
        stop_server(process)

    client = docker.from_env()
    port = free_port()
    started = time.monotonic()
    container = client.containers.run(
        SERVING_IMAGE,
        detach=True,
        network_mode="host",
        user="4343:4343",
        environment={
            "AIP_HTTP_PORT": str(port),
            "AIP_STORAGE_URI": str(bundle),
            "PREDICTION_LOG_DIR": "/tmp/log",
        },
        volumes={str(bundle): {"bind": str(bundle), "mode": "ro"}},
    )
    try:
        container_seconds = seconds_to_healthy(port, started, alive=lambda: _running(container))
    finally:
        container.remove(force=True)
        client.close()
    ratio = container_seconds / venv_seconds
    print(
        f"\nendpoint start to healthy: serving container {container_seconds:.2f} s (docker run, read-only"
        f" bundle, uid 4343), venv {venv_seconds:.2f} s; container / venv {ratio:.2f}"
    )
    return {
        "container_seconds": container_seconds,
        "venv_seconds": venv_seconds,
        "container_over_venv": ratio,
    }


def _running(container: Any) -> bool:
    container.reload()
    return container.status != "exited"


def seconds_to_healthy(port: int, started: float, alive: Any) -> float:
    deadline = started + HEALTHY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            if not alive():
                raise RuntimeError(f"the endpoint on port {port} exited before it was healthy") from None
        time.sleep(0.02)
    raise RuntimeError(f"the endpoint on port {port} was not healthy after {HEALTHY_WITHIN_SECONDS:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
