"""Batch scoring: the scores are the bundle's, ids and rows line up, bad batches are named clearly.

A real champion is built in-process (validated marketing data, fitted transformer, logistic
regression, ``build_bundle``, registered in a local registry), so these tests need no pipeline run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch import scoring as S
from components.data.ingest import validate
from components.data.synthetic import generate_marketing
from components.model.bundle import ModelBundle, build_bundle, save_bundle
from components.model.families import make_estimator
from components.model.features import fit_transformer
from components.monitoring.prediction_log import PredictionLog
from components.registry.local import LocalRegistry
from components.shared.config import Config
from components.shared.errors import DataValidationError, RegistryError

MODEL = "marketing-propensity"


@dataclass(frozen=True)
class BuiltRegistry:
    root: Path
    bundle: ModelBundle
    train: pd.DataFrame  # the validated training frame (also the bundle's reference)


def make_registry(root: Path, rows: int = 800, seed: int = 1, threshold: float = 0.4) -> BuiltRegistry:
    """A registry whose champion v0001 is a logreg bundle trained on synthetic marketing data."""
    config = Config()
    validated = validate(generate_marketing(rows=rows, seed=seed), config.dataset, source="train.csv")
    frame = validated.frame
    transformer = fit_transformer(frame, config.dataset, config.features)
    model = make_estimator("logreg", {"C": 1.0}, seed=0)
    model.fit(transformer.transform(frame), frame[config.dataset.target].to_numpy())
    bundle = build_bundle(
        transformer=transformer,
        model=model,
        family="logreg",
        calibration={"threshold": threshold, "temperature": 1.3},
        evaluation={"test": {"roc_auc": 0.9, "f1": 0.7}},
        importance={},
        input_schema=validated.schema,
        train_frame=frame,
        config=config,
        code_version="test",
        reference_frame=frame,
    )
    save_bundle(bundle, root / "bundle")
    registry = LocalRegistry(root / "registry")
    version = registry.register(MODEL, root / "bundle")
    registry.set_alias(MODEL, "champion", version)
    return BuiltRegistry(root / "registry", registry.load(MODEL), frame)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    return make_registry(tmp_path_factory.mktemp("scoring"))


@pytest.fixture(scope="module")
def champion(reg: BuiltRegistry) -> S.Champion:
    return S.load_champion(str(reg.root), MODEL)


def batch_file(tmp_path: Path, frame: pd.DataFrame, name: str = "batch.csv") -> str:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return str(path)


def score_file(champion: S.Champion, uri: str, out: Path, **kwargs: object) -> S.ScoringRun:
    return S.run_batch_scoring(uri, champion, out, **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- scoring


def test_scores_are_the_bundles_and_rows_line_up(champion: S.Champion, tmp_path: Path) -> None:
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


def test_chunked_parallel_scoring_equals_one_pass(champion: S.Champion) -> None:
    frame = generate_marketing(rows=257, seed=3)
    batch = S.validate_batch(frame, champion.bundle, "mem")
    one_p, one_c = champion.bundle.predict(batch.frame)
    p, c = S.predict_chunked(champion.bundle, batch.frame, chunk_rows=10, workers=3)
    # chunks change only the floating-point summation order of the model's dot products
    np.testing.assert_allclose(p, one_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c, one_c, rtol=0, atol=1e-12)


def test_parquet_csv_and_tsv_give_identical_predictions(champion: S.Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=200, seed=4)
    results = [
        score_file(champion, batch_file(tmp_path, raw, name), tmp_path / f"out-{name}").predictions
        for name in ("b.parquet", "b.csv", "b.tsv")
    ]
    for other in results[1:]:
        pd.testing.assert_frame_equal(
            results[0].drop(columns=["scored_at"]), other.drop(columns=["scored_at"]), check_exact=True
        )


def test_fast_readers_agree_with_ingest(champion: S.Champion, tmp_path: Path) -> None:
    """The column-selective Parquet/CSV paths give the same scores as ingest.read_table."""
    from components.data.ingest import read_table

    raw = generate_marketing(rows=150, seed=5)
    for name in ("f.parquet", "f.csv"):
        uri = batch_file(tmp_path, raw, name)
        fast, _ = S.read_batch(uri, columns=S.needed_columns(champion.bundle))
        slow, _ = read_table(uri)
        a = S.score_batch(champion, S.validate_batch(fast, champion.bundle, uri))
        b = S.score_batch(champion, S.validate_batch(slow, champion.bundle, uri))
        np.testing.assert_allclose(a["calibrated_probability"], b["calibrated_probability"], atol=1e-12)


def test_batch_in_the_published_format_scores_like_a_clean_one(champion: S.Champion, tmp_path: Path) -> None:
    """'?' for missing and ', ' separators (UCI style): the same markers and spacing as training ingest."""
    raw = generate_marketing(rows=150, seed=5)
    assert raw["Income"].isna().sum() == 2
    clean = score_file(champion, batch_file(tmp_path, raw, "clean.parquet"), tmp_path / "clean").predictions
    marked = tmp_path / "marked.csv"
    marked.write_text(raw.to_csv(index=False, na_rep="?"))
    fast = S._read_csv_columns(marked, S.needed_columns(champion.bundle))
    assert fast is not None and fast["Income"].isna().sum() == 2  # the Arrow path reads '?' as missing
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(raw.to_csv(index=False, na_rep="?").replace(",", ", "))
    assert S._read_csv_columns(spaced, None) is None  # Arrow cannot skip the space: ingest reads it
    for path in (marked, spaced):
        scored = score_file(champion, str(path), tmp_path / f"out-{path.stem}").predictions
        np.testing.assert_allclose(
            scored["calibrated_probability"], clean["calibrated_probability"], rtol=0, atol=1e-12
        )
        assert scored["id"].tolist() == raw["ID"].tolist()


def test_extra_columns_are_ignored_and_unknown_categories_tolerated(
    champion: S.Champion, tmp_path: Path
) -> None:
    raw = generate_marketing(rows=120, seed=6)
    base = score_file(champion, batch_file(tmp_path, raw, "base.csv"), tmp_path / "base").predictions
    changed = raw.assign(Shoe_Size=42, Note="x")
    changed.loc[3, "Education"] = "Doctorate"
    run = score_file(champion, batch_file(tmp_path, changed, "extra.csv"), tmp_path / "extra")
    assert len(run.predictions) == 120
    assert "Shoe_Size" not in run.predictions.columns
    same = np.arange(120) != 3
    np.testing.assert_array_equal(
        run.predictions["probability"][same], base["probability"][same]
    )  # the other rows do not move
    assert any("Education" in n and "Doctorate" in n for n in run.batch.notes)


def test_csv_on_request(champion: S.Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=50, seed=7)
    run = score_file(champion, batch_file(tmp_path, raw), tmp_path / "out", csv=True)
    as_csv = pd.read_csv(run.paths["csv"])
    assert as_csv["id"].tolist() == raw["ID"].tolist()
    assert list(as_csv.columns[:6]) == list(S.PREDICTION_COLUMNS)


def test_rows_are_appended_to_the_prediction_log(champion: S.Champion, tmp_path: Path) -> None:
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


def test_labelled_rows_keep_only_rows_with_a_label(champion: S.Champion, tmp_path: Path) -> None:
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


# ----------------------------------------------------------------------------------- reading


def test_folder_scores_newest_part_by_default_or_all(champion: S.Champion, tmp_path: Path) -> None:
    folder = tmp_path / "inference"
    folder.mkdir()
    frames = [generate_marketing(rows=30 + i, seed=20 + i) for i in range(3)]
    now = time.time()
    for i, frame in enumerate(frames):
        path = folder / f"p{i + 3}_extrac.csv"
        frame.to_csv(path, sep="\t", index=False)
        os.utime(path, (now - 100 + i, now - 100 + i))
    os.utime(folder / "p3_extrac.csv", (now, now))  # the newest arrival is p3, not the last name
    newest = score_file(champion, str(folder), tmp_path / "newest")
    assert newest.batch.sources == [str(folder / "p3_extrac.csv")]
    assert newest.predictions["id"].tolist() == frames[0]["ID"].tolist()
    everything = score_file(champion, str(folder), tmp_path / "all", take="all")
    assert len(everything.predictions) == sum(len(f) for f in frames)


def test_missing_batch_and_empty_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"nope\.csv does not exist"):
        S.resolve_batch_uri(str(tmp_path / "nope.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no data files"):
        S.resolve_batch_uri(str(tmp_path / "empty"))
    with pytest.raises(DataValidationError, match="take must be"):
        S.resolve_batch_uri(str(tmp_path), take="oldest")


# -------------------------------------------------------------------------------- bad batches


def bad_batch(champion: S.Champion, frame: pd.DataFrame, tmp_path: Path, name: str = "bad.csv") -> str:
    uri = batch_file(tmp_path, frame, name)
    with pytest.raises(DataValidationError) as info:
        score_file(champion, uri, tmp_path / "out")
    message = str(info.value)
    assert "bad." in message  # the file is named
    return message


def test_empty_batch_is_refused(champion: S.Champion, tmp_path: Path) -> None:
    header_only = generate_marketing(rows=5, seed=1).iloc[:0]
    assert "no rows" in bad_batch(champion, header_only, tmp_path)
    assert "no rows" in bad_batch(champion, header_only, tmp_path, "bad.parquet")


def test_missing_columns_are_listed(champion: S.Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1).drop(columns=["Income", "ID"])
    message = bad_batch(champion, frame, tmp_path)
    assert "Income" in message and "ID" in message and "lacks column" in message


def test_text_in_a_numeric_column_names_column_value_and_row(champion: S.Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1).astype({"MntWines": object})
    frame.loc[6, "MntWines"] = "lots"
    frame.loc[9, "MntWines"] = "n/a?"
    message = bad_batch(champion, frame, tmp_path)
    assert "'MntWines'" in message and "'lots'" in message and "row 7" in message
    assert "2 non-numeric" in message


def test_numbers_written_as_text_and_blanks_are_accepted(champion: S.Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=20, seed=1)
    frame = raw.astype({"Income": object})
    frame["Income"] = [f" {v:.0f} " if i % 2 else v for i, v in enumerate(raw["Income"])]
    frame.loc[4, "Income"] = " "
    batch = S.validate_batch(frame, champion.bundle, "mem")
    assert batch.frame["Income"].dtype == np.float64
    assert np.isnan(batch.frame["Income"][4]) and batch.frame["Income"][1] == round(raw["Income"][1])


def test_unparseable_dates_are_refused(champion: S.Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1)
    frame.loc[2:5, "Dt_Customer"] = "someday"
    message = bad_batch(champion, frame, tmp_path)
    assert "Dt_Customer" in message and "'someday'" in message and "row 3" in message


def test_a_target_with_three_values_is_refused(champion: S.Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1).astype({"Response": object})
    frame.loc[0, "Response"] = "maybe"
    assert "not binary" in bad_batch(champion, frame, tmp_path)


# ---------------------------------------------------------------------------------- registry


def test_no_champion_and_no_model_are_clear_errors(reg: BuiltRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"has no model 'marketing-propensity'.*propensity run"):
        S.load_champion(str(tmp_path / "empty-registry"), MODEL)
    registry = LocalRegistry(tmp_path / "no-champion")
    registry.register(MODEL, Path(reg.root).parent / "bundle")
    with pytest.raises(RegistryError, match="has no champion"):
        S.load_champion(str(tmp_path / "no-champion"), MODEL)
    assert S.load_champion(str(tmp_path / "no-champion"), MODEL, "v0001").version == "v0001"


def test_summary_counts_are_ints_again() -> None:
    summary = S.build_prediction_summary(
        scoring={"rows": 10.0, "positive_rate": 0.5, "stage_seconds": 1.0},
        model={},
        business={},
        drift={"drifted": False, "reason": "r", "columns": []},
        artifact_uris={},
        stage_seconds={},
        run_root="/r",
    )
    assert summary["scoring"]["rows"] == 10 and isinstance(summary["scoring"]["rows"], int)
    assert summary["retrain"] == {"triggered": False, "reason": "r", "training_summary": None}


def test_score_command_writes_the_file_and_shows_the_top_customers(
    reg: BuiltRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from pipelines.predict_cli import add_commands

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
