"""Warm task processes for the KFP local runner: each task forks from a process that has already
imported kfp and the ML stack, instead of starting Python and importing them all again.

kfp.local's SubprocessRunner starts every task as ``sh -ec '<write the program>; python3 -m
kfp.dsl.executor_main ...'``: a new interpreter that imports kfp, pandas, scikit-learn, xgboost and
skops before the body runs, 1-2 s per task against bodies that mostly take well under a second.
Here a *zygote* process imports them once per run, in the background, and forks one child per
task. The child is the task: it gets the task's environment, working directory and arguments,
writes to the runner's pipe, runs ``kfp.dsl.executor_main`` as ``python -m`` would and ends as an
interpreter does (threads joined, atexit handlers, buffers flushed); the zygote reaps it and sends
the runner its exit status (negative: killed by that signal). Tasks share nothing at run time (each
is a fresh fork of the same clean zygote). The zygote serves a task between two of its imports, so
a task never waits for more than the import in progress; it dies with the runner's orchestrator.

The seam is kfp 2.17's ``kfp.local.subprocess_task_handler.run_local_subprocess``, the one
function that starts a task process. A command of any other shape (another interpreter, extra
environment), a zygote that cannot start, or one that does not acknowledge a task within
``ACK_SECONDS``, goes to kfp's own function unchanged. ``--fresh-task-processes`` turns this off.
Fork safety: the zygote has one Python thread when it forks (OpenBLAS' and jemalloc's native
threads have fork handlers) and forks only between imports, so no import or logging lock is held.
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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

EXECUTOR_MODULE = "kfp.dsl.executor_main"
PROGRAM_FILE = "ephemeral_component.py"
# Imported by the zygote first to last: what every task needs, then the heavy libraries, then the
# project modules the shells' bodies import (read from the shells' source, so it stays complete).
# Libraries the project imports lazily inside functions are named here: skops (3.6 s; every task
# that saves or loads a model or transformer), SHAP (explain), MLflow and its SQL store (2.3 s and
# more; the summary steps that track the run).
FIRST_IMPORTS = (EXECUTOR_MODULE, "numpy", "pandas", "pyarrow.parquet")
LAST_IMPORTS = ("skops.io", "shap", "mlflow", "mlflow.store.tracking.sqlalchemy_store")
SHELL_MODULES = ("components.shells.training", "components.shells.prediction")
CONNECT_SECONDS = 10.0
ACK_SECONDS = 120.0  # a zygote in the middle of a long import answers when that import is done
WARM_MARKER = "zygote.warm"
KFP_ENV = {"_KFP_RUNTIME": "true"}
_HEADER = struct.Struct("!Q")
# kfp's task script: the program is $0, written to a temp dir, then run with "$@" as arguments.
_SCRIPT = re.compile(
    r'^program_path=\$\(mktemp -d\)\s+printf "%s" "\$0" > "\$program_path/ephemeral_component\.py"\s+'
    r"(?P<env>(?:\w+=\S+\s+)*)(?P<python>\S+) -m kfp\.dsl\.executor_main\s+--component_module_path\s+"
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
    if not match or match.group("python") != sys.executable:  # e.g. kfp's own venv: not ours
        return None
    env = dict(item.split("=", 1) for item in match.group("env").split())
    if env != KFP_ENV:
        return None
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


def serve(socket_name: str, warm_marker: str) -> None:
    """The zygote: listen, import step by step while serving whoever asks, fork a child per task,
    and report each child's exit status to its runner when the kernel does (the zygote reaps)."""
    _die_with_parent()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + socket_name)  # Linux's abstract namespace (see WarmTasks)
    listener.listen(64)
    zygote = _Zygote(listener)
    before = dict(os.environ)
    for module in [*FIRST_IMPORTS, *shell_body_modules(), *LAST_IMPORTS]:
        zygote.serve(timeout=0.0)
        with contextlib.suppress(Exception):  # a task that needs it imports it (and reports why)
            __import__(module)
        # what imports set for themselves (e.g. scikit-learn's KMP_* variables) tasks keep
        zygote.import_env = {k: v for k, v in os.environ.items() if before.get(k) != v}
    Path(warm_marker).touch()  # every import done (WarmTasks.wait_until_warm)
    while True:
        zygote.serve(timeout=None)


def _die_with_parent() -> None:
    """The runner's orchestrator may be killed outright; the zygote must not outlive it."""
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


class _Zygote:
    """The accept loop: a child per request, watched through a pidfd until it exits."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.import_env: dict[str, str] = {}
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, runner connection)

    def serve(self, timeout: float | None) -> None:
        """Handle what is ready now (``timeout`` 0) or wait for the next event (None)."""
        while True:
            ready, _, _ = select.select([self.listener, *self.children], [], [], timeout)
            if not ready:
                return
            for item in ready:
                if item is self.listener:
                    connection, _ = self.listener.accept()
                    self._start(connection)
                else:
                    self._report(item)
            timeout = 0.0

    def _start(self, connection: socket.socket) -> None:
        try:
            request, output_fd = _receive(connection)
        except (OSError, ValueError):
            connection.close()
            return
        for stream in (sys.stdout, sys.stderr):  # nothing of the zygote's is replayed in the task
            stream.flush()
        try:
            pid = os.fork()
        except OSError:
            os.close(output_fd)
            connection.close()  # no acknowledgement: the runner starts the task itself
            return
        if pid == 0:
            _become_task(self.listener, connection, request, output_fd, self.import_env)
        os.close(output_fd)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, connection)
        _send(connection, {"pid": pid})

    def _report(self, pidfd: int) -> None:
        pid, connection = self.children.pop(pidfd)
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        with contextlib.suppress(OSError):
            _send(connection, {"code": os.waitstatus_to_exitcode(status)})
        connection.close()


def _send(connection: socket.socket, message: dict[str, Any]) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _receive(connection: socket.socket) -> tuple[dict[str, Any], int]:
    """A length-prefixed JSON request and the write end of the runner's output pipe."""
    data, fds, _, _ = socket.recv_fds(connection, 1 << 16, 1)
    if len(fds) != 1 or len(data) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        raise ValueError("malformed task request")
    try:
        (size,) = _HEADER.unpack(data[: _HEADER.size])
        body = bytearray(data[_HEADER.size :])
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("truncated task request")
            body += chunk
        return json.loads(body), fds[0]
    except BaseException:
        os.close(fds[0])
        raise


