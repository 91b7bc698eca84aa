"""Reading a batch: the newest part or all parts, the fast Arrow readers agree with the training reader."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch.champion import Champion
from components.batch.reading import _read_csv_columns, needed_columns, read_batch, resolve_batch_uri
from components.batch.scoring import score_batch
from components.batch.validation import validate_batch
from components.data.synthetic import generate_marketing
from components.shared.errors import DataValidationError
from tests.unit.batch.conftest import batch_file, score_file


def test_parquet_csv_and_tsv_give_identical_predictions(champion: Champion, tmp_path: Path) -> None:
    raw = generate_marketing(rows=200, seed=4)
    results = [
        score_file(champion, batch_file(tmp_path, raw, name), tmp_path / f"out-{name}").predictions
        for name in ("b.parquet", "b.csv", "b.tsv")
    ]
    for other in results[1:]:
        pd.testing.assert_frame_equal(
            results[0].drop(columns=["scored_at"]), other.drop(columns=["scored_at"]), check_exact=True
        )


def test_fast_readers_agree_with_ingest(champion: Champion, tmp_path: Path) -> None:
    """The column-selective Parquet/CSV paths give the same scores as reading.read_table."""
    from components.data.reading import read_table

    raw = generate_marketing(rows=150, seed=5)
    for name in ("f.parquet", "f.csv"):
        uri = batch_file(tmp_path, raw, name)
        fast, _ = read_batch(uri, columns=needed_columns(champion.bundle))
        slow, _ = read_table(uri)
        a = score_batch(champion, validate_batch(fast, champion.bundle, uri))
        b = score_batch(champion, validate_batch(slow, champion.bundle, uri))
        np.testing.assert_allclose(a["calibrated_probability"], b["calibrated_probability"], atol=1e-12)


def test_batch_in_the_published_format_scores_like_a_clean_one(champion: Champion, tmp_path: Path) -> None:
    """'?' for missing and ', ' separators (UCI style): the same markers and spacing as training ingest."""
    raw = generate_marketing(rows=150, seed=5)
    assert raw["Income"].isna().sum() == 2
    clean = score_file(champion, batch_file(tmp_path, raw, "clean.parquet"), tmp_path / "clean").predictions
    marked = tmp_path / "marked.csv"
    marked.write_text(raw.to_csv(index=False, na_rep="?"))
    fast = _read_csv_columns(marked, needed_columns(champion.bundle))
    assert fast is not None and fast["Income"].isna().sum() == 2  # the Arrow path reads '?' as missing
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(raw.to_csv(index=False, na_rep="?").replace(",", ", "))
    assert _read_csv_columns(spaced, None) is None  # Arrow cannot skip the space: ingest reads it
    for path in (marked, spaced):
        scored = score_file(champion, str(path), tmp_path / f"out-{path.stem}").predictions
        np.testing.assert_allclose(
            scored["calibrated_probability"], clean["calibrated_probability"], rtol=0, atol=1e-12
        )
        assert scored["id"].tolist() == raw["ID"].tolist()


def test_folder_scores_newest_part_by_default_or_all(champion: Champion, tmp_path: Path) -> None:
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
        resolve_batch_uri(str(tmp_path / "nope.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no data files"):
        resolve_batch_uri(str(tmp_path / "empty"))
    with pytest.raises(DataValidationError, match="take must be"):
        resolve_batch_uri(str(tmp_path), take="oldest")
