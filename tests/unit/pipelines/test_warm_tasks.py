"""Warm task processes: kfp.local's SubprocessRunner runs real components as children forked from
the zygote, with the task's output, environment and exit status, and falls back to kfp's own
process start for any command it does not recognise. (No ``from __future__ import annotations``:
KFP reads the components' annotations from their live signatures.)"""

import json
import os
from collections.abc import Iterator

import pytest
from kfp import dsl, local
from kfp.local import subprocess_task_handler

from pipelines.warm_tasks import WarmTasks, parse_task_command, shell_body_modules, warm_task_processes


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def where_am_i() -> str:
    """Which process started this task, what it sees of the environment, what it found imported."""
    import json
    import os
    import sys

    already = "numpy" in sys.modules
    print("hello from the task")
    marker = os.environ.get("PROPENSITY_TEST_MARKER", "")
    with open(f"/proc/{os.getppid()}/comm") as comm:
        started_by = comm.read().strip()
    return json.dumps(
        {"parent": os.getppid(), "started_by": started_by, "marker": marker, "numpy_was_loaded": already}
    )


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fails(code: int) -> str:
    import os
    import signal
    import sys

    if code < 0:
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(code)


@pytest.fixture()
def local_runner(tmp_path) -> Iterator[None]:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    yield
    local.config.LocalExecutionConfig.instance = None


def test_a_component_runs_in_a_child_of_the_zygote(local_runner, monkeypatch, capfd) -> None:
    monkeypatch.setenv("PROPENSITY_TEST_MARKER", "seen")
    with warm_task_processes() as warm:
        task = where_am_i()
        zygote = warm.process.pid
    seen = json.loads(task.output)
    assert seen["parent"] == zygote != os.getpid()
    assert seen["started_by"].startswith("python")
    assert seen["marker"] == "seen"  # the runner's environment at the time of the task
    assert "hello from the task" in capfd.readouterr().out
    assert subprocess_task_handler.run_local_subprocess.__module__ == "kfp.local.subprocess_task_handler"


def test_the_zygote_is_warm_by_the_time_later_tasks_come(local_runner) -> None:
    with warm_task_processes() as warm:
        first = where_am_i()  # served at once, whatever the zygote has imported by then
        assert warm.wait_until_warm()
        later = where_am_i()
    assert json.loads(first.output)["parent"] == json.loads(later.output)["parent"] == warm.process.pid
    assert json.loads(later.output)["numpy_was_loaded"] is True


@pytest.mark.parametrize("code", [3, -9])
def test_a_failing_or_killed_task_fails(local_runner, code: int, capfd) -> None:
    with warm_task_processes(), pytest.raises(RuntimeError, match="FAILURE"):
        fails(code=code)
    if code < 0:
        assert "ended without an exit status" in capfd.readouterr().err


def test_the_runner_after_the_block_is_kfps_own(local_runner) -> None:
    original = subprocess_task_handler.run_local_subprocess
    with warm_task_processes():
        assert subprocess_task_handler.run_local_subprocess is not original
    assert subprocess_task_handler.run_local_subprocess is original
    assert json.loads(where_am_i().output)["started_by"] == "sh"  # kfp's own: sh -ec '... python3 -m ...'


def test_kfps_task_command_is_recognised_and_others_are_not() -> None:
    spec = where_am_i.component_spec.implementation.container
    kfp_command = [*spec.command, *spec.args]
    command = subprocess_task_handler.replace_python_executable(kfp_command, "/venv/bin/python")
    task = parse_task_command(command)
    assert task is not None
    assert "def where_am_i" in task.program
    assert task.args == ["--executor_input", "{{$}}", "--function_to_execute", "where_am_i"]
    assert task.env == {"_KFP_RUNTIME": "true"}
    with_pip = dsl.component(where_am_i.python_func, base_image="python:3.11")  # installs kfp first
    pip_spec = with_pip.component_spec.implementation.container
    assert parse_task_command([*pip_spec.command, *pip_spec.args]) is None
    assert parse_task_command(["python", "-c", "print(1)"]) is None


def test_a_zygote_that_is_gone_hands_the_task_back(tmp_path) -> None:
    spec = where_am_i.component_spec.implementation.container
    task = parse_task_command([*spec.command, *spec.args])
    warm = WarmTasks()
    warm.process.kill()
    warm.process.wait()
    try:
        assert warm.run(task, None) is None  # kfp's own process start takes over
    finally:
        warm.close()
    assert not warm.directory.exists()


def test_the_zygote_preloads_what_the_shells_import() -> None:
    modules = shell_body_modules()
    expected = {"components.model.features", "components.data.reading", "components.batch.scoring"}
    assert expected <= set(modules)
