"""Batch scoring: the scores are the bundle's, ids and rows line up, the outputs and the log.

The champion and the helpers come from this package's conftest (a real bundle built in-process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch import scoring as S
from components.batch.champion import Champion
from components.batch.validation import validate_batch
from components.data.synthetic import generate_marketing
from components.monitoring.prediction_log import PredictionLog
from tests.unit.batch.conftest import MODEL, BuiltRegistry, batch_file, score_file


def test_scores_are_the_bundles_and_rows_line_up(champion: Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=300, seed=2)
    run = score_file(champion, batch_file(tmp_path, raw), tmp_path / "out")
    scored = S.read_predictions(tmp_path / "out")

    assert list(scored.columns) == [*S.PREDICTION_COLUMNS, "Response"]
    assert len(scored) == 300
    assert scored["id"].tolist() == raw["ID"].tolist()
    p, served = champion.bundle.predict(raw)
    np.testing.assert_allclose(scored["probability"], p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scored["calibrated_probability"], served, rtol=0, atol=1e-12)
    assert not np.allclose(p, served)  # temperature 1.3 is applied
    assert (scored["label"] == (served >= champion.bundle.threshold)).all()
    assert set(scored["model_version"]) == {"v0001"}
    assert str(scored["scored_at"].dt.tz) == "UTC" and scored["scored_at"].nunique() == 1
    assert scored["Response"].tolist() == raw["Response"].tolist()
    assert run.batch.labelled_rows == 300
    assert set(run.seconds) == {"read", "validate", "score", "write"}


def test_chunked_parallel_scoring_equals_one_pass(champion: Champion) -> None:
    frame = generate_marketing(rows=257, seed=3)
    batch = validate_batch(frame, champion.bundle, "mem")
    one_p, one_c = champion.bundle.predict(batch.frame)
    p, c = S.predict_chunked(champion.bundle, batch.frame, chunk_rows=10, workers=3)
    # chunks change only the floating-point summation order of the model's dot products
    np.testing.assert_allclose(p, one_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c, one_c, rtol=0, atol=1e-12)


def test_csv_on_request(champion: Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=50, seed=7)
    run = score_file(champion, batch_file(tmp_path, raw), tmp_path / "out", csv=True)
    as_csv = pd.read_csv(run.paths["csv"])
    assert as_csv["id"].tolist() == raw["ID"].tolist()
    assert list(as_csv.columns[:6]) == list(S.PREDICTION_COLUMNS)


def test_rows_are_appended_to_the_prediction_log(champion: Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=80, seed=8)
    log_dir = tmp_path / "log"
    run = score_file(champion, batch_file(tmp_path, raw), tmp_path / "out", log_dir=log_dir)
    logged = PredictionLog(log_dir).read()
    assert run.log_path and Path(run.log_path).parent == log_dir
    assert len(logged) == 80
    assert logged["id"].tolist() == raw["ID"].tolist()
    assert set(logged["source"]) == {"batch"} and set(logged["model_version"]) == {"v0001"}
    assert set(logged["model_name"]) == {MODEL}
    assert logged["request_id"].is_unique
    np.testing.assert_allclose(logged["calibrated_probability"], run.predictions["calibrated_probability"])
    assert logged["Income"].equals(raw["Income"].rename("Income"))  # raw inputs kept for drift
    assert "Dt_Customer" in logged.columns


def test_labelled_rows_keep_only_rows_with_a_label(champion: Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=60, seed=9).astype({"Response": object})
    raw.loc[:19, "Response"] = None
    run = score_file(champion, batch_file(tmp_path, raw), tmp_path / "out")
    assert run.batch.labelled_rows == 40
    labelled = S.labelled_rows(run, max_rows=1000, seed=0)
    assert len(labelled) == 40 and set(labelled["Response"]) <= {0, 1}
    assert labelled["ID"].tolist() == raw["ID"][20:].tolist()
    assert pd.api.types.is_datetime64_any_dtype(labelled["Dt_Customer"])
    assert len(S.labelled_rows(run, max_rows=7, seed=0)) == 7
    assert run.predictions["Response"].isna().sum() == 20


def test_score_command_writes_the_file_and_shows_the_top_customers(
    reg: BuiltRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from pipelines.cli.predict import add_commands

    parser = argparse.ArgumentParser(prog="propensity")
    add_commands(parser.add_subparsers(dest="command", required=True))
    raw = generate_marketing(rows=40, seed=11)
    uri = batch_file(tmp_path, raw)
    out = tmp_path / "scored.csv"
    args = parser.parse_args(
        ["score", "--batch", uri, "--out", str(out), "--registry", str(reg.root), "--top", "3"]
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "scored 40 rows" in printed and "v0001" in printed and "rows/s" in printed
    assert printed.count("\n| ") == 4  # header + 3 customers
    assert pd.read_csv(out)["id"].tolist() == raw["ID"].tolist()
