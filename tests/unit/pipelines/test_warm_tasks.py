"""Warm task processes: kfp.local's SubprocessRunner runs real components as children forked from
the zygote, with the task's output, environment, working directory and exit status, and falls back
to kfp's own process start for any command it does not recognise. (No ``from __future__ import
annotations``: KFP reads the components' annotations from their live signatures.)"""

import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.local import subprocess_task_handler

from pipelines.warm_tasks import (
    TaskCommand,
    WarmTasks,
    parse_task_command,
    shell_body_modules,
    warm_task_processes,
)


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
        {
            "parent": os.getppid(),
            "started_by": started_by,
            "marker": marker,
            "numpy_was_loaded": already,
            "cwd": os.getcwd(),
        }
    )


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def ends(how: str) -> str:
    """Ends the way ``how`` says: 'exit-3', 'os-exit-0', 'killed', or 'error'."""
    import os
    import signal
    import sys

    print(f"ending: {how}")
    if how == "exit-3":
        sys.exit(3)
    if how == "os-exit-0":
        os._exit(0)
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError("a failing body")


def task_for(component, tmp_path: Path, **inputs) -> TaskCommand:
    """kfp's own task command for ``component`` with its executor input filled in."""
    spec = component.component_spec.implementation.container
    executor_input = {
        "inputs": {"parameterValues": inputs},
        "outputs": {
            "parameters": {"Output": {"outputFile": str(tmp_path / "Output")}},
            "outputFile": str(tmp_path / "executor_output.json"),
        },
    }
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in spec.args]
    command = subprocess_task_handler.replace_python_executable([*spec.command, *args], sys.executable)
    task = parse_task_command(command)
    assert task is not None
    return task


@pytest.fixture()
def local_runner(tmp_path) -> Iterator[None]:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    yield
    local.config.LocalExecutionConfig.instance = None


def test_a_component_runs_in_a_child_of_the_zygote(local_runner, monkeypatch, tmp_path) -> None:
    with warm_task_processes() as warm:
        monkeypatch.setenv("PROPENSITY_TEST_MARKER", "seen")  # after the zygote started
        monkeypatch.chdir(tmp_path)
        task = where_am_i()
        zygote = warm.process.pid
    seen = json.loads(task.output)
    assert seen["parent"] == zygote != os.getpid()
    assert seen["started_by"].startswith("python")
    assert seen["marker"] == "seen"  # the runner's environment at the time of the task
    assert seen["cwd"] == str(tmp_path)


def test_the_zygote_is_warm_by_the_time_later_tasks_come(local_runner) -> None:
    with warm_task_processes() as warm:
        first = where_am_i()  # served at once, whatever the zygote has imported by then
        assert warm.wait_until_warm(timeout=180)
        later = where_am_i()
    assert json.loads(first.output)["parent"] == json.loads(later.output)["parent"] == warm.process.pid
    assert json.loads(later.output)["numpy_was_loaded"] is True


@pytest.mark.parametrize(("how", "code"), [("exit-3", 3), ("os-exit-0", 0), ("killed", -9), ("error", 1)])
def test_the_exit_status_is_the_tasks_own(tmp_path, capsys, how: str, code: int) -> None:
    warm = WarmTasks()
    try:
        assert warm.run(task_for(ends, tmp_path, how=how), None) == code
    finally:
        warm.close()
    printed = capsys.readouterr()
    assert f"ending: {how}" in printed.out  # streamed through the runner's pipe
    if how == "killed":
        assert "killed by signal 9" in printed.err
    assert not warm.directory.exists()


def test_concurrent_tasks_each_get_their_own_child(tmp_path) -> None:
    """ParallelFor runs tasks in threads: requests arrive together."""
    warm = WarmTasks()
    try:
        tasks = [task_for(where_am_i, tmp_path / str(i)) for i in range(4)]
        for i in range(4):
            (tmp_path / str(i)).mkdir()
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda task: warm.run(task, None), tasks))
        written = [json.loads((tmp_path / str(i) / "executor_output.json").read_text()) for i in range(4)]
        outputs = [json.loads(w["parameterValues"]["Output"]) for w in written]
    finally:
        warm.close()
    assert codes == [0, 0, 0, 0]
    assert {o["parent"] for o in outputs} == {warm.process.pid}


def test_a_failing_component_fails_the_kfp_task(local_runner) -> None:
    with warm_task_processes(), pytest.raises(RuntimeError, match="FAILURE"):
        ends(how="exit-3")


def test_the_runner_after_the_block_is_kfps_own(local_runner) -> None:
    original = subprocess_task_handler.run_local_subprocess
    with warm_task_processes():
        assert subprocess_task_handler.run_local_subprocess is not original
    assert subprocess_task_handler.run_local_subprocess is original
    assert json.loads(where_am_i().output)["started_by"] == "sh"  # kfp's own: sh -ec '... python3 -m ...'


def test_kfps_task_command_is_recognised_and_others_are_not() -> None:
    spec = where_am_i.component_spec.implementation.container
    kfp_command = [*spec.command, *spec.args]
    task = parse_task_command(subprocess_task_handler.replace_python_executable(kfp_command, sys.executable))
    assert task is not None
    assert "def where_am_i" in task.program
    assert task.args == ["--executor_input", "{{$}}", "--function_to_execute", "where_am_i"]
    assert task.env == {"_KFP_RUNTIME": "true"}
    other_python = subprocess_task_handler.replace_python_executable(kfp_command, "/venv/bin/python")
    assert parse_task_command(other_python) is None  # e.g. kfp's use_venv: its interpreter, not ours
    script = kfp_command[2].replace("_KFP_RUNTIME=true", "_KFP_RUNTIME=true X=1")
    extra_env = subprocess_task_handler.replace_python_executable(
        [*kfp_command[:2], script, *kfp_command[3:]], sys.executable
    )
    assert parse_task_command(extra_env) is None  # an environment it would not reproduce
    with_pip = dsl.component(where_am_i.python_func, base_image="python:3.11")  # installs kfp first
    pip_spec = with_pip.component_spec.implementation.container
    assert parse_task_command([*pip_spec.command, *pip_spec.args]) is None
    assert parse_task_command(["python", "-c", "print(1)"]) is None


def test_a_zygote_that_is_gone_hands_the_task_back(tmp_path) -> None:
    task = task_for(where_am_i, tmp_path)
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
