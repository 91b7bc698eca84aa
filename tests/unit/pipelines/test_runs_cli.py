"""`propensity runs`, `runs compare` and `ui` on a real SQLite MLflow store filled by the tracking code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.shared.config import Config
from components.tracking.mlflow_backend import local_store_uri
from components.tracking.record import RunContext, failed_run, training_run
from components.tracking.track import track
from pipelines.cli import main

SUMMARY = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "tracking" / "pipeline_summary.json").read_text()
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A work directory whose store holds: run-a (v0001), run-b (a prediction run's retraining,
    v0002, min_f1 0.55) and a failed prediction run of the same name as run-b."""
    workdir = tmp_path_factory.mktemp("runs-cli")
    uri = local_store_uri(workdir / "tracking")
    ids = {}
    ids["a"] = track(training_run(SUMMARY, Config(), RunContext("run-a"), {}), uri, Config())["run_id"]
    second = json.loads(json.dumps(SUMMARY))
    second["deployment"]["version"] = "v0002"
    second["metrics"]["test"]["roc_auc"] = 0.95
    config = Config().with_overrides(["gate.min_f1=0.55"])
    ids["b"] = track(training_run(second, config, RunContext("run-b"), {}), uri, config)["run_id"]
    stopped = failed_run(
        "prediction", Config(), RunContext("run-b"), "check-drift", "DataValidationError: empty"
    )
    ids["c"] = track(stopped, uri, Config())["run_id"]
    return workdir, ids


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_runs_lists_newest_first_with_champion_metrics_gate_and_version(store, capsys) -> None:
    workdir, _ = store
    code, out, _ = run(["runs", "--workdir", str(workdir)], capsys)
    assert code == 0
    header, _, failed, second, first = out.splitlines()
    assert header.split()[:4] == ["started", "(UTC)", "run", "pipeline"]
    assert "prediction" in failed and "failed at check-drift: DataValidationError: empty" in failed
    assert second.split()[2:] == [
        "run-b",
        "training",
        "FINISHED",
        SUMMARY["champion"],
        "0.9500",
        "0.6400",
        "passed",
        "v0002",
    ]
    assert first.split()[2:4] == ["run-a", "training"] and first.endswith("v0001")


def test_compare_by_name_prefers_the_training_run_and_shows_what_changed(store, capsys) -> None:
    workdir, ids = store
    code, out, _ = run(["runs", "compare", "run-a", "run-b", "--workdir", str(workdir)], capsys)
    assert code == 0
    assert f"B: run-b ({ids['b']}" in out  # not the failed prediction run of the same name
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["gate.min_f1"] == ["0.6", "0.55", "*"] and rows["registry_version"] == ["v0001", "v0002", "*"]
    assert rows["test.roc_auc"][-1] == f"{0.95 - SUMMARY['metrics']['test']['roc_auc']:+.4f}"
    assert "gate.min_roc_auc" not in rows  # unchanged: only with --all
    code, out, _ = run(
        ["runs", "compare", ids["a"][:8], ids["b"], "--all", "--workdir", str(workdir)], capsys
    )
    assert code == 0 and "gate.min_roc_auc" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "compare", "run-a"], "two runs"),
        (["runs", "compare", "run-a", "nope"], "'nope': no tracked run"),
        (["runs", "--tracking-uri", "none"], "no store to read"),
        (["runs", "--tracking-uri", "vertex"], "Vertex console"),
        (["ui", "--mlflow", "/nonexistent/mlflow"], "make ui"),
    ],
)
def test_what_cannot_be_done_is_said(store, capsys, argv: list[str], message: str) -> None:
    workdir, _ = store
    code, _, err = run([*argv, "--workdir", str(workdir)], capsys)
    assert code == 2 and message in err


def test_an_empty_work_directory_has_no_runs_yet(tmp_path: Path, capsys) -> None:
    code, _, err = run(["runs", "--workdir", str(tmp_path)], capsys)
    assert code == 2 and "no tracked runs yet" in err and "make run" in err
