"""The default data must look and behave like the public marketing file, reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.data.synthetic import (
    MARKETING_COLUMNS,
    ensure_default_data,
    generate_marketing,
    write_parts,
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_marketing()


def test_schema_and_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == MARKETING_COLUMNS
    assert len(frame) == 2240
    assert frame["Income"].dtype == np.float64
    for column in ("Education", "Marital_Status", "Dt_Customer"):
        assert frame[column].map(type).eq(str).all(), column
    integer_columns = set(MARKETING_COLUMNS) - {"Education", "Marital_Status", "Dt_Customer", "Income"}
    for column in integer_columns:
        assert frame[column].dtype == np.int64, column
    assert frame["ID"].is_unique


def test_value_ranges(frame: pd.DataFrame) -> None:
    assert set(frame["Education"]) == {"Graduation", "PhD", "Master", "Basic", "2n Cycle"}
    assert frame["Kidhome"].between(0, 2).all() and frame["Teenhome"].between(0, 2).all()
    assert frame["Recency"].between(0, 99).all()
    assert (frame["Z_CostContact"] == 3).all() and (frame["Z_Revenue"] == 11).all()
    binary = [c for c in MARKETING_COLUMNS if c.startswith("AcceptedCmp")] + ["Complain", "Response"]
    assert frame[binary].isin([0, 1]).all().all()
    assert (frame.filter(like="Mnt") >= 0).all().all() and (frame.filter(like="Num") >= 0).all().all()
    dates = pd.to_datetime(frame["Dt_Customer"], format="%d-%m-%Y")  # fails on any other format
    assert dates.min() >= pd.Timestamp("2012-07-30") and dates.max() <= pd.Timestamp("2014-06-29")
    assert dates.dt.year.nunique() == 3


def test_same_seed_same_frame_other_seed_differs() -> None:
    pd.testing.assert_frame_equal(generate_marketing(rows=500, seed=3), generate_marketing(rows=500, seed=3))
    assert not generate_marketing(rows=500, seed=3).equals(generate_marketing(rows=500, seed=4))


def test_positive_rate_near_public_file(frame: pd.DataFrame) -> None:
    assert 0.12 <= frame["Response"].mean() <= 0.18
    assert 0.12 <= generate_marketing(seed=11)["Response"].mean() <= 0.18


def test_the_usual_mess_is_there(frame: pd.DataFrame) -> None:
    missing = frame["Income"].isna().sum()
    assert 10 <= missing <= 40  # about 1%
    impossible = frame["Year_Birth"] < 1920
    assert impossible.sum() == 3
    assert set(frame.loc[impossible, "Year_Birth"]) <= {1893, 1899, 1900}
    counts = frame["Marital_Status"].value_counts()
    assert {"Alone", "Absurd", "YOLO"} <= set(counts.index)
    assert counts[["Alone", "Absurd", "YOLO"]].sum() <= 10
    main = {"Married", "Together", "Single", "Divorced", "Widow"}
    assert set(counts.index) <= main | {"Alone", "Absurd", "YOLO"}


def test_relationships_a_marketer_expects(frame: pd.DataFrame) -> None:
    spend = frame.filter(like="Mnt").sum(axis=1)
    assert frame["Income"].corr(spend) > 0.5
    accepted = frame.filter(like="AcceptedCmp").sum(axis=1)
    rate = frame.groupby(accepted > 0)["Response"].mean()
    assert rate[True] > 2 * rate[False]
    response = frame["Response"]
    assert response[frame["Recency"] < 30].mean() > response[frame["Recency"] > 70].mean()
    assert response[frame["Teenhome"] == 0].mean() > response[frame["Teenhome"] > 0].mean()
    single = frame["Marital_Status"].isin(["Single", "Divorced", "Widow"])
    assert response[single].mean() > response[~single].mean()


def test_no_single_feature_gives_the_answer_away(frame: pd.DataFrame) -> None:
    from sklearn.metrics import roc_auc_score

    numeric = frame.drop(columns=["Response", "Z_CostContact", "Z_Revenue"]).select_dtypes("number")
    for column in numeric:
        auc = roc_auc_score(frame["Response"], numeric[column].fillna(numeric[column].median()))
        assert max(auc, 1 - auc) < 0.9, column


def test_drift_moves_the_population_the_right_way() -> None:
    base = generate_marketing(rows=5000, seed=5)
    shifted = generate_marketing(rows=5000, seed=5, drift=1.0)
    assert 1.35 < shifted["Income"].mean() / base["Income"].mean() < 1.65
    assert 8 < shifted["Year_Birth"].median() - base["Year_Birth"].median() < 12
    spend_ratio = shifted.filter(like="Mnt").sum(axis=1).mean() / base.filter(like="Mnt").sum(axis=1).mean()
    assert 1.4 < spend_ratio < 1.8
    assert shifted["NumCatalogPurchases"].mean() > base["NumCatalogPurchases"].mean()
    assert list(shifted.columns) == MARKETING_COLUMNS


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_drift_out_of_range_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="drift"):
        generate_marketing(rows=10, drift=bad)


def test_scales_to_many_rows_with_unique_ids() -> None:
    big = generate_marketing(rows=100_000, seed=1)
    assert len(big) == 100_000 and big["ID"].is_unique
    assert 0.12 <= big["Response"].mean() <= 0.18


def test_write_parts_round_trip(frame: pd.DataFrame, tmp_path: Path) -> None:
    paths = write_parts(frame, tmp_path / "new" / "folder", parts=4)
    assert [p.name for p in paths] == [f"p{i}_extrac.csv" for i in range(1, 5)]
    assert "\t" in paths[0].read_text().splitlines()[0]
    chunks = [pd.read_csv(p, sep="\t") for p in paths]
    assert all(len(c) == 560 for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), frame)


def test_write_parts_uneven_and_custom_names(tmp_path: Path) -> None:
    small = generate_marketing(rows=10, seed=2)
    paths = write_parts(small, tmp_path, parts=3, prefix="part-", suffix=".tsv.csv")
    assert [p.name for p in paths] == ["part-1.tsv.csv", "part-2.tsv.csv", "part-3.tsv.csv"]
    assert sum(len(pd.read_csv(p, sep="\t")) for p in paths) == 10


def test_ensure_default_data_is_idempotent_and_deterministic(tmp_path: Path) -> None:
    folder = ensure_default_data(tmp_path / "data", rows=200, parts=2)
    files = sorted(folder.glob("*.csv"))
    assert [p.name for p in files] == ["p1_extrac.csv", "p2_extrac.csv"]
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    assert ensure_default_data(folder, rows=200, parts=2) == folder
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.glob("*.csv")} == before
    other = ensure_default_data(tmp_path / "again", rows=200, parts=2)
    assert {p.name: p.read_bytes() for p in other.glob("*.csv")} == {k: v[0] for k, v in before.items()}


def test_ensure_default_data_leaves_existing_data_alone(tmp_path: Path) -> None:
    (tmp_path / "mine.csv").write_text("a,b\n1,2\n")
    ensure_default_data(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.csv"]
