"""Validation: the happy path, the data report, and one bad-input test per check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.data.reading import read_table
from components.data.schema import infer_schema
from components.data.validation import label_key, validate
from tests.unit.data.conftest import SOURCE, bad, make_frame, make_spec


def test_happy_path_maps_target_drops_spec_columns_and_parses_dates() -> None:
    df = make_frame()
    result = validate(df, make_spec(), SOURCE)
    frame = result.frame
    assert "Z_CostContact" not in frame.columns
    assert result.dropped == {"Z_CostContact": "dropped by the dataset spec"}
    assert frame["Response"].dtype == np.int64
    assert frame["Response"].tolist() == df["Response"].tolist()
    assert "ID" in frame.columns
    assert pd.api.types.is_datetime64_any_dtype(frame["Dt_Customer"])
    first = pd.Timestamp(pd.to_datetime(df["Dt_Customer"].iloc[0], format="%d-%m-%Y"))
    assert frame["Dt_Customer"].iloc[0] == first
    assert result.schema == infer_schema(frame, make_spec())


def test_report_lists_rows_columns_balance_and_drops() -> None:
    df = make_frame()
    df["Constant"] = "same"
    report = validate(df, make_spec(), SOURCE).report_markdown
    assert SOURCE in report
    assert "Rows: 80" in report
    for text in (
        "## Class balance",
        "## Columns",
        "| Income |",
        "Z_CostContact",
        "dropped by the dataset spec",
    ):
        assert text in report
    assert "Constant" in report and "constant column" in report


def test_constant_column_is_kept() -> None:
    df = make_frame()
    df["Constant"] = 1
    assert "Constant" in validate(df, make_spec(), SOURCE).frame.columns


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (["Yes", "No"], "Yes"),
        ([1, 0], "1"),
        ([1.0, 0.0], "1"),
        (["1", "0"], "1"),
        ([True, False], "1"),
        ([True, False], "True"),
        ([" Yes ", "No"], "Yes"),
    ],
)
def test_target_mapping(values: list[object], positive: str) -> None:
    df = make_frame()
    df["Response"] = [values[0] if v == 1 else values[1] for v in df["Response"]]
    frame = validate(df, make_spec(positive_label=positive), SOURCE).frame
    assert frame["Response"].tolist() == make_frame()["Response"].tolist()


def test_label_key_normalisation() -> None:
    assert label_key(1) == label_key(1.0) == label_key("1") == label_key(" 1.0 ") == label_key(True) == "1"
    assert label_key(0) == label_key(np.float64(0.0)) == label_key(False) == label_key("false") == "0"
    assert label_key("Yes") != label_key("yes")
    assert label_key(1.5) == "1.5"


def test_duplicate_column_in_csv_header(tmp_path: Path) -> None:
    df = make_frame()
    path = tmp_path / "dup.csv"
    header = ",".join([*df.columns[:-1], "Income"])
    path.write_text(header + "\n" + df.iloc[:, :-1].assign(x=1).to_csv(index=False, header=False))
    frame, _ = read_table(str(path))
    message = bad(frame)
    assert "duplicate column" in message and "Income" in message


def test_duplicate_column_in_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array([1, 2]), pa.array([3, 4])], names=["Income", "Income"]), path)
    frame, _ = read_table(str(path))
    assert "Income" in bad(frame)


def test_missing_target_lists_available_columns() -> None:
    message = bad(make_frame().drop(columns="Response"))
    assert "'Response' not found" in message and "Income" in message


def test_target_with_more_than_two_values_names_them() -> None:
    df = make_frame()
    df.loc[0, "Response"] = 7
    message = bad(df)
    assert "not binary" in message and "'7'" in message and "'Response'" in message


def test_positive_label_not_among_values_names_them() -> None:
    df = make_frame()
    df["Response"] = df["Response"].map({1: "Yes", 0: "No"})
    message = bad(df, make_spec(positive_label="1"))
    assert "positive label '1'" in message and "'No'" in message and "'Yes'" in message


def test_null_targets_are_dropped_and_reported() -> None:
    df = make_frame()
    df["Response"] = df["Response"].astype(object)
    df.loc[[0, 1, 2], "Response"] = [None, np.nan, " "]
    result = validate(df, make_spec(), SOURCE)
    assert len(result.frame) == len(df) - 3
    assert result.frame.index.tolist() == list(range(len(df) - 3))
    assert "3 rows" in result.report_markdown and "missing target Response" in result.report_markdown


def test_too_few_rows_of_a_class() -> None:
    df = make_frame()
    message = bad(df, make_spec(min_rows_per_class=50))
    assert "too few rows" in message and "'Response'" in message and "40" in message


@pytest.mark.parametrize("role", ["id_columns", "date_columns", "drop_columns"])
def test_spec_column_that_does_not_exist(role: str) -> None:
    message = bad(make_frame(), make_spec(**{role: ["Ghost"]}))
    assert role in message and "Ghost" in message


def test_entirely_null_column() -> None:
    df = make_frame()
    df["Empty"] = np.nan
    message = bad(df)
    assert "Empty" in message and "entirely null" in message


def test_numeric_leakage_names_column_and_auc() -> None:
    df = make_frame()
    df["Score"] = df["Response"] * 10 + np.random.default_rng(1).random(len(df))
    message = bad(df)
    assert "'Score'" in message and "ROC-AUC 1.0000" in message


def test_inverted_numeric_leakage_is_caught() -> None:
    df = make_frame()
    df["Score"] = -df["Response"].astype(float)
    assert "'Score'" in bad(df)


def test_string_copy_of_target_is_leakage() -> None:
    df = make_frame()
    df["Answer"] = df["Response"].map({1: "Yes", 0: "No"})
    message = bad(df)
    assert "'Answer'" in message and "reproduces the target" in message


def test_unique_text_and_id_columns_are_not_leakage() -> None:
    df = make_frame()
    df["Name"] = [f"customer {i}" for i in range(len(df))]
    df["ID"] = np.where(df["Response"] == 1, df["ID"] + 10_000, df["ID"])  # ids are not features
    validate(df, make_spec(), SOURCE)


def test_dates_that_do_not_parse() -> None:
    df = make_frame()
    df.loc[:9, "Dt_Customer"] = "someday"
    message = bad(df)
    assert "'Dt_Customer'" in message and "'someday'" in message


def test_few_bad_dates_become_missing_and_are_noted() -> None:
    df = make_frame()
    df.loc[0, "Dt_Customer"] = "31-02-2013"
    result = validate(df, make_spec(), SOURCE)
    assert pd.isna(result.frame.loc[0, "Dt_Customer"])
    assert "Dt_Customer: 1 unparseable" in result.report_markdown


def test_date_format_from_spec_and_iso_dates() -> None:
    df = make_frame()
    parsed = pd.to_datetime(df["Dt_Customer"], format="%d-%m-%Y")
    df["Dt_Customer"] = parsed.dt.strftime("%Y/%m/%d")
    frame = validate(df, make_spec(date_format="%Y/%m/%d"), SOURCE).frame
    assert frame["Dt_Customer"].tolist() == parsed.tolist()
    df["Dt_Customer"] = parsed.dt.strftime("%Y-%m-%d")  # ISO must not be read day-first
    frame = validate(df, make_spec(), SOURCE).frame
    assert frame["Dt_Customer"].tolist() == parsed.tolist()