def _become_task(
    listener: socket.socket,
    connection: socket.socket,
    request: dict[str, Any],
    output_fd: int,
    import_env: dict[str, str],
) -> NoReturn:
    """In the forked child: the task process kfp's script would have started; never returns."""
    code = 1
    try:
        listener.close()
        connection.close()  # the zygote reports this child's exit status, not the child itself
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True)
        code = _run_task(request, import_env)
        _shut_down_interpreter()
    finally:
        os._exit(code & 0xFF)


def _run_task(request: dict[str, Any], import_env: dict[str, str]) -> int:
    """Run kfp's executor as ``python -m kfp.dsl.executor_main`` would; its exit code."""
    import traceback

    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        for key, value in import_env.items():
            os.environ.setdefault(key, value)
        os.chdir(request["cwd"])
        sys.argv = [EXECUTOR_MODULE, *request["argv"]]
        from kfp.dsl import executor_main  # what `python -m kfp.dsl.executor_main` runs

        executor_main.executor_main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _shut_down_interpreter() -> None:
    """What the interpreter does at exit, before the child's ``os._exit``: join threads, run atexit
    handlers, flush Python's and C's buffered output."""
    import atexit
    import ctypes
    import threading

    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    with contextlib.suppress(BaseException):
        ctypes.CDLL(None).fflush(None)


# ------------------------------------------------------------------------------------ the runner


class WarmTasks:
    """The runner's side: starts the zygote and runs kfp's task commands through it."""

    def __init__(self, directory: Path | None = None) -> None:
        """``directory``: where the tasks' program files go (removed on ``close``; a run killed
        outright leaves it behind, so the local runner puts it in the run's folder)."""
        self.directory = Path(directory or tempfile.mkdtemp(prefix="propensity-tasks-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        # Linux's abstract socket namespace: no file to leave behind, no path-length limit
        self.socket_name = f"propensity-tasks-{os.getpid()}-{uuid.uuid4().hex}"
        self.marker = self.directory / WARM_MARKER
        command = [sys.executable, "-m", "pipelines.warm_tasks", self.socket_name, str(self.marker)]
        try:
            self.process = subprocess.Popen(command)
        except OSError:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def wait_until_warm(self, timeout: float = 60.0) -> bool:
        """Whether the zygote finished its imports within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        marker = self.marker
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
                self.process.wait()
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
                connection.connect("\0" + self.socket_name)
                return connection
            except (FileNotFoundError, ConnectionRefusedError):
                connection.close()
                time.sleep(0.01)
        return None

    def _exchange(self, connection: socket.socket, request: dict[str, Any]) -> int | None:
        """Send the request, stream the task's output, return its exit status; None when the task
        never started (no acknowledgement), so kfp's own process start can take over."""
        read_fd, write_fd = os.pipe()
        body = json.dumps(request).encode()
        try:
            socket.send_fds(connection, [_HEADER.pack(len(body)) + body], [write_fd])
        except OSError:
            os.close(read_fd)
            return None
        finally:
            os.close(write_fd)
        replies = connection.makefile("rb")
        connection.settimeout(ACK_SECONDS)
        if _message(replies).get("pid") is None:  # no child was forked
            os.close(read_fd)
            return None
        connection.settimeout(None)
        with os.fdopen(read_fd, "r", errors="replace") as output:
            for line in output:
                print(line, end="")
        print("\n")  # as kfp does: separates the task's log from the next
        code = _message(replies).get("code")
        if code is None:
            print("the warm task server ended before the task reported its exit status", file=sys.stderr)
            return 1
        if code < 0:
            print(f"task process killed by signal {-code}", file=sys.stderr)
        return int(code)


def _message(replies: Any) -> dict[str, Any]:
    """The zygote's next newline-terminated JSON message; {} at its end or on a socket error."""
    try:
        line = replies.readline()
        return json.loads(line) if line else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def warm_task_processes(directory: Path | None = None) -> Iterator[WarmTasks | None]:
    """While open, kfp.local's SubprocessRunner starts its tasks as warm children (see above)."""
    from kfp.local import subprocess_task_handler as handler

    original: Callable[..., int] = handler.run_local_subprocess
    try:
        warm = WarmTasks(directory)
    except OSError as exc:  # no zygote: every task starts as kfp starts it
        print(f"warm task processes unavailable ({exc}); starting each task afresh", file=sys.stderr)
        yield None
        return

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
    serve(sys.argv[1], sys.argv[2])
