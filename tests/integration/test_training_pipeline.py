"""The whole training pipeline through the KFP local runner, on small data, via the real CLI.

Runs three times against one registry: a first model (deployed as v0001), the same data again
(compared with that champion; the same model, byte for byte, so it is not registered), and shuffled
labels (gate fails, registry byte-for-byte unchanged); then a run that fails at ingest. Every one of
them is tracked in the work directory's MLflow store, which the last test reads back with MLflow's
own client and the CLI.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.data import synthetic as data
from components.registry.local import LocalRegistry
from components.shared.config import Config
from pipelines.cli import main
from tests.conftest import fast_run_args

pytestmark = pytest.mark.integration

MODEL = "marketing-propensity"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary_of(out: str) -> dict:
    return json.loads(out[out.index("\n{") + 1 :])


def registry_snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    frame = data.generate_marketing(rows=700, seed=3)
    frame.to_csv(root / "customers.csv", index=False)
    shuffled = frame.copy()
    shuffled["Response"] = np.random.default_rng(0).permutation(shuffled["Response"].to_numpy())
    shuffled.to_csv(root / "shuffled.csv", index=False)
    return root


def base_args(workspace: Path, data_file: str) -> list[str]:
    return fast_run_args(workspace / "work", workspace / data_file)


def pipeline_arguments(data: Path, registry: Path, config: Config, run_name: str) -> dict:
    """The training pipeline's arguments for a run started without the CLI."""
    return {
        "data_uri": str(data),
        "registry_uri": str(registry),
        "config_json": config.to_json(),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": run_name,
        "code_version": "test",
    }


FIRST_RUN: dict[str, dict] = {}  # the first run's summary, for the second run to compare with


