"""The whole training pipeline through the KFP local runner, on small data, via the real CLI.

Runs three times against one registry: a first model (deployed as v0001), the same data again
(compared with that champion; the same model, byte for byte, so it is not registered), and shuffled
labels (gate fails, registry byte-for-byte unchanged).
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


def test_shuffled_labels_fail_the_gate_and_leave_registry_unchanged(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_root = workspace / "work" / "registry"
    before = registry_snapshot(registry_root)
    assert before, "the earlier tests should have filled the registry"

    code, out, err = run_cli(base_args(workspace, "shuffled.csv"), capsys)
    assert code == 0, err
    summary = summary_of(out)
    assert summary["gate"]["passed"] is False
    assert summary["deployment"]["deployed"] is False
    reasons = " ".join(summary["gate"]["reasons"])
    assert "ROC-AUC" in reasons
    assert summary["metrics"]["test"]["roc_auc"] < 0.7
    assert registry_snapshot(registry_root) == before


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
    arguments = {
        "data_uri": str(workspace / "customers.csv"),
        "registry_uri": str(tmp_path / "registry"),
        "config_json": config.to_json(),
        "families": config.tune.families,
        "deploy_target": "local",
        "run_name": "time-limit",
        "code_version": "test",
    }
    run_dir = tmp_path / "run"
    start = time.monotonic()
    with pytest.raises(PipelineRunError, match=r"time limit of 25 s; still running: .*'tune'") as info:
        run_pipeline_locally(arguments, run_dir, echo=lambda _: None, timeout_seconds=25)
    assert time.monotonic() - start < 60
    assert str(run_dir / "pipeline.log") in str(info.value)
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(run_dir) not in processes  # the runner and every task it started are gone
    assert not (tmp_path / "registry").exists()  # nothing was registered
