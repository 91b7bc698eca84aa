"""Run the training pipeline on the KFP local runner, in a child process with condensed progress.

The local runner logs every executor input in full (hundreds of lines per run); the user wants one
line per stage. The child process runs the pipeline; the parent keeps the full log in the run
folder and prints one line as each task starts and ends, and the task's error when one fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.containers import ContainerPlan

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r"Executing task '([^']+)'")
TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
SKIPPED = re.compile(r"Skipping conditional task ([\w-]+)")
# The executor's own last line in a task. kfp 2.17's local runner can drop the "finished" line of a
# task that ends beside a parallel sibling (seen with the three tune tasks), so this one counts too.
TASK_OUTPUT = re.compile(r"Wrote executor output file to \S*/([\w-]+)/executor_output\.json")
ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
# faulthandler's first line when components.shared.artifacts.timed ends a task at its time limit
TASK_TIMEOUT = re.compile(r"^\s*Timeout \((\d+:\d\d:\d\d(?:\.\d+)?)\)!$")
SUMMARY_OUTPUT = "pipeline_summary"
# A whole local run's default limit: far above a real run here (about a minute), low enough that a
# hung task fails CI with its name instead of using up the job's time.
DEFAULT_TIMEOUT_SECONDS = 1800.0
# pipeline name -> "module:factory" building it for an image (imported in the child process only)
PIPELINES = {
    "training": "pipelines.training:build_training_pipeline",
    "prediction": "pipelines.prediction:build_prediction_pipeline",
}


class PipelineRunError(RuntimeError):
    """The pipeline failed; the message carries the failing task and its error (also as attributes,
    for the tracked run: ``task``, None when unknown, and ``cause``)."""

    def __init__(self, message: str, task: str | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.cause = cause or message


@dataclass
class LocalRun:
    run_dir: Path
    log_path: Path
    summary: dict[str, Any]
    seconds: float
    task_seconds: dict[str, list[float]]  # wall time of each task run (start-up included), by name


def run_pipeline_locally(
    arguments: dict[str, Any],
    run_dir: Path,
    echo: Callable[[str], None] = print,
    enable_caching: bool = False,
    pipeline: str = "training",
    summary_output: str = SUMMARY_OUTPUT,
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
    containers: ContainerPlan | None = None,
    warm_tasks: bool = True,
) -> LocalRun:
    """Run the named pipeline with ``arguments`` and return its summary. Raises PipelineRunError.

    A run still going after ``timeout_seconds`` is killed with every task it started (the child runs
    in its own process group; with ``containers``, the run's task containers are removed too) and
    fails naming the tasks that were running; None: no limit. ``containers``: every task in the
    plan's image through kfp.local.DockerRunner; None: in processes of this venv, forked from a
    process that has imported kfp and the ML stack already (``warm_tasks``; see pipelines.warm_tasks)
    or, with ``warm_tasks`` False, each started afresh as kfp does.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "pipeline.log"
    pipeline_root = run_dir / "artifacts"
    # Made here, by the invoking user: a bind mount of a missing folder would be made by the Docker
    # daemon, as root, and the tasks (running as the user) could not write into it.
    pipeline_root.mkdir(exist_ok=True)
    request = {
        "arguments": arguments,
        "pipeline_root": str(pipeline_root),
        "caching": enable_caching,
        "pipeline": pipeline,
        "containers": containers.to_json() if containers else None,
        "warm_tasks": warm_tasks,
    }
    command = [sys.executable, "-m", "pipelines.local_runner", json.dumps(request)]
    start = time.perf_counter()
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: a time-out kills the tasks too
        ) as child,
    ):
        assert child.stdout is not None
        tracker = ProgressTracker(echo, start)
        watchdog = _Watchdog(child, timeout_seconds)
        finished = False
        try:
            for line in child.stdout:
                log.write(line)
                tracker.feed(ANSI.sub("", line.rstrip("\n")))
            code = child.wait()
            tracker.flush()
            finished = code == 0 and not watchdog.fired
        finally:
            watchdog.cancel()
            if not finished:
                _stop_child(child)
                if containers is not None:
                    _remove_containers(containers, echo)
    seconds = time.perf_counter() - start
    if watchdog.fired:
        message = tracker.timeout_message(timeout_seconds or 0.0, log_path)
        running = tracker.running
        raise PipelineRunError(message, running[0] if running else None, message.split("\n")[0])
    if code != 0:
        cause = tracker.errors[0] if tracker.errors else "see the log"
        raise PipelineRunError(tracker.failure_message(log_path), tracker.failed_task, cause)
    summary_path = find_summary(run_dir / "artifacts", summary_output)
    summary = json.loads(summary_path.read_text())
    return LocalRun(run_dir, log_path, summary, seconds, tracker.finished)


