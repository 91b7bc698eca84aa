"""Warm task processes for the KFP local runner: each task forks from a process that has already
imported kfp and the ML stack, instead of starting Python and importing them all again.

kfp.local's SubprocessRunner starts every task as ``sh -ec '<write the program>; python3 -m
kfp.dsl.executor_main ...'``: a new interpreter that imports kfp, pandas, scikit-learn, xgboost and
skops before the body runs, 1-2 s per task against bodies that mostly take well under a second.
Here a *zygote* process imports them once per run, in the background, and forks one child per
task. The child is the task: it gets the task's environment, working directory and arguments,
writes to the runner's pipe, runs ``kfp.dsl.executor_main`` as ``python -m`` would, and reports its
exit code. Tasks share nothing at run time (each is a fresh fork of the same clean zygote), and
the zygote serves a task as soon as it arrives, with whatever it has imported by then.

The seam is kfp 2.17's ``kfp.local.subprocess_task_handler.run_local_subprocess``, the one
function that starts a task process. A command of any other shape, or a zygote that is not
answering, goes to kfp's own function unchanged. ``--fresh-task-processes`` turns this off.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXECUTOR_MODULE = "kfp.dsl.executor_main"
PROGRAM_FILE = "ephemeral_component.py"
# Imported by the zygote first to last: what every task needs, then the heavy libraries, then the
# project modules the shells' bodies import (read from the shells' source, so it stays complete).
FIRST_IMPORTS = (EXECUTOR_MODULE, "numpy", "pandas", "pyarrow.parquet")
LAST_IMPORTS = ("shap",)
SHELL_MODULES = ("components.shells.training", "components.shells.prediction")
CONNECT_SECONDS = 10.0
WARM_SUFFIX = ".warm"
_HEADER = struct.Struct("!Q")
# kfp's task script: the program is $0, written to a temp dir, then run with "$@" as arguments.
_SCRIPT = re.compile(
    r'^program_path=\$\(mktemp -d\)\s+printf "%s" "\$0" > "\$program_path/ephemeral_component\.py"\s+'
    r"(?P<env>(?:\w+=\S+\s+)*)\S+ -m kfp\.dsl\.executor_main\s+--component_module_path\s+"
    r'"\$program_path/ephemeral_component\.py"\s+"\$@"\s*$'
)


@dataclass(frozen=True)
class TaskCommand:
    """What kfp's task script would run: the program, its arguments, extra environment."""

    program: str
    args: list[str]
    env: dict[str, str]


def parse_task_command(full_command: list[str]) -> TaskCommand | None:
    """The task behind kfp's ``sh -ec`` command line; None for any other shape (run as it is)."""
    if len(full_command) < 4 or full_command[:2] != ["sh", "-ec"]:
        return None
    match = _SCRIPT.match(full_command[2])
    if not match:
        return None
    env = dict(item.split("=", 1) for item in match.group("env").split())
    return TaskCommand(program=full_command[3], args=list(full_command[4:]), env=env)


def shell_body_modules(shell_modules: tuple[str, ...] = SHELL_MODULES) -> list[str]:
    """The project modules the shells' bodies import (they run inside tasks), in source order."""
    import importlib.util

    modules: list[str] = []
    for name in shell_modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components."):
                modules.append(node.module or "")
    return list(dict.fromkeys(modules))


# ------------------------------------------------------------------------------------ the zygote


def serve(socket_path: str) -> None:
    """The zygote: listen, import step by step while serving whoever asks, fork a child per task."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    for module in [*FIRST_IMPORTS, *shell_body_modules(), *LAST_IMPORTS]:
        _serve_waiting(listener, timeout=0.0)
        with contextlib.suppress(Exception):  # a task that needs it imports it (and reports why)
            __import__(module)
    Path(socket_path + WARM_SUFFIX).touch()  # every import done (WarmTasks.wait_until_warm)
    while True:
        _serve_waiting(listener, timeout=None)


def _serve_waiting(listener: socket.socket, timeout: float | None) -> None:
    """Fork a child for every connection already waiting (or wait for one when ``timeout`` is None)."""
    while select.select([listener], [], [], timeout)[0]:
        connection, _ = listener.accept()
        _fork_task(listener, connection)
        timeout = 0.0


def _fork_task(listener: socket.socket, connection: socket.socket) -> None:
    try:
        request, output_fd = _receive(connection)
    except (OSError, ValueError):
        connection.close()
        return
    if os.fork() == 0:  # the task: never returns to the zygote's loop
        listener.close()
        code = 1
        try:
            code = _run_task(request, output_fd)
        finally:
            _exit_task(connection, code)
    os.close(output_fd)
    connection.close()


def _exit_task(connection: socket.socket, code: int) -> None:
    """End the child as an interpreter would (atexit handlers, flushed streams), then report."""
    import atexit

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    with contextlib.suppress(OSError):
        connection.sendall(json.dumps({"code": code}).encode())
    os._exit(code)


def _receive(connection: socket.socket) -> tuple[dict[str, Any], int]:
    """A length-prefixed JSON request and the write end of the runner's output pipe."""
    data, fds, _, _ = socket.recv_fds(connection, 1 << 16, 1)
    if len(fds) != 1 or len(data) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        raise ValueError("malformed task request")
    (size,) = _HEADER.unpack(data[: _HEADER.size])
    body = bytearray(data[_HEADER.size :])
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            os.close(fds[0])
            raise ValueError("truncated task request")
        body += chunk
    return json.loads(body), fds[0]


