"""``--runner docker``: every pipeline task in the pipeline image, through ``kfp.local.DockerRunner``.

What the KFP runner does by itself: one container per task, the pipeline root bind-mounted at the
same path. What this module adds, so that a local run behaves as it does in the venv:

- the work directory (data, registry, runs, prediction log) and any data file, registry or log the
  user named outside it are bind-mounted at the same host paths (inputs read-only), so every path in
  the pipeline's arguments means the same file inside a task as outside;
- tasks run as the invoking user's uid:gid, so what they write on the host is the user's (the image's
  own non-root user 10001 stays the default on Vertex AI and KFP clusters); HOME=/tmp, since that uid
  has no home in the image;
- host networking only (no container bridge on these machines), the GCS emulator variables passed on;
- every task container carries a label with the run's name, so a run that is stopped (time-out,
  Ctrl-C) removes the containers it started instead of leaving them running;
- a task's exit status is read before its container is removed: kfp 2.17 starts task containers with
  auto_remove and takes a container that is gone before ``wait()`` for a success, so a task that fails
  fast was reported SUCCESS (seen here: ingest's PermissionError; kubeflow/pipelines#13332, fixes
  not merged). ``use_exit_status_fix`` replaces that one function in the process that runs the pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.shared.errors import DataValidationError

DEFAULT_PIPELINE_IMAGE = "propensity-pipeline:local"
RUN_LABEL = "org.propensity.run"
# Host settings a task needs to reach the same services as a venv task (GCS emulator, project).
PASSED_ENVIRONMENT = ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
RUNNERS = ("subprocess", "docker")


class ContainerError(RuntimeError):
    """The Docker engine or the image is not there; the message says what to do."""


@dataclass(frozen=True)
class ContainerPlan:
    """How each task container is run: the JSON-able half of a ``kfp.local.DockerRunner``."""

    image: str
    user: str
    run_label: str
    mounts: tuple[tuple[str, bool], ...] = ()  # (host path, read-only), each mounted at the same path
    environment: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "user": self.user,
            "run_label": self.run_label,
            "mounts": [list(m) for m in self.mounts],
            "environment": self.environment,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerPlan:
        return cls(
            image=data["image"],
            user=data["user"],
            run_label=data["run_label"],
            mounts=tuple((str(path), bool(ro)) for path, ro in data["mounts"]),
            environment=dict(data["environment"]),
        )

    def docker_runner(self) -> Any:
        """The KFP runner for this plan (in the process that runs the pipeline)."""
        from docker.types import Mount
        from kfp import local

        return local.DockerRunner(
            network_mode="host",
            user=self.user,
            environment=self.environment,
            labels={RUN_LABEL: self.run_label},
            mounts=[
                Mount(target=path, source=path, type="bind", read_only=read_only)
                for path, read_only in self.mounts
            ],
        )


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runner",
        choices=RUNNERS,
        default="subprocess",
        help="subprocess: each task in a process of this venv; docker: each task in the pipeline image",
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_PIPELINE_IMAGE,
        help=f"with --runner docker: the pipeline image (default {DEFAULT_PIPELINE_IMAGE}, `make images`)",
    )
    parser.add_argument(
        "--fresh-task-processes",
        action="store_true",
        help="with --runner subprocess: start every task as a new Python process, as kfp does, instead"
        " of forking it from one that has imported kfp and the ML stack already (pipelines/warm_tasks.py)",
    )


def plan_for(
    args: argparse.Namespace,
    run_label: str,
    workdir: Path,
    read_only: Iterable[str] = (),
    read_write: Iterable[str] = (),
) -> ContainerPlan | None:
    """The container plan of ``--runner docker`` (None for the subprocess runner)."""
    if args.runner != "docker":
        return None
    require_image(args.image)
    return ContainerPlan(
        image=args.image,
        user=f"{os.getuid()}:{os.getgid()}",
        run_label=run_label,
        mounts=same_path_mounts(workdir, read_only, read_write),
        environment={"HOME": "/tmp", **{k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ}},
    )


def describe(plan: ContainerPlan | None) -> str:
    """The run header's note on where tasks run ("" for the subprocess runner)."""
    return f"; each task in {plan.image} as {plan.user}" if plan else ""


def same_path_mounts(
    workdir: Path, read_only: Iterable[str], read_write: Iterable[str]
) -> tuple[tuple[str, bool], ...]:
    """The work directory and each local path outside it; gs:// URIs and empty values need none.

    A read-write path must be a folder that exists or can be made (a registry, a log); a read-only
    one must exist (the data). Paths inside an earlier mount are covered by it.
    """
    workdir.mkdir(parents=True, exist_ok=True)  # a bind mount of a missing folder fails
    mounts: list[tuple[str, bool]] = [(str(workdir), False)]
    wanted = [(p, True) for p in read_only] + [(p, False) for p in read_write]
    for raw, ro in wanted:
        if not raw or raw.startswith("gs://"):
            continue
        path = Path(raw)
        if not path.is_absolute():
            raise DataValidationError(f"{raw}: a task container can only be given an absolute path")
        if ro and not path.exists():
            raise DataValidationError(f"{raw}: no such file or folder (it would be mounted into each task)")
        if not ro:
            path.mkdir(parents=True, exist_ok=True)
        if any(_inside(path, Path(mounted)) for mounted, _ in mounts):
            continue
        mounts.append((str(path), ro))
    return tuple(mounts)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def docker_client() -> Any:
    """A client of the local Docker engine, or a ContainerError that says how to get one."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ContainerError("the docker Python package is missing: make install") from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise ContainerError(
            f"--runner docker: no Docker engine answers ({exc.__class__.__name__}); start one "
            "(README, Containers: dockerd --bridge=none --iptables=false --ip-forward=false)"
        ) from exc
    return client


def require_image(image: str) -> None:
    """Fail before any task starts when the image is not built (KFP would try to pull it)."""
    import docker.errors

    client = docker_client()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ContainerError(
            f"--runner docker: image {image!r} is not built here: run `make images` first"
        ) from None
    finally:
        client.close()


def remove_run_containers(run_label: str) -> int:
    """Force-remove every container of this run still there (after a time-out or an interrupt)."""
    client = docker_client()
    try:
        import docker.errors

        containers = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_label}"})
        for container in containers:
            with contextlib.suppress(docker.errors.NotFound):  # it ended and went meanwhile
                container.remove(force=True)
        return len(containers)
    finally:
        client.close()


def run_task_container(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **run: Any
) -> int:
    """kfp.local's ``run_docker_container`` without auto_remove: stream the logs, read the exit
    status, then remove the container (whatever happened)."""
    import docker.errors
    from kfp.local import docker_task_handler

    container = client.containers.run(
        image=docker_task_handler.add_latest_tag_if_not_present(image),
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes=volumes,
        **run,
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)


def use_exit_status_fix() -> None:
    """Make kfp.local's Docker task handler use ``run_task_container`` (see the module docstring)."""
    from kfp.local import docker_task_handler

    docker_task_handler.run_docker_container = run_task_container
