"""Per-task time limit: components.shared.artifacts.timed ends a stuck body, and the runner names it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from components.shared.config import Config, ConfigError
from pipelines.local_runner import ProgressTracker

REPO = Path(__file__).resolve().parents[3]

STUCK_TASK = textwrap.dedent(
    """
    import time
    from types import SimpleNamespace
    from components.shared.artifacts import timed

    output = SimpleNamespace(metadata={})
    with timed(output, limit_seconds=0.5):
        time.sleep(30)  # a body that would hang the task
    print("not reached")
    """
)


def test_a_body_past_its_limit_ends_the_process_with_a_traceback() -> None:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", STUCK_TASK], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - start < 20
    assert result.returncode != 0 and "not reached" not in result.stdout
    assert result.stderr.splitlines()[0] == "Timeout (0:00:00.500000)!"
    assert 'File "<string>", line 8 in <module>' in result.stderr  # where it was stuck: the sleep

    tracker = ProgressTracker(echo=lambda line: None, start=0.0)
    for line in [
        "Executing task 'tune'",
        *result.stderr.splitlines(),
        "Task 'tune' finished with status FAILURE",
    ]:
        tracker.feed(line)
    message = tracker.failure_message(Path("pipeline.log"))
    assert message.startswith("task 'tune' failed: TaskTimeout: its body ran past task_timeout_seconds")


def test_a_body_within_its_limit_is_not_touched() -> None:
    code = STUCK_TASK.replace("time.sleep(30)", "time.sleep(0.1)").replace(
        "limit_seconds=0.5", "limit_seconds=2"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "not reached" in result.stdout


def test_the_limit_must_exceed_the_tuning_budget() -> None:
    with pytest.raises(
        ConfigError, match=r"task_timeout_seconds \(100\) must exceed tune.time_budget_seconds"
    ):
        Config().with_overrides(["task_timeout_seconds=100", "tune.time_budget_seconds=120"])
    with pytest.raises(ConfigError, match="task_timeout_seconds must be > 0"):
        Config().with_overrides(["task_timeout_seconds=0"])
    assert Config().task_timeout_seconds == 3600.0
