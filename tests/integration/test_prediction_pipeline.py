"""The prediction pipeline through the KFP local runner, via the ``predict`` CLI command.

Uses a copy of the session's trained registry (a drift retrain may register a new version, and the
other test modules expect the original champion). An unshifted, unlabelled batch is scored without
retraining; a shifted batch without labels is not retrained (nothing new to learn: an alert); its
labels arriving later are joined by id to the prediction log, and the retrain they allow is judged
on the new rows held out of training; a shifted, labelled batch whose outcomes follow a new rule
is retrained and its challenger, better on the new rows, deployed; bad batches and a registry
without a champion fail with messages that name the problem.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from kfp import compiler
from mlflow.tracking import MlflowClient

from components.data.synthetic import generate_marketing
from components.monitoring.prediction_log import PredictionLog
from components.registry.local import LocalRegistry
from pipelines.compile import validate_pipeline_yaml
from pipelines.prediction import build_prediction_pipeline
from tests.conftest import FAST_OVERRIDES, TrainedRegistry

MODEL = "marketing-propensity"
ROWS = 600


def run_cli(argv: list[str]) -> int:
    """``propensity <argv>``: the real CLI entry point, as a user calls it."""
    from pipelines import cli

    return cli.main(argv)


def summary_of(out: str) -> dict:
    return json.loads(out[out.index("\n{") + 1 :])


@pytest.fixture(scope="module")
def workspace(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prediction")
    shutil.copytree(trained_registry.root, root / "registry")
    unshifted = generate_marketing(rows=ROWS, seed=31).drop(columns=["Response"])
    folder = root / "inference"
    folder.mkdir()
    generate_marketing(rows=50, seed=32).to_csv(folder / "p4_extrac.csv", sep="\t", index=False)
    unshifted.to_csv(folder / "p5_extrac.csv", sep="\t", index=False)  # the newest part
    shifted = generate_marketing(rows=ROWS, seed=33, drift=1.0)
    # the drifted customers answer by a new rule (recent contacts no longer respond, older ones do):
    # the champion ranks them backwards, a model that learns from them cannot
    shifted["Response"] = (shifted["Recency"] > 55).astype(int)
    shifted.to_parquet(root / "shifted.parquet", index=False)
    generate_marketing(rows=ROWS, seed=34, drift=1.0).drop(columns=["Response"]).to_parquet(
        root / "shifted_unlabelled.parquet", index=False
    )
    return root


def predict_args(workspace: Path, batch: Path, *extra: str) -> list[str]:
    args = ["predict", "--json", "--workdir", str(workspace / "work"), "--batch", str(batch)]
    args += ["--registry", str(workspace / "registry"), "--log", str(workspace / "log")]
    for item in [*FAST_OVERRIDES, f"model_name={MODEL}"]:
        args += ["--set", item]
    return [*args, *extra]


def tracked_run(summary: dict) -> Any:
    """The run as MLflow's own client reads it from the work directory's store."""
    assert summary["tracking"]["logged"] is True, summary["tracking"]
    return MlflowClient(summary["tracking"]["uri"]).get_run(summary["tracking"]["run_id"])


def run_root(summary: dict) -> Path:
    return Path(summary["artifacts"]["score"]).parent.parent


def test_prediction_pipeline_compiles_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "prediction_pipeline.yaml"
    compiler.Compiler().compile(build_prediction_pipeline("europe-docker.pkg.dev/p/r/img:abc"), str(path))
    spec = validate_pipeline_yaml(path)
    assert spec.pipeline_info.name == "propensity-prediction"
    params = set(spec.root.input_definitions.parameters)
    assert {"batch_uri", "registry_uri", "config_json", "prediction_log_uri", "drift_source"} <= params
    document = yaml.safe_load(path.read_text())
    images = {e["container"]["image"] for e in document["deploymentSpec"]["executors"].values()}
    assert images == {"europe-docker.pkg.dev/p/r/img:abc"}  # nested training included
    nested = document["components"]["comp-propensity-training"]["dag"]["tasks"]  # the training DAG
    assert {"ingest", "train", "gate"} <= set(nested)
    assert "labels_uri" in params
    text = path.read_text()
    assert "pipelinechannel--plan-retraining-retrain" in text  # the retrain condition
    assert (
        "retrain_context"
        in document["components"]["comp-propensity-training"]["inputDefinitions"]["parameters"]
    )


@pytest.mark.integration
def test_unshifted_batch_is_scored_valued_and_not_retrained(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = LocalRegistry(workspace / "registry").versions(MODEL)
    code = run_cli(predict_args(workspace, workspace / "inference"))
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = summary_of(out)

    # the newest part only, every row scored once, ids in batch order
    batch = pd.read_csv(workspace / "inference" / "p5_extrac.csv", sep="\t")
    assert summary["scoring"]["sources"] == [str(workspace / "inference" / "p5_extrac.csv")]
    predictions = pd.read_parquet(Path(summary["artifacts"]["score"]) / "predictions.parquet")
    assert predictions["id"].tolist() == batch["ID"].tolist()
    assert set(predictions["model_version"]) == {"v0001"}
    assert "Response" not in predictions.columns  # an unlabelled batch
    logged = PredictionLog(workspace / "log").read()
    assert logged["id"].tolist() == batch["ID"].tolist()
    assert len(logged) == ROWS and set(logged["source"]) == {"batch"}

    # no drift, no retrain, and the decision is recorded
    drift = summary["drift"]
    assert drift["share"] <= drift["threshold"] == 0.15 and drift["drifted"] is False
    assert summary["retrain"]["triggered"] is False
    root = run_root(summary)
    assert json.loads((root / "record-no-retrain" / "decision").read_text())["retrained"] is False
    assert not list(root.glob("*/pipeline_summary"))  # the training pipeline did not run
    assert LocalRegistry(workspace / "registry").versions(MODEL) == before

    # business value and the reports
    value = summary["business"]
    assert value["customers"] == ROWS and value["realised"] is None
    assert value["best"]["expected_profit"] >= max(0.0, value["everyone"]["expected_profit"])
    ranked = pd.read_parquet(root / "business-value" / "ranked")
    assert len(ranked) == ROWS and ranked["expected_profit"].is_monotonic_decreasing
    assert "<img" in (root / "business-value" / "business_report").read_text()
    evidently_page = (root / "check-drift" / "drift_report").read_text()
    assert "Drifted Columns" in evidently_page and "Income" in evidently_page
    assert json.loads((root / "check-drift" / "drift").read_text())["column_count"] == 25

    # the run is tracked: rows scored, drift share, retrain decision, its reports
    run = tracked_run(summary)
    assert run.info.status == "FINISHED" and run.data.tags["pipeline"] == "prediction"
    assert run.data.metrics["scoring.rows"] == ROWS and run.data.metrics["drift.share"] == drift["share"]
    assert run.data.metrics["retrain.triggered"] == 0.0 and run.data.tags["retrain"] == "not needed"
    assert run.data.tags["model_version"] == "v0001"
    client = MlflowClient(summary["tracking"]["uri"])
    reports = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    names = ("drift_report.html", "business_report.html", "scoring_report.md", "prediction_summary.json")
    assert reports == {f"reports/{name}" for name in names}


@pytest.mark.integration
def test_shifted_batch_without_labels_is_not_retrained_and_alerts(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = LocalRegistry(workspace / "registry")
    before = (registry.versions(MODEL), registry.champion(MODEL))
    code = run_cli(predict_args(workspace, workspace / "shifted_unlabelled.parquet"))
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = summary_of(out)

    assert summary["drift"]["drifted"] is True  # the drift is there ...
    retrain = summary["retrain"]
    assert retrain["drift_detected"] is True and retrain["triggered"] is False  # ... nothing to learn from
    expected = "drift detected, retraining needs labels: 0 labelled rows < minimum 100"
    assert retrain["reason"].startswith(expected)
    assert summary["alerts"] == [retrain["reason"]]
    root = run_root(summary)
    recorded = json.loads((root / "record-no-retrain" / "decision").read_text())
    assert recorded["retrained"] is False and recorded["alert"].startswith(expected)
    assert "ALERT: drift detected" in (root / "plan-retraining" / "retrain_report").read_text()
    assert not list(root.glob("*/pipeline_summary"))  # no training ran
    assert (registry.versions(MODEL), registry.champion(MODEL)) == before


def champion_ranked_labels(workspace: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The logged scores of the unlabelled drifted customers, and outcomes that are the champion's
    own ranking of them (the top half by its score are positive)."""
    logged = PredictionLog(workspace / "log").read()
    batch = pd.read_parquet(workspace / "shifted_unlabelled.parquet")
    scored = logged[logged["id"].isin(set(batch["ID"]))].drop_duplicates("id", keep="last")
    median = scored["calibrated_probability"].median()
    labels = pd.DataFrame(
        {"ID": scored["id"], "Response": (scored["calibrated_probability"] > median).astype(int)}
    )
    return scored, labels