def _stop_child(child: subprocess.Popen[str]) -> None:
    """Kill what is left of a run that failed, timed out or was interrupted (its whole group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _remove_containers(containers: ContainerPlan, echo: Callable[[str], None]) -> None:
    """Best effort: a failure here must not hide why the run stopped."""
    from pipelines.containers import remove_run_containers

    try:
        removed = remove_run_containers(containers.run_label)
    except Exception as exc:  # the engine went away, or refused
        echo(f"could not remove the stopped run's task containers ({exc}); label {containers.run_label}")
        return
    if removed:
        echo(f"removed {removed} task container(s) of the stopped run")


class _Watchdog:
    """Kills the child's whole process group once ``seconds`` have passed (None: never)."""

    def __init__(self, child: subprocess.Popen[str], seconds: float | None) -> None:
        self.child = child
        self.fired = False
        self.timer = None if seconds is None else threading.Timer(seconds, self._kill)
        if self.timer is not None:
            self.timer.daemon = True
            self.timer.start()

    def _kill(self) -> None:
        self.fired = True
        try:
            os.killpg(self.child.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended just now
            self.fired = False

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


class ProgressTracker:
    """Turns the local runner's log into one line per task start/end and remembers errors."""

    def __init__(self, echo: Callable[[str], None], start: float) -> None:
        self.echo = echo
        self.start = start
        self.started: dict[str, list[float]] = {}
        self.finished: dict[str, list[float]] = {}
        self._outputs: dict[str, list[float]] = {}  # executor output lines not yet followed by an end
        self._ended_early: dict[str, int] = {}  # tasks ended at their output line (end line missing)
        self.errors: list[str] = []
        self.failed_task: str | None = None

    def feed(self, line: str) -> None:
        now = time.perf_counter()
        if match := TASK_START.search(line):
            self.flush()
            self.started.setdefault(match.group(1), []).append(now)
            self.echo(f"[{now - self.start:6.1f}s] > {match.group(1)}")
        elif match := TASK_OUTPUT.search(line):
            if self.started.get(match.group(1)):
                self._outputs.setdefault(match.group(1), []).append(now)
        elif match := TASK_END.search(line):
            task, status = match.groups()
            if self._ended_early.get(task) and status == "SUCCESS":
                self._ended_early[task] -= 1  # already ended at its output line
                return
            if self._outputs.get(task):
                self._outputs[task].pop(0)
            self._end(task, status, now)
        elif match := SKIPPED.search(line):
            self.echo(f"[{now - self.start:6.1f}s] skipped {match.group(1)} (condition false)")
        elif match := ERROR_LINE.match(line):
            self.errors.append(f"{match.group(1)}: {match.group(2)}")
        elif match := TASK_TIMEOUT.match(line):
            self.errors.append(
                f"TaskTimeout: its body ran past task_timeout_seconds ({match.group(1)}); the log shows"
                " where each thread was"
            )

    def flush(self) -> None:
        """End, at their output line, the tasks whose end line has not come (see TASK_OUTPUT):
        called when another task starts and when the run is over."""
        for task, times in self._outputs.items():
            for at in times:
                self._ended_early[task] = self._ended_early.get(task, 0) + 1
                self._end(task, "SUCCESS", at)
            times.clear()

    def _end(self, task: str, status: str, now: float) -> None:
        began = self.started[task].pop(0) if self.started.get(task) else now
        self.finished.setdefault(task, []).append(now - began)
        mark = "ok" if status == "SUCCESS" else status
        self.echo(f"[{now - self.start:6.1f}s] {mark:>7} {task} ({now - began:.1f}s)")
        if status != "SUCCESS":
            self.failed_task = task

    @property
    def running(self) -> list[str]:
        return [task for task, starts in self.started.items() if starts]

    def timeout_message(self, limit: float, log_path: Path) -> str:
        tasks = ", ".join(repr(t) for t in self.running) or "no task (between tasks)"
        return (
            f"the pipeline did not finish within its time limit of {limit:g} s; still running: {tasks}"
            f"\n(full log: {log_path})"
        )

    def failure_message(self, log_path: Path) -> str:
        where = f"task {self.failed_task!r}" if self.failed_task else "the pipeline"
        cause = self.errors[0] if self.errors else "see the log"
        return f"{where} failed: {cause}\n(full log: {log_path})"


def find_summary(artifacts_root: Path, output_name: str = SUMMARY_OUTPUT) -> Path:
    """The summary written by whichever branch ran: the newest top-level task output of that name."""
    found = sorted(artifacts_root.glob(f"*/*/{output_name}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise PipelineRunError(f"the pipeline finished but wrote no {output_name} under {artifacts_root}")
    return found[-1]


def _child_main(request_json: str) -> int:
    """Entry point of the child process: init the local runner and run the pipeline once."""
    import importlib

    from kfp import local

    request = json.loads(request_json)
    module_name, factory = PIPELINES[request["pipeline"]].split(":")
    build = getattr(importlib.import_module(module_name), factory)
    if request["containers"]:
        from pipelines.containers import ContainerPlan, use_exit_status_fix

        use_exit_status_fix()
        plan = ContainerPlan.from_json(request["containers"])
        runner, pipeline = plan.docker_runner(), build(image=plan.image)
    else:
        runner, pipeline = local.SubprocessRunner(use_venv=False), build()
    local.init(
        runner=runner,
        pipeline_root=request["pipeline_root"],
        raise_on_error=True,
        enable_caching=request["caching"],
    )
    with contextlib.ExitStack() as stack:
        if request.get("warm_tasks") and not request["containers"]:
            from pipelines.warm_tasks import warm_task_processes

            stack.enter_context(warm_task_processes(Path(request["pipeline_root"]).parent / "tasks"))
        pipeline(**request["arguments"])
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
