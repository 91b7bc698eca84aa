"""Both pipelines with every task in the pipeline image (`--runner docker`), run by the invoking user."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.model.bundle import load_bundle
from pipelines.containers import RUN_LABEL
from tests.containers.conftest import MODEL_NAME, BuiltImages, TrainedInContainers, User, fast_args

TRAINING_TASKS = {"ingest", "split", "features", "tune", "train", "calibrate", "evaluate", "gate"}


def owners(root: Path) -> set[tuple[int, int]]:
    return {(p.stat().st_uid, p.stat().st_gid) for p in [root, *root.rglob("*")]}


def test_training_in_containers_registers_a_version_owned_by_the_invoking_user(
    trained: TrainedInContainers, user: User
) -> None:
    summary = trained.summary
    assert summary["gate"]["passed"] and summary["deployment"]["deployed"]
    assert summary["deployment"]["version"] == "v0001"
    assert f"each task in propensity-pipeline:local as {user.uid}:{user.gid}" in trained.result.stdout
    for task in TRAINING_TASKS:
        assert f"ok {task}" in trained.result.stdout, task
    assert owners(trained.version_dir) == {(user.uid, user.gid)}
    assert owners(trained.registry) == {(user.uid, user.gid)}
    runs = trained.workdir / "runs"
    assert owners(runs) == {(user.uid, user.gid)}  # task outputs and the runner's own files alike
    # Readable by anyone (an endpoint under another uid): no 0700/0600 staging modes left behind.
    assert all(p.stat().st_mode & 0o004 for p in trained.version_dir.rglob("*"))


def test_the_bundle_trained_in_containers_predicts_like_it_does_in_this_venv(
    trained: TrainedInContainers,
) -> None:
    bundle = load_bundle(trained.version_dir)
    assert bundle.version_mismatches() == {}  # xgboost-cpu in the image is the same xgboost
    probabilities, _ = bundle.predict(trained.data.drop(columns=["Response"]).head(200))
    assert np.all((probabilities > 0) & (probabilities < 1))
    served = trained.summary["metrics"]["test"]["roc_auc"]
    assert served > 0.8, served


def test_the_prediction_pipeline_runs_in_containers_with_a_batch_outside_the_workdir(
    trained: TrainedInContainers, user: User, images: BuiltImages, tmp_path: Path
) -> None:
    from components.data.synthetic import generate_marketing

    batch_dir = user.make_dir(tmp_path / "incoming")
    tmp_path.chmod(0o755)
    batch = generate_marketing(rows=300, seed=11).drop(columns=["Response"])
    batch_file = batch_dir / "batch.parquet"
    batch.to_parquet(batch_file, index=False)
    result = user.run(
        "predict",
        "--json",
        "--batch",
        str(batch_file),
        "--workdir",
        str(trained.workdir),
        "--runner",
        "docker",
        "--image",
        images.tag("pipeline"),
    )
    assert result.returncode == 0, (
        f"predict --runner docker failed:\n{result.stdout[-4000:]}\n{result.stderr}"
    )
    summary = json.loads(result.stdout[result.stdout.index("\n{") :])
    assert summary["scoring"]["sources"] == [str(batch_file)]
    assert summary["retrain"]["triggered"] is False
    predictions = pd.read_parquet(Path(summary["artifacts"]["score"]) / "predictions.parquet")
    assert predictions["id"].tolist() == batch["ID"].tolist()
    expected, _ = load_bundle(trained.version_dir).predict(batch)
    np.testing.assert_allclose(predictions["probability"], expected, rtol=1e-9, atol=1e-12)
    log = trained.workdir / "prediction_log"
    assert log.is_dir() and owners(log) == {(user.uid, user.gid)}


def test_a_failing_task_in_a_container_names_the_task_and_the_bad_column(
    images: BuiltImages, user: User, tmp_path: Path
) -> None:
    workdir = user.make_dir(tmp_path / "work")
    tmp_path.chmod(0o755)
    bad = tmp_path / "no_target.csv"
    bad.write_text("a,b\n1,2\n3,4\n")
    result = user.run("run", *fast_args(workdir, bad, "--image", images.tag("pipeline")))
    assert result.returncode == 1
    assert "task 'ingest' failed: DataValidationError" in result.stderr
    assert "target column 'Response' not found" in result.stderr
    assert not (workdir / "registry" / MODEL_NAME / "versions").exists() or not any(
        (workdir / "registry" / MODEL_NAME / "versions").iterdir()
    )


def test_a_missing_image_is_refused_before_any_task(user: User, tmp_path: Path, engine: Any) -> None:
    workdir = user.make_dir(tmp_path / "work")
    tmp_path.chmod(0o755)
    result = user.run("run", "--workdir", str(workdir), "--runner", "docker", "--image", "propensity-nope:0")
    assert result.returncode == 2
    assert "image 'propensity-nope:0' is not built here: run `make images` first" in result.stderr
    assert not (workdir / "runs").exists()


def test_a_run_over_its_time_limit_removes_its_task_containers(
    trained: TrainedInContainers, user: User, images: BuiltImages, tmp_path: Path, engine: Any
) -> None:
    workdir = user.make_dir(tmp_path / "work")
    tmp_path.chmod(0o755)
    args = fast_args(workdir, trained.data_file, "--image", images.tag("pipeline"), "--timeout", "12")
    result = user.run("run", *args)
    assert result.returncode == 1
    assert "did not finish within its time limit of 12 s; still running:" in result.stderr
    assert "removed" in result.stdout and "task container(s) of the stopped run" in result.stdout
    left = engine.containers.list(all=True, filters={"label": RUN_LABEL})
    assert [c.name for c in left if c.labels.get(RUN_LABEL, "").startswith("run-")] == []
    assert os.listdir(workdir / "runs")  # the stopped run's folder stays, for its log


def test_a_task_container_that_fails_fast_reports_its_exit_status(images: BuiltImages, engine: Any) -> None:
    """kfp 2.17's handler could take a fast failure for a success (auto_remove race); ours reads the
    status before removing the container, every time."""
    from pipelines.containers import run_task_container

    label = {RUN_LABEL: "exit-status-check"}
    statuses = [
        run_task_container(engine, images.tag("pipeline"), ["sh", "-c", f"exit {code}"], {}, labels=label)
        for code in (3, 0, 1, 3, 1)
    ]
    assert statuses == [3, 0, 1, 3, 1]
    assert engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}=exit-status-check"}) == []
