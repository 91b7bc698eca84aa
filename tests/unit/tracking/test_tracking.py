"""Runs logged to a real MLflow store (SQLite, as locally) and read back through MLflow's own client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from components.shared.config import Config, ConfigError
from components.tracking.mlflow_backend import artifact_root, local_store_uri, read_runs
from components.tracking.record import FAILED, RunContext, failed_run, training_run
from components.tracking.track import track

SUMMARY = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "tracking" / "pipeline_summary.json").read_text()
)
CONTEXT = RunContext("run-20261203-082426-324111", "abc123", "subprocess", "/data/customers.csv")


@pytest.fixture
def reports(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "task-outputs"
    folder.mkdir()
    files = {"data_report.md": "# Data report\nResponse: 15%\n", "shap_report.html": "<html><img></html>"}
    for name, text in files.items():
        (folder / name.split(".")[0]).write_text(text)  # KFP artifact files have no extension
    return {name: str(folder / name.split(".")[0]) for name in files}


def test_a_training_run_is_logged_and_read_back_with_mlflows_client(
    tmp_path: Path, reports: dict[str, str]
) -> None:
    uri = local_store_uri(tmp_path / "tracking")
    config = Config().with_overrides(["gate.min_f1=0.5", "tune.families=[xgboost, logreg, mlp]"])
    run = training_run(SUMMARY, config, CONTEXT, reports)

    outcome = track(run, uri, config)

    assert outcome["logged"] is True, outcome
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(outcome["run_id"])
    assert logged.info.run_name == CONTEXT.run_name and logged.info.status == "FINISHED"
    assert logged.info.start_time == 1796286266324  # 2026-12-03 08:24:26.324 UTC, from the run name
    assert logged.info.end_time > logged.info.start_time
    experiment = client.get_experiment(logged.info.experiment_id)
    assert experiment.name == "marketing-propensity"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's runs view
    metrics, params, tags = logged.data.metrics, logged.data.params, logged.data.tags
    test = SUMMARY["metrics"]["test"]
    assert metrics["test.roc_auc"] == test["roc_auc"] and metrics["test.f1"] == test["f1"]
    for family, scores in SUMMARY["metrics"]["families"].items():
        assert metrics[f"family.{family}.roc_auc"] == scores["roc_auc"]  # test, per family
        assert metrics[f"family.{family}.cv_roc_auc"] == SUMMARY["metrics"]["cv"][family]["cv_roc_auc"]
    calibration = SUMMARY["calibration"]
    assert metrics["calibration.before.log_loss"] == calibration["before"]["log_loss"]
    assert metrics["calibration.after.log_loss"] == calibration["after"]["log_loss"]
    assert metrics["gate.passed"] == 1.0 and metrics["gate.test_roc_auc.value"] == pytest.approx(0.93645)
    assert metrics["stage_seconds.explain"] == SUMMARY["stage_seconds"]["explain"]
    assert params["gate.min_f1"] == "0.5" and params["gate.min_roc_auc"] == "0.75"
    assert params["tune.families"] == "xgboost,logreg,mlp" and params["tune.strategy.xgboost"] == "auto"
    rows, test_rows = int(SUMMARY["dataset"]["rows"]), sum(map(sum, SUMMARY["metrics"]["confusion_matrix"]))
    assert params["data.test_rows"] == str(test_rows) and params["data.development_rows"] == str(
        rows - test_rows
    )
    assert tags["champion"] == SUMMARY["champion"] and tags["registry_version"] == "v0001"
    assert tags["code_version"] == "abc123" and tags["runner"] == "subprocess"
    assert tags["data_fingerprint"] == SUMMARY["data_fingerprint"] and tags["gate"] == "passed"

    # the reports are in the run, under names the UI previews, next to the database
    listed = sorted(a.path for a in client.list_artifacts(logged.info.run_id, "reports"))
    assert listed == ["reports/data_report.md", "reports/shap_report.html"]
    copy = client.download_artifacts(logged.info.run_id, "reports/data_report.md", str(tmp_path / "dl"))
    assert Path(copy).read_text() == Path(reports["data_report.md"]).read_text()
    assert logged.info.artifact_uri.startswith(Path(artifact_root(uri)).as_uri())


def test_a_failed_run_is_recorded_as_failed_with_its_stage_and_error(tmp_path: Path) -> None:
    uri = local_store_uri(tmp_path)
    error = "DataValidationError: target column 'Response' is missing from /data/x.csv"
    outcome = track(failed_run("training", Config(), CONTEXT, "ingest", error), uri, Config())
    assert outcome["logged"] is True
    [run] = read_runs(uri)
    assert run.info.status == FAILED
    assert run.data.tags["failed_stage"] == "ingest" and run.data.tags["error"] == error
    assert run.data.params["gate.min_roc_auc"] == "0.75"  # what it was asked to do
    assert run.data.metrics == {}


def test_a_store_that_cannot_be_written_does_not_raise_and_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = local_store_uri(blocker / "tracking")  # its folder cannot be made: a file is in the way
    outcome = track(training_run(SUMMARY, Config(), CONTEXT, {}), uri, Config())
    assert outcome["logged"] is False
    assert "a-file" in outcome["error"] and outcome["uri"] == uri


def test_tracking_off_and_unknown_uris() -> None:
    run = training_run(SUMMARY, Config(), CONTEXT, {})
    assert track(run, "", Config()) == {"logged": False, "reason": "tracking is off (no tracking URI)"}
    outcome = track(run, "ftp://somewhere", Config())
    assert outcome["logged"] is False and "ftp://somewhere" in outcome["error"]


def test_a_rejected_run_records_why_and_no_registry_version() -> None:
    rejected = json.loads(json.dumps(SUMMARY))
    rejected["gate"]["passed"] = False
    rejected["gate"]["reasons"] = ["test ROC-AUC 0.51 < 0.75"]
    rejected["deployment"] = {"deployed": False, "version": None, "target": None, "reasons": []}
    run = training_run(rejected, Config(), CONTEXT, {})
    assert run.tags["gate"] == "failed" and run.tags["deployed"] == "false"
    assert "registry_version" not in run.tags and run.tags["gate_reasons"] == "test ROC-AUC 0.51 < 0.75"
    assert run.metrics["gate.passed"] == 0.0


def test_the_experiment_name_comes_from_the_config() -> None:
    assert Config().experiment_name == "marketing-propensity"
    assert Config().with_overrides(["tracking.experiment=nightly-churn"]).experiment_name == "nightly-churn"
    jobs = Config().with_overrides(["vertex.experiment=propensity-jobs"])  # the Vertex jobs' experiment
    assert jobs.experiment_name == "propensity-jobs"
    both = jobs.with_overrides(["tracking.experiment=nightly-churn"])
    assert both.experiment_name == "nightly-churn"
    with pytest.raises(ConfigError, match=r"tracking\.experiment"):
        Config().with_overrides(["tracking.experiment=Nightly Churn"])


def test_every_local_runner_is_one_whose_launcher_tracks_failed_runs() -> None:
    from components.tracking.record import LAUNCHER_TRACKED_RUNNERS
    from pipelines.containers import RUNNERS

    assert set(RUNNERS) <= set(LAUNCHER_TRACKED_RUNNERS)  # else a failed local run is tracked twice