@pytest.mark.integration
def test_labels_arriving_later_are_joined_and_the_new_rows_decide(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outcomes of the unlabelled drifted customers arrive: joined by id to the prediction log, they
    retrain, and the gate compares on the held-out ones. These outcomes are the champion's own
    ranking (top half by its score), so no challenger can be better there: it must not be deployed."""
    scored, labels = champion_ranked_labels(workspace)
    labels = pd.concat([labels, pd.DataFrame({"ID": [99_999_001, 99_999_002], "Response": [1, 0]})])
    labels.to_csv(workspace / "labels.csv", index=False)  # two customers never scored
    registry = LocalRegistry(workspace / "registry")
    before = (registry.versions(MODEL), registry.champion(MODEL))

    args = predict_args(
        workspace, workspace / "shifted_unlabelled.parquet", "--labels", str(workspace / "labels.csv")
    )
    code = run_cli(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = summary_of(out)
    decision = summary["retrain"]["decision"]
    assert decision["labels"]["joined to the prediction log"] == len(scored) == ROWS
    assert decision["labels"]["not joined (id never scored, or not in the log)"] == 2
    assert {"99999001", "99999002"} == set(decision["labels"]["examples of ids not joined"])
    assert summary["retrain"]["triggered"] is True and decision["new_rows"] == ROWS
    assert decision["holdout_rows"] == round(0.3 * ROWS)

    outcome = summary["retrain"]["outcome"]
    assert outcome is not None, "the nested training pipeline wrote no summary"
    check = next(c for c in outcome["gate"]["checks"] if c["name"] == "better than champion on the new rows")
    assert check["passed"] is False and check["threshold"] == 1.0  # the champion ranks them perfectly
    assert f"on {decision['holdout_rows']} newly labelled rows held out" in check["detail"]
    assert outcome["gate"]["passed"] is False and outcome["deployment"]["deployed"] is False
    assert (registry.versions(MODEL), registry.champion(MODEL)) == before
    report = next(run_root(summary).glob("*/gate_report")).read_text()
    assert "## Challenger vs champion" in report and "new labelled rows, held out" in report


@pytest.mark.integration
def test_retrain_command_joins_labels_and_needs_enough_new_ones(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``propensity retrain --labels``: the same join and decision without a prediction run."""
    batch = pd.read_parquet(workspace / "shifted_unlabelled.parquet").head(40)
    labels = batch[["ID"]].assign(Response=[i % 2 for i in range(len(batch))])
    labels.to_csv(workspace / "few_labels.csv", index=False)
    registry = LocalRegistry(workspace / "registry")
    before = (registry.versions(MODEL), registry.champion(MODEL))
    args = ["retrain", "--labels", str(workspace / "few_labels.csv"), "--workdir", str(workspace / "work")]
    args += [
        "--registry",
        str(workspace / "registry"),
        "--log",
        str(workspace / "log"),
        "--set",
        f"model_name={MODEL}",
    ]
    code = run_cli(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "labels: joined to the prediction log: 40" in out
    assert "retrain: no (retrain requested, retraining needs labels: 40 labelled rows < minimum 100" in out
    assert (registry.versions(MODEL), registry.champion(MODEL)) == before

    labels.rename(columns={"Response": "outcome"}).to_csv(workspace / "bad_labels.csv", index=False)
    args[args.index("--labels") + 1] = str(workspace / "bad_labels.csv")
    code = run_cli(args)
    _, err = capsys.readouterr()
    assert code == 2 and "bad_labels.csv lack column(s) ['Response']" in err

    # enough labels: the training pipeline runs, the held-out new rows judge it (the champion's own
    # ranking: no challenger beats it there), and the training run is tracked
    _, ranked = champion_ranked_labels(workspace)
    ranked.to_csv(workspace / "ranked_labels.csv", index=False)
    args[args.index("--labels") + 1] = str(workspace / "ranked_labels.csv")
    code = run_cli([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    document = summary_of(out)
    assert document["decision"]["retrain"] is True and document["decision"]["new_rows"] == len(ranked)
    training = document["training"]
    check = next(c for c in training["gate"]["checks"] if c["name"] == "better than champion on the new rows")
    assert check["passed"] is False and training["deployment"]["deployed"] is False
    assert (registry.versions(MODEL), registry.champion(MODEL)) == before
    run = tracked_run(training)
    assert run.data.tags["pipeline"] == "training" and run.data.tags["gate"] == "failed"
    assert run.data.metrics["test.roc_auc"] == training["metrics"]["test"]["roc_auc"]


@pytest.mark.integration
def test_shifted_labelled_batch_retrains_and_the_new_rows_decide(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = LocalRegistry(workspace / "registry")
    versions_before = [v["version"] for v in registry.versions(MODEL)]
    code = run_cli(predict_args(workspace, workspace / "shifted.parquet"))
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = summary_of(out)

    shifted = pd.read_parquet(workspace / "shifted.parquet")
    predictions = pd.read_parquet(Path(summary["artifacts"]["score"]) / "predictions.parquet")
    assert predictions["id"].tolist() == shifted["ID"].tolist()
    assert predictions["Response"].tolist() == shifted["Response"].tolist()
    assert summary["business"]["realised"]["labelled_rows"] == ROWS

    drift = summary["drift"]
    assert drift["drifted"] is True and drift["share"] > 0.15
    assert {"Income", "Year_Birth"} <= set(drift["drifted_columns"])
    decision = summary["retrain"]["decision"]
    assert summary["retrain"]["triggered"] is True and summary["alerts"] == []

    # the nested training ran on the reference plus the new rows it did not hold out
    root = run_root(summary)
    retrain_table = pd.read_parquet(root / "plan-retraining" / "retrain_data" / "retrain.parquet")
    holdout = pd.read_parquet(root / "plan-retraining" / "retrain_data" / "holdout.parquet")
    reference = pd.read_parquet(Path(summary["model"]["path"]) / "reference.parquet")
    assert len(holdout) == decision["holdout_rows"] == round(0.3 * decision["new_rows"])
    assert not set(holdout["ID"]) & set(retrain_table["ID"])  # held out: never trained on
    assert decision["train_new_rows"] + decision["holdout_rows"] == decision["new_rows"]
    seen_again = reference["ID"].isin(set(shifted["ID"])).sum()
    assert len(retrain_table) == len(reference) - seen_again + decision["train_new_rows"]
    outcome = summary["retrain"]["outcome"]
    assert outcome is not None, "the nested training pipeline wrote no summary"
    training = json.loads(Path(outcome["training_summary"]).read_text())
    assert training["dataset"]["rows"] == len(retrain_table)

    # both comparisons are reported; on the new rows the challenger is better, and it is deployed
    data = [c["data"] for c in outcome["gate"]["comparisons"]]
    assert data[0].startswith("test split") and data[1].startswith("new labelled rows, held out")
    check = next(c for c in outcome["gate"]["checks"] if c["name"] == "better than champion on the new rows")
    assert check["passed"] is True and check["value"] > check["threshold"], check
    assert outcome["gate"]["passed"] is True, outcome["gate"]["reasons"]
    assert outcome["deployment"]["deployed"] is True
    new_version = outcome["deployment"]["version"]
    assert [v["version"] for v in registry.versions(MODEL)] == [*versions_before, new_version]
    assert registry.champion(MODEL) == new_version
    recorded = registry.load(MODEL, new_version).extra["retrain"]
    assert recorded["window"] == "reference+new" and recorded["new_rows_held_out"] == len(holdout)
    assert recorded["base_model_version"] == versions_before[-1]

    # both are tracked: this prediction run (retrain triggered) and the training run it started
    run = tracked_run(summary)
    assert run.data.tags["retrain"] == "triggered" and run.data.metrics["drift.share"] == drift["share"]
    retrain_run = tracked_run(training)
    assert retrain_run.data.tags["pipeline"] == "training"
    assert retrain_run.info.run_name == run.info.run_name  # the same run name ties them together
    assert retrain_run.data.metrics["test.roc_auc"] == training["metrics"]["test"]["roc_auc"]
    assert retrain_run.data.tags["registry_version"] == new_version


@pytest.mark.integration
def test_bad_batches_fail_with_the_problem_named(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = workspace / "empty.csv"
    generate_marketing(rows=5, seed=1).iloc[:0].to_csv(empty, index=False)
    code = run_cli(predict_args(workspace, empty))
    _, err = capsys.readouterr()
    assert code == 1 and "score-batch" in err and "no rows" in err and "empty.csv" in err

    no_income = workspace / "no_income.parquet"
    generate_marketing(rows=30, seed=1).drop(columns=["Income"]).to_parquet(no_income, index=False)
    code = run_cli(predict_args(workspace, no_income))
    _, err = capsys.readouterr()
    assert code == 1 and "lacks column(s) ['Income']" in err and "no_income.parquet" in err

    code = run_cli(predict_args(workspace, workspace / "missing.csv"))
    _, err = capsys.readouterr()
    assert code == 2 and "missing.csv does not exist" in err

    # labels are refused before anything runs when they cannot be read or joined
    args = predict_args(workspace, workspace / "shifted.parquet", "--labels", str(workspace / "nope.csv"))
    code = run_cli(args)
    _, err = capsys.readouterr()
    assert code == 2 and "--labels" in err and "nope.csv: no such file or folder" in err
    code = run_cli([*args[:-1], str(workspace / "shifted.parquet"), "--no-log"])
    _, err = capsys.readouterr()
    assert code == 2 and "joins outcomes to the prediction log: drop --no-log" in err


@pytest.mark.integration
def test_no_champion_is_a_clear_error(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.local_runner import PipelineRunError, run_pipeline_locally

    args = predict_args(workspace, workspace / "shifted.parquet")
    args[args.index("--registry") + 1] = str(tmp_path / "empty-registry")
    code = run_cli(args)
    _, err = capsys.readouterr()
    assert code == 2 and "has no model 'marketing-propensity'" in err

    # the pipeline's own step says the same when started without the CLI's check
    with pytest.raises(PipelineRunError, match="has no model 'marketing-propensity'"):
        run_pipeline_locally(
            {
                "batch_uri": str(workspace / "shifted.parquet"),
                "registry_uri": str(tmp_path / "empty-registry"),
            },
            tmp_path / "run",
            echo=lambda line: None,
            pipeline="prediction",
            summary_output="prediction_summary",
        )


@pytest.mark.integration
def test_gcs_prefix_scores_its_newest_part(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gs:// prefix through a real GCS JSON API (the emulator): newest object by update time."""
    from components.batch.champion import load_champion
    from components.batch.scoring import run_batch_scoring
    from tests.gcs_emulator import anonymous_client, running_emulator

    newer, older = generate_marketing(rows=30, seed=41), generate_marketing(rows=20, seed=42)
    with running_emulator() as emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        client = anonymous_client()
        bucket = client.create_bucket("batches")
        bucket.blob("inference/p9_extrac.csv").upload_from_string(older.to_csv(index=False, sep="\t"))
        bucket.blob("inference/p2_extrac.csv").upload_from_string(newer.to_csv(index=False, sep="\t"))
        champion = load_champion(str(workspace / "registry"), MODEL, "v0001")
        run = run_batch_scoring("gs://batches/inference", champion, tmp_path / "out", client=client)
        assert run.batch.sources == ["gs://batches/inference/p2_extrac.csv"]
        assert run.predictions["id"].tolist() == newer["ID"].tolist()
        every = run_batch_scoring("gs://batches/inference/", champion, tmp_path / "all", "all", client=client)
        assert len(every.predictions) == 50