def _run_task(request: dict[str, Any], output_fd: int) -> int:
    """In the forked child: become the task process that kfp's script would have started."""
    import traceback

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the task's own subprocesses must be waitable
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [EXECUTOR_MODULE, *request["argv"]]
    code = 0
    try:
        from kfp.dsl import executor_main  # what `python -m kfp.dsl.executor_main` runs

        executor_main.executor_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    return code


# ------------------------------------------------------------------------------------ the runner


class WarmTasks:
    """The runner's side: starts the zygote and runs kfp's task commands through it."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="propensity-tasks-"))
        self.socket_path = str(self.directory / "zygote.sock")
        self.process = subprocess.Popen([sys.executable, "-m", "pipelines.warm_tasks", self.socket_path])

    def wait_until_warm(self, timeout: float = 60.0) -> bool:
        """Whether the zygote finished its imports within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        marker = Path(self.socket_path + WARM_SUFFIX)
        while not marker.exists() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return marker.exists()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            if self.process.poll() is None:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def run(self, task: TaskCommand, env_vars: dict[str, str] | None) -> int | None:
        """Run one task in a warm child, streaming its output; None when the zygote cannot be used."""
        program_dir = Path(tempfile.mkdtemp(prefix="task-", dir=self.directory))
        program = program_dir / PROGRAM_FILE
        program.write_text(task.program)
        request = {
            "argv": ["--component_module_path", str(program), *task.args],
            "env": {**os.environ, **(env_vars or {}), **task.env},
            "cwd": os.getcwd(),
        }
        try:
            connection = self._connect()
            if connection is None:
                return None
            with connection:
                return self._exchange(connection, request)
        finally:
            shutil.rmtree(program_dir, ignore_errors=True)

    def _connect(self) -> socket.socket | None:
        deadline = time.monotonic() + CONNECT_SECONDS
        while self.process.poll() is None and time.monotonic() < deadline:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(self.socket_path)
                return connection
            except (FileNotFoundError, ConnectionRefusedError):
                connection.close()
                time.sleep(0.01)
        return None

    def _exchange(self, connection: socket.socket, request: dict[str, Any]) -> int | None:
        read_fd, write_fd = os.pipe()
        body = json.dumps(request).encode()
        try:
            socket.send_fds(connection, [_HEADER.pack(len(body)) + body], [write_fd])
        except OSError:
            os.close(read_fd)
            return None
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd, "r", errors="replace") as output:
            for line in output:
                print(line, end="")
        print("\n")  # as kfp does: separates the task's log from the next
        reply = b"".join(iter(lambda: connection.recv(4096), b""))
        if not reply:
            print("task process ended without an exit status (killed by a signal?)", file=sys.stderr)
            return 1
        return int(json.loads(reply)["code"])


@contextlib.contextmanager
def warm_task_processes() -> Iterator[WarmTasks]:
    """While open, kfp.local's SubprocessRunner starts its tasks as warm children (see above)."""
    from kfp.local import subprocess_task_handler as handler

    original: Callable[..., int] = handler.run_local_subprocess
    warm = WarmTasks()

    def run_local_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        task = parse_task_command(full_command)
        code = warm.run(task, env_vars) if task is not None else None
        return original(full_command=full_command, env_vars=env_vars) if code is None else code

    handler.run_local_subprocess = run_local_subprocess
    try:
        yield warm
    finally:
        handler.run_local_subprocess = original
        warm.close()


if __name__ == "__main__":
    serve(sys.argv[1])
