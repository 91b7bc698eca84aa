"""The local runner's progress lines, from log lines in the format kfp 2.17 writes them."""

from __future__ import annotations

from pathlib import Path

from pipelines.local_runner import ProgressTracker

ROOT = "/w/runs/r/artifacts/propensity-training-2026-12-01-23-16-45-211257"


def wrote(task_dir: str) -> str:
    prefix = "    [KFP Executor 2026-12-01 23:17:15,827 INFO]: Wrote executor output file to"
    return f"{prefix} {ROOT}/{task_dir}/executor_output.json."


def test_parallel_tasks_all_end_even_when_the_runner_drops_a_finished_line() -> None:
    """Three tune tasks two at a time; the runner logged only two of the three 'finished' lines
    (seen in a real run): every task still gets its end, once."""
    lines = [
        "23:16:51.590 - INFO - Executing task 'tune'",
        "23:16:51.595 - INFO - Executing task 'tune'",
        wrote("for-loop-1-iteration-1/tune"),
        "23:17:03.578 - INFO - Task 'tune' finished with status SUCCESS",
        "23:17:03.583 - INFO - Executing task 'tune'",
        wrote("for-loop-1-iteration-0/tune"),
        "23:17:10.556 - INFO - Task 'tune' finished with status SUCCESS",
        wrote("for-loop-1-iteration-2/tune"),  # its 'finished' line never came
        "23:17:16.261 - INFO - Executing task 'train'",
        wrote("train"),
        "23:17:18.969 - INFO - Task 'train' finished with status SUCCESS",
    ]
    shown: list[str] = []
    tracker = ProgressTracker(echo=shown.append, start=0.0)
    for line in lines:
        tracker.feed(line)
    ends = [line.split("]", 1)[1].split("(")[0].strip() for line in shown if "ok" in line]
    assert ends == ["ok tune", "ok tune", "ok tune", "ok train"]
    assert len(tracker.finished["tune"]) == 3 and tracker.running == []


def test_a_task_that_fails_is_named_with_its_error() -> None:
    shown: list[str] = []
    tracker = ProgressTracker(echo=shown.append, start=0.0)
    for line in [
        "Executing task 'ingest'",
        "DataValidationError: /d.csv: target column 'y' not found",
        "Task 'ingest' finished with status FAILURE",
    ]:
        tracker.feed(line)
    assert any("FAILURE ingest" in line for line in shown)
    assert tracker.failure_message(Path("p.log")).startswith(
        "task 'ingest' failed: DataValidationError: /d.csv: target column 'y' not found"
    )
