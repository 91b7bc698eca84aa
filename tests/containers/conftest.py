"""Container tests (`make test-containers`): the images built for real, the pipelines and the endpoint
run in them on a real Docker engine, with host networking only.

Outside CI a missing engine skips these tests with the reason; in CI (CI=true) it fails them, so a
container test never passes by not running. The images are built once per session by the project's
own build script (`make images`); the Docker layer cache makes a repeated build a matter of seconds.

When the tests run as root (CI), the CLI is run as an unrelated non-root user (uid 4242, in the
docker group so it can reach the engine) with the machine's Python on the venv's packages, so that
"files belong to the invoking user" is checked for a user other than root.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import FAST_OVERRIDES

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 3600
RUN_TIMEOUT = 900
USER_UID = 4242  # the "invoking user" when the tests run as root
SERVING_UID = 4343  # an unrelated user the endpoint container runs as
MODEL_NAME = "marketing-propensity"  # what FAST_OVERRIDES' runs register


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A client of the Docker engine; no engine: skip, or fail in CI."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        message = f"no Docker engine answers ({exc.__class__.__name__}: {exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; in CI the container tests never skip (.ci/run starts dockerd)")
        pytest.skip(message)
    yield client
    client.close()


@dataclass(frozen=True)
class BuiltImages:
    record: dict[str, Any]  # build/images.json: base, base_kind, images -> tag, size, seconds
    output: str  # what `make images` printed

    def tag(self, image: str) -> str:
        return str(self.record["images"][image]["tag"])


@pytest.fixture(scope="session")
def images(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    """Both images, built by the project's build script (`make images`)."""
    record = tmp_path_factory.mktemp("images") / "images.json"
    result = subprocess.run(
        ["bash", "containers/build.sh"],
        cwd=REPO,
        env={**os.environ, "IMAGES_RECORD": str(record)},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, f"make images failed:\n{result.stdout}\n{result.stderr}"
    return BuiltImages(json.loads(record.read_text()), result.stdout)


@dataclass(frozen=True)
class User:
    """Who runs the CLI: the current user, or (as root) the unrelated USER_UID."""

    uid: int
    gid: int
    prefix: tuple[str, ...]  # command prefix that runs as this user
    python: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        command = [*self.prefix, self.python, "-m", "pipelines.cli", *args]
        return subprocess.run(
            command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def make_dir(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        return path


def _readable_by_everyone(path: Path) -> None:
    """Let another uid traverse to ``path`` (pytest's tmp folders are 0700)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if folder.owner() == "root" and not mode & 0o001:
            folder.chmod(mode | 0o005)


@pytest.fixture(scope="session")
def user(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> User:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "PYTEST_"))}
    if os.getuid() != 0:
        return User(os.getuid(), os.getgid(), (), sys.executable, base_env)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the CLI as a non-root user"
    docker_gid = grp.getgrnam("docker").gr_gid
    home = tmp_path_factory.mktemp("user-home")
    _readable_by_everyone(home)
    os.chown(home, USER_UID, USER_UID)
    # The venv's interpreter may live under /root (0700); the machine's Python of the same minor
    # version runs the same packages (same ABI), read from the venv's site-packages.
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert Path(python).exists(), f"{python} is needed to run the CLI as uid {USER_UID}"
    env = {
        **base_env,
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]),
    }
    prefix = (setpriv, f"--reuid={USER_UID}", f"--regid={USER_UID}", f"--groups={docker_gid}", "--")
    return User(USER_UID, USER_UID, prefix, python, env)


def fast_args(workdir: Path, data: Path, *extra: str) -> list[str]:
    args = ["--workdir", str(workdir), "--data", str(data), "--runner", "docker"]
    for item in FAST_OVERRIDES:
        args += ["--set", item]
    return [*args, *extra]


@dataclass(frozen=True)
class TrainedInContainers:
    workdir: Path
    data: pd.DataFrame
    data_file: Path
    summary: dict[str, Any]
    result: subprocess.CompletedProcess[str]

    @property
    def registry(self) -> Path:
        return self.workdir / "registry"

    @property
    def version_dir(self) -> Path:
        return self.registry / MODEL_NAME / "versions" / self.summary["deployment"]["version"]


@pytest.fixture(scope="session")
def trained(images: BuiltImages, user: User, tmp_path_factory: pytest.TempPathFactory) -> TrainedInContainers:
    """`propensity run --runner docker` by ``user``, on data outside the work directory."""
    from components.data.synthetic import generate_marketing

    root = tmp_path_factory.mktemp("trained-in-containers")
    _readable_by_everyone(root)
    workdir = user.make_dir(root / "work")
    data_dir = user.make_dir(root / "data")
    frame = generate_marketing(rows=700, seed=5)
    data_file = data_dir / "customers.csv"
    frame.to_csv(data_file, index=False)
    os.chown(data_file, user.uid, user.gid)
    result = user.run("run", "--json", *fast_args(workdir, data_file, "--image", images.tag("pipeline")))
    assert result.returncode == 0, f"run --runner docker failed:\n{result.stdout[-4000:]}\n{result.stderr}"
    summary = json.loads(result.stdout[result.stdout.index("\n{") :])
    return TrainedInContainers(workdir, frame, data_file, summary, result)
