"""Validating a batch: extra columns and unknown categories pass, bad batches are named clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch.champion import Champion
from components.batch.validation import validate_batch
from components.data.synthetic import generate_marketing
from components.shared.errors import DataValidationError
from tests.unit.batch.conftest import batch_file, score_file


def test_extra_columns_are_ignored_and_unknown_categories_tolerated(
    champion: Champion, tmp_path: Path
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


def test_numbers_written_as_text_and_blanks_are_accepted(champion: Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=20, seed=1)
    frame = raw.astype({"Income": object})
    frame["Income"] = [f" {v:.0f} " if i % 2 else v for i, v in enumerate(raw["Income"])]
    frame.loc[4, "Income"] = " "
    batch = validate_batch(frame, champion.bundle, "mem")
    assert batch.frame["Income"].dtype == np.float64
    assert np.isnan(batch.frame["Income"][4]) and batch.frame["Income"][1] == round(raw["Income"][1])


# -------------------------------------------------------------------------------- bad batches


def bad_batch(champion: Champion, frame: pd.DataFrame, tmp_path: Path, name: str = "bad.csv") -> str:
    uri = batch_file(tmp_path, frame, name)
    with pytest.raises(DataValidationError) as info:
        score_file(champion, uri, tmp_path / "out")
    message = str(info.value)
    assert "bad." in message  # the file is named
    return message


def test_empty_batch_is_refused(champion: Champion, tmp_path: Path) -> None:
    header_only = generate_marketing(rows=5, seed=1).iloc[:0]
    assert "no rows" in bad_batch(champion, header_only, tmp_path)
    assert "no rows" in bad_batch(champion, header_only, tmp_path, "bad.parquet")


def test_missing_columns_are_listed(champion: Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1).drop(columns=["Income", "ID"])
    message = bad_batch(champion, frame, tmp_path)
    assert "Income" in message and "ID" in message and "lacks column" in message


def test_text_in_a_numeric_column_names_column_value_and_row(champion: Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1).astype({"MntWines": object})
    frame.loc[6, "MntWines"] = "lots"
    frame.loc[9, "MntWines"] = "n/a?"
    message = bad_batch(champion, frame, tmp_path)
    assert "'MntWines'" in message and "'lots'" in message and "row 7" in message
    assert "2 non-numeric" in message


def test_unparseable_dates_are_refused(champion: Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1)
    frame.loc[2:5, "Dt_Customer"] = "someday"
    message = bad_batch(champion, frame, tmp_path)
    assert "Dt_Customer" in message and "'someday'" in message and "row 3" in message


def test_a_target_with_three_values_is_refused(champion: Champion, tmp_path: Path) -> None:
    frame = generate_marketing(rows=20, seed=1).astype({"Response": object})
    frame.loc[0, "Response"] = "maybe"
    assert "not binary" in bad_batch(champion, frame, tmp_path)