def test_first_model_is_deployed_with_all_artifacts(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(base_args(workspace, "customers.csv"), capsys)
    assert code == 0, err
    summary = summary_of(out)
    FIRST_RUN["summary"] = summary

    assert summary["gate"]["passed"] is True
    assert summary["deployment"]["deployed"] is True
    assert summary["deployment"]["version"] == "v0001"
    assert summary["deployment"]["previous_champion"] is None
    assert set(summary["metrics"]["families"]) == {"xgboost", "logreg", "mlp", "blend"}
    assert set(summary["metrics"]["cv"]) == {"xgboost", "logreg", "mlp", "blend"}
    champion_cv = summary["metrics"]["cv"][summary["champion"]]["cv_roc_auc"]
    assert champion_cv == max(entry["cv_roc_auc"] for entry in summary["metrics"]["cv"].values())
    assert summary["champion"] in summary["metrics"]["families"]
    assert summary["metrics"]["test"]["roc_auc"] >= 0.75
    for stage in (
        "ingest",
        "split",
        "features",
        "train",
        "calibrate",
        "evaluate",
        "explain",
        "package",
        "gate",
        "deploy",
        "tune-xgboost",
        "tune-logreg",
        "tune-mlp",
    ):
        assert summary["stage_seconds"][stage] is not None and summary["stage_seconds"][stage] >= 0, stage

    # the registry holds the bundle, and it reproduces the reported test metric on the test split
    registry = LocalRegistry(workspace / "work" / "registry")
    assert registry.champion(MODEL) == "v0001"
    bundle = registry.load(MODEL, "champion")
    test = pd.read_parquet(Path(summary["artifacts"]["split"]).parent / "test")
    _, served = bundle.predict(test.drop(columns=["Response"]))
    assert roc_auc_score(test["Response"], served) == pytest.approx(
        summary["metrics"]["test"]["roc_auc"], abs=1e-9
    )
    assert bundle.threshold == pytest.approx(summary["metrics"]["test"]["threshold"])

    # human-readable artifacts exist and say what they should
    run_root = Path(summary["artifacts"]["ingest"]).parent.parent
    report = (run_root / "ingest" / "data_report").read_text()
    assert "Response" in report and "Z_CostContact" in report  # class balance + dropped columns
    shap_page = (run_root / "explain" / "shap_report").read_text()
    assert "<img" in shap_page and "true positive" in shap_page.lower()
    assert "<img" in (run_root / "calibrate" / "reliability").read_text()
    gate_md = next(run_root.glob("gate/gate_report")).read_text()
    assert "PASSED" in gate_md and "0.75" in gate_md and "Threshold stability" in gate_md
    oof = pd.read_parquet(run_root / "train" / "models" / "oof.parquet")
    assert len(oof) == summary["dataset"]["rows"] - len(test)  # every development row, out of fold
    importances = summary["top_features"]
    assert importances and all(not name.startswith("num__") for name in importances)


def test_second_run_is_compared_with_champion_and_not_registered_again(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Also the same run with every task a new process, as kfp starts them: the same model, byte for
    byte, so the registry refuses it as identical and the champion stays."""
    registry_root = workspace / "work" / "registry"
    before = registry_snapshot(registry_root)
    args = [*base_args(workspace, "customers.csv"), "--fresh-task-processes"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    summary = summary_of(out)
    first = FIRST_RUN["summary"]
    assert summary["champion"] == first["champion"]
    assert summary["metrics"]["cv"] == first["metrics"]["cv"]
    assert summary["metrics"]["test"] == first["metrics"]["test"]
    champion_check = next(c for c in summary["gate"]["checks"] if c["name"] == "not worse than champion")
    assert "v0001" in champion_check["detail"]
    assert summary["gate"]["champion_version"] == "v0001"
    assert summary["gate"]["passed"] is True
    assert summary["deployment"]["deployed"] is False and summary["deployment"]["version"] is None
    assert "byte-identical to champion v0001's" in summary["deployment"]["reasons"][0]
    assert registry_snapshot(registry_root) == before  # no version, no alias move
    FIRST_RUN["second"] = summary


def test_shuffled_labels_fail_the_gate_and_leave_registry_unchanged(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_root = workspace / "work" / "registry"
    before = registry_snapshot(registry_root)
    assert before, "the earlier tests should have filled the registry"

    # ... with a tracking store that cannot be written: the run goes on, and says so once
    blocker = workspace / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    store = f"sqlite:///{blocker}/tracking/mlflow.db"
    code, out, err = run_cli([*base_args(workspace, "shuffled.csv"), "--tracking-uri", store], capsys)
    assert code == 0, err
    summary = summary_of(out)
    assert summary["tracking"]["logged"] is False and "not-a-folder" in summary["tracking"]["error"]
    assert err.count("tracking: NOT recorded") == 1 and store in err
    assert summary["gate"]["passed"] is False
    assert summary["deployment"]["deployed"] is False
    reasons = " ".join(summary["gate"]["reasons"])
    assert "ROC-AUC" in reasons
    assert summary["metrics"]["test"]["roc_auc"] < 0.7
    assert registry_snapshot(registry_root) == before
    FIRST_RUN["shuffled"] = summary


def test_bad_input_fails_the_run_with_the_column_named(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = data.generate_marketing(rows=200, seed=1).drop(columns=["Response"])
    frame.to_csv(workspace / "no_target.csv", index=False)
    code, _, err = run_cli(base_args(workspace, "no_target.csv"), capsys)
    assert code == 1
    assert "ingest" in err and "Response" in err and "no_target.csv" in err


def test_missing_file_and_gcs_root_are_refused_before_running(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["run", "--data", str(workspace / "nope.csv")], capsys)
    assert code == 2 and "nope.csv" in err
    args = [*base_args(workspace, "customers.csv"), "--pipeline-root", "gs://bucket/root"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "gs://bucket/root" in err and "local runner" in err


def test_a_run_over_its_time_limit_is_killed_and_names_the_running_task(
    workspace: Path, tmp_path: Path
) -> None:
    from pipelines.local_runner import PipelineRunError, run_pipeline_locally

    # a search that would run for minutes: the limit strikes while the tune tasks are running
    config = Config().with_overrides(["tune.n_trials.mlp=100000", "tune.time_budget_seconds=3000"])
    arguments = pipeline_arguments(workspace / "customers.csv", tmp_path / "registry", config, "time-limit")
    run_dir = tmp_path / "run"
    start = time.monotonic()
    with pytest.raises(PipelineRunError, match=r"time limit of 25 s; still running: .*'tune'") as info:
        run_pipeline_locally(arguments, run_dir, echo=lambda _: None, timeout_seconds=25)
    assert time.monotonic() - start < 60
    assert str(run_dir / "pipeline.log") in str(info.value)
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(run_dir) not in processes  # the runner and every task it started are gone
    assert not (tmp_path / "registry").exists()  # nothing was registered


def test_a_failed_run_on_a_cluster_is_tracked_by_the_pipelines_exit_task(
    workspace: Path, tmp_path: Path
) -> None:
    """No launcher watches a cluster run: the exit handler's task, run here by the KFP local runner
    as a cluster would run it (runner 'kfp'), records the failed run in the store it is given."""
    from mlflow.tracking import MlflowClient

    from components.tracking.mlflow_backend import local_store_uri
    from pipelines.local_runner import PipelineRunError, run_pipeline_locally

    frame = data.generate_marketing(rows=200, seed=2).drop(columns=["Response"])
    frame.to_csv(tmp_path / "no_target.csv", index=False)
    uri = local_store_uri(tmp_path / "tracking")
    config = Config()
    arguments = pipeline_arguments(
        tmp_path / "no_target.csv", tmp_path / "registry", config, "run-20261203-120000-000000"
    )
    arguments.update({"tracking_uri": uri, "runner": "kfp"})
    with pytest.raises(PipelineRunError, match="ingest"):
        run_pipeline_locally(arguments, tmp_path / "run", echo=lambda _: None)

    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    assert run.info.status == "FAILED" and run.info.run_name == "run-20261203-120000-000000"
    tags = run.data.tags
    assert tags["runner"] == "kfp" and tags["data_uri"].endswith("no_target.csv")
    assert tags["error"].startswith("pipeline failed")  # the local runner's final status names no task
    assert tags["pipeline_job"]  # the orchestrator's name for the job
    assert run.data.params["tune.families"] == ",".join(config.tune.families)


def test_every_run_is_tracked_and_read_back_with_mlflows_client(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from components.tracking.mlflow_backend import local_store_uri

    uri = local_store_uri(workspace / "work" / "tracking")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(MODEL)  # the experiment is the registry model's name
    runs = client.search_runs([experiment.experiment_id])
    # the shuffled run's store could not be written: it is not here
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]

    first, second = FIRST_RUN["summary"], FIRST_RUN["second"]
    for summary, version in ((first, "v0001"), (second, None)):  # the second: identical, not registered
        assert summary["tracking"]["logged"] is True, summary["tracking"]
        run = client.get_run(summary["tracking"]["run_id"])
        metrics, tags = run.data.metrics, run.data.tags
        assert metrics["test.roc_auc"] == summary["metrics"]["test"]["roc_auc"]
        assert metrics["test.f1"] == summary["metrics"]["test"]["f1"]
        for family, scores in summary["metrics"]["cv"].items():
            assert metrics[f"family.{family}.cv_roc_auc"] == scores["cv_roc_auc"]
        assert metrics["gate.passed"] == float(summary["gate"]["passed"])
        assert tags.get("registry_version") == version
        if version is None:
            assert "byte-identical to champion v0001's" in tags["not_deployed"]
        assert tags["champion"] == summary["champion"] and tags["runner"] == "subprocess"
        assert tags["data_uri"].endswith("customers.csv") and tags["gate"] == "passed"
        assert run.data.params["gate.min_f1"] == "0.5"
        reports = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
        names = ("data_report.md", "reliability.html", "shap_report.html", "gate_report.md")
        assert reports == {f"reports/{name}" for name in (*names, "pipeline_summary.json")}
    run_root = Path(first["artifacts"]["explain"]).parent.parent
    copy = client.download_artifacts(first["tracking"]["run_id"], "reports/shap_report.html", str(workspace))
    assert Path(copy).read_bytes() == (run_root / "explain" / "shap_report").read_bytes()

    [failed] = [r for r in runs if r.info.status == "FAILED"]
    assert failed.data.tags["failed_stage"] == "ingest"
    assert "Response" in failed.data.tags["error"] and failed.data.tags["data_uri"].endswith("no_target.csv")

    store = ["--workdir", str(workspace / "work")]
    code, listed, _ = run_cli(["runs", *store], capsys)
    assert code == 0
    lines = listed.splitlines()
    assert len(lines) == 2 + 3  # header, rule, one line per run
    assert "failed at ingest" in lines[2]  # newest first
    assert "v0001" not in lines[3] and "v0001" in lines[4]  # the second run registered nothing
    assert f"{first['metrics']['test']['roc_auc']:.4f}" in lines[4]
    assert f"{first['metrics']['test']['f1']:.4f}" in lines[4] and first["champion"] in lines[4]

    code, compared, _ = run_cli(["runs", "compare", *store], capsys)  # the newest two finished ones
    assert code == 0
    assert f"A: {first['tracking']['run_name']}" in compared
    assert f"B: {second['tracking']['run_name']}" in compared
    rows = {line.split()[0]: line.split()[1:] for line in compared.splitlines() if line.strip()}
    assert rows["registry_version"] == ["v0001", "-", "*"]
    auc = f"{first['metrics']['test']['roc_auc']:.4f}"
    assert rows["test.roc_auc"] == [auc, auc, "+0.0000"]  # the same data and settings: the same model
    assert "gate.not_worse_than_champion.value" in rows  # the second run had a champion to beat
    assert "gate.min_f1" not in rows  # unchanged params are not shown

    code, _, err = run_cli(["runs", "compare", "no-such-run", first["tracking"]["run_name"], *store], capsys)
    assert code == 2 and "no-such-run" in err
