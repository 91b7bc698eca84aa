"""Reading tables: files and folders, text sniffing and encodings, tables as published (UCI adult)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.data.reading import MISSING_MARKERS_ATTR, read_table
from components.data.validation import validate
from components.shared.config import DatasetSpec
from components.shared.errors import DataValidationError
from tests.unit.data.conftest import bad, make_frame, make_spec


@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_csv_separator_is_sniffed(tmp_path: Path, sep: str) -> None:
    df = make_frame()
    path = tmp_path / "data.csv"
    df.to_csv(path, sep=sep, index=False)
    frame, sources = read_table(str(path))
    assert list(frame.columns) == list(df.columns)
    assert len(frame) == len(df)
    assert frame["Dt_Customer"].iloc[0] == df["Dt_Customer"].iloc[0]
    assert sources == [str(path)]


def test_csv_with_commas_inside_quoted_text_and_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('a;b;c\n"x, y";1;2\n"z, w";3;4\n')
    frame, _ = read_table(str(path))
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["a"].tolist() == ["x, y", "z, w"]


def test_parquet(tmp_path: Path) -> None:
    df = make_frame()
    path = tmp_path / "data.parquet"
    df.to_parquet(path, index=False)
    frame, sources = read_table(str(path))
    pd.testing.assert_frame_equal(frame, df)
    assert sources == [str(path)]


def test_folder_of_parts_in_natural_order(tmp_path: Path) -> None:
    df = make_frame(rows=110)
    for i in range(11):  # p1 .. p11: lexical order would put p10, p11 before p2
        df.iloc[i * 10 : (i + 1) * 10].to_csv(tmp_path / f"p{i + 1}_extrac.csv", sep="\t", index=False)
    (tmp_path / "README.md").write_text("not data")
    frame, sources = read_table(str(tmp_path))
    assert [Path(s).name for s in sources] == [f"p{i}_extrac.csv" for i in range(1, 12)]
    assert frame["ID"].tolist() == df["ID"].tolist()
    assert frame.index.tolist() == list(range(110))


def test_folder_mixing_csv_and_parquet(tmp_path: Path) -> None:
    df = make_frame(rows=20)
    df.iloc[:10].to_csv(tmp_path / "part-1.csv", index=False)
    df.iloc[10:].to_parquet(tmp_path / "part-2.parquet", index=False)
    frame, _ = read_table(str(tmp_path))
    assert frame["ID"].tolist() == df["ID"].tolist()


def test_folder_part_with_other_columns_names_both_files_and_columns(tmp_path: Path) -> None:
    df = make_frame(rows=20)
    df.iloc[:10].to_csv(tmp_path / "p1.csv", index=False)
    df.iloc[10:].rename(columns={"Income": "Salary"}).to_csv(tmp_path / "p2.csv", index=False)
    with pytest.raises(DataValidationError) as info:
        read_table(str(tmp_path))
    message = str(info.value)
    assert "p1.csv" in message and "p2.csv" in message
    assert "Income" in message and "Salary" in message


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"nope\.csv.*does not exist"):
        read_table(str(tmp_path / "nope.csv"))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataValidationError, match=r"empty\.csv is empty"):
        read_table(str(path))


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("a,b,Response\n")
    with pytest.raises(DataValidationError, match=r"header\.csv has no rows"):
        read_table(str(path))


def test_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataValidationError, match=r"no data files.*notes\.txt"):
        read_table(str(tmp_path))


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataValidationError, match=r"data\.xlsx has an unsupported extension '\.xlsx'"):
        read_table(str(path))


def test_unparseable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataValidationError, match=r"broken\.parquet is not a readable Parquet file"):
        read_table(str(path))


def test_unparseable_csv(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n1,2,3,4\n")
    with pytest.raises(DataValidationError, match=r"ragged\.csv is not a readable CSV file"):
        read_table(str(path))


def test_latin1_csv_is_read(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name;Response\nJos\xe9;1\nAna;0\n".encode("latin-1"))
    frame, _ = read_table(str(path))
    assert frame["name"].tolist() == ["José", "Ana"]


# ------------------------------------------------------------------------ tables as published

ADULT_NAMES = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "salary",
]  # fmt: skip


ADULT_FIRST = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
    "2174, 0, 40, United-States, <=50K"
)


def write_adult(path: Path, rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """UCI adult.data as published: no header, ', ' separators, '?' cells, a blank last line.

    Returns what the rows hold (None where '?' was written) to compare the reading against.
    """
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "age": rng.integers(17, 90, rows),
            "workclass": rng.choice(["State-gov", "Private", "Self-emp-not-inc"], rows).astype(object),
            "fnlwgt": rng.integers(10_000, 900_000, rows),
            "education": rng.choice(["Bachelors", "HS-grad", "Masters"], rows),
            "education_num": rng.integers(1, 17, rows),
            "marital_status": rng.choice(["Never-married", "Married-civ-spouse"], rows),
            "occupation": rng.choice(["Adm-clerical", "Exec-managerial", "Sales"], rows).astype(object),
            "relationship": rng.choice(["Not-in-family", "Husband", "Wife"], rows),
            "race": rng.choice(["White", "Black"], rows),
            "sex": rng.choice(["Male", "Female"], rows),
            "capital_gain": rng.integers(0, 5_000, rows),
            "capital_loss": rng.integers(0, 100, rows),
            "hours_per_week": rng.integers(1, 99, rows).astype(object),
            "native_country": rng.choice(["United-States", "Mexico", "India"], rows).astype(object),
            "salary": np.where(np.arange(rows) % 2, ">50K", "<=50K"),
        }
    )
    data.loc[[3, 7, 11], "workclass"] = None
    data.loc[[3, 20], "occupation"] = None
    data.loc[[5], "native_country"] = None
    data.loc[[9], "hours_per_week"] = None  # a number column with a '?' must still be numbers
    lines = [", ".join("?" if v is None else str(v) for v in row) for row in data.itertuples(index=False)]
    path.write_text(ADULT_FIRST + "\n" + "\n".join(lines[1:]) + "\n\n")
    first = dict(zip(ADULT_NAMES, ADULT_FIRST.split(", "), strict=True))
    data.loc[0] = [int(v) if v.isdigit() else v for v in first.values()]
    return data


def adult_spec(**changes: object) -> DatasetSpec:
    base: dict[str, object] = {
        "name": "adult",
        "target": "salary",
        "positive_label": ">50K",
        "id_columns": [],
        "date_columns": [],
        "drop_columns": [],
        "column_names": ADULT_NAMES,
        "min_rows_per_class": 5,
    }
    base.update(changes)
    return DatasetSpec(**base)  # type: ignore[arg-type]


def test_uci_adult_file_as_published_is_read_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "adult.data"
    expected = write_adult(path)
    frame, sources = read_table(str(path), adult_spec())
    assert sources == [str(path)]
    assert list(frame.columns) == ADULT_NAMES
    assert len(frame) == len(expected)  # the blank last line is not a row
    assert frame.loc[0, "workclass"] == "State-gov" and frame.loc[0, "salary"] == "<=50K"
    text = frame.select_dtypes(include="object")
    assert not text.apply(lambda c: c.dropna().str.startswith(" ").any()).any()
    assert frame["workclass"].isna().tolist() == expected["workclass"].isna().tolist()
    assert frame["occupation"].isna().sum() == 2 and pd.isna(frame.loc[9, "hours_per_week"])
    for column in ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"):
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    assert frame["age"].dtype == np.int64 and frame["age"].tolist() == expected["age"].tolist()
    assert frame.attrs[MISSING_MARKERS_ATTR] == {
        "workclass": {"?": 3},
        "occupation": {"?": 2},
        "hours_per_week": {"?": 1},
        "native_country": {"?": 1},
    }

    result = validate(frame, adult_spec(), str(path))
    assert result.frame["salary"].tolist() == [i % 2 for i in range(len(expected))]
    report = result.report_markdown
    assert "## Read as missing" in report
    assert "- `workclass`: 3 cells `?` read as missing" in report
    assert "- `hours_per_week`: 1 cell `?` read as missing" in report
    assert MISSING_MARKERS_ATTR not in result.frame.attrs
    features = {f["name"]: f for f in result.schema["features"]}
    assert features["hours_per_week"]["type"] == "number" and features["age"]["type"] == "integer"
    assert sorted(features["workclass"]["categories"]) == ["Private", "Self-emp-not-inc", "State-gov"]


def test_headerless_file_without_column_names_hints_at_them(tmp_path: Path) -> None:
    path = tmp_path / "adult.data"
    write_adult(path)
    frame, _ = read_table(str(path), adult_spec(column_names=[]))
    assert frame.columns[0] == "39"  # the first row became the header
    message = bad(frame, adult_spec(column_names=[]))
    assert "'salary' not found" in message and "first row looks like data" in message
    assert "dataset.column_names" in message
    assert "first row looks like data" not in bad(make_frame().drop(columns="Response"))


def test_wrong_number_of_column_names_names_file_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "adult.data"
    write_adult(path)
    with pytest.raises(DataValidationError) as info:
        read_table(str(path), adult_spec(column_names=ADULT_NAMES[:-1]))
    message = str(info.value)
    assert "adult.data" in message and "15 fields" in message and "lists 14 name(s)" in message


def test_column_names_given_for_a_file_with_that_header_skip_it(tmp_path: Path) -> None:
    path = tmp_path / "adult.data"
    write_adult(path)
    path.write_text(", ".join(ADULT_NAMES) + "\n" + path.read_text())
    frame, _ = read_table(str(path), adult_spec())
    assert frame.loc[0, "age"] == 39 and frame["age"].dtype == np.int64


def test_folder_of_data_parts_skips_names_and_readme_and_sums_markers(tmp_path: Path) -> None:
    write_adult(tmp_path / "adult-1.data", rows=30, seed=1)
    write_adult(tmp_path / "adult-2.data", rows=30, seed=2)
    (tmp_path / "adult.names").write_text("| This data was extracted from the census bureau database")
    (tmp_path / "README.txt").write_text("notes, not data")
    (tmp_path / "_SUCCESS").write_text("")
    frame, sources = read_table(str(tmp_path), adult_spec())
    assert [Path(s).name for s in sources] == ["adult-1.data", "adult-2.data"]
    assert len(frame) == 60
    assert frame.attrs[MISSING_MARKERS_ATTR]["workclass"] == {"?": 6}
    assert "`workclass`: 6 cells `?`" in validate(frame, adult_spec(), str(tmp_path)).report_markdown


@pytest.mark.parametrize("name", ["table.txt", "table.dat", "table"])
def test_text_file_with_header_and_any_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("id; City ; Response\n1; Paris; Yes\n2; NULL; No\n3; ; No\n")
    frame, _ = read_table(str(path))
    assert list(frame.columns) == ["id", "City", "Response"]
    assert frame["City"].iloc[0] == "Paris" and frame["City"].isna().tolist() == [False, True, True]
    assert frame.attrs[MISSING_MARKERS_ATTR] == {"City": {"NULL": 1, "": 1}}


def test_report_of_several_markers_in_one_column(tmp_path: Path) -> None:
    df = make_frame().astype({"Income": object})
    df.loc[[0, 1], "Income"] = "NA"
    df.loc[2, "Income"] = "?"
    df.loc[3, "Income"] = ""
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    frame, _ = read_table(str(path), make_spec())
    assert frame["Income"].dtype == np.float64 and frame["Income"].isna().sum() == 4
    report = validate(frame, make_spec(), str(path)).report_markdown
    assert "- `Income`: 2 cells `NA`, 1 empty cell, 1 cell `?` read as missing" in report


def test_missing_values_come_from_the_spec_and_blank_is_always_missing(tmp_path: Path) -> None:
    path = tmp_path / "countries.csv"
    path.write_text("country,n,y\nNA,1,0\n?,2,1\n,3,0\nnan,4,1\n")
    frame, _ = read_table(str(path), make_spec(missing_values=["?"]))
    assert frame["country"].iloc[0] == "NA" and frame["country"].iloc[3] == "nan"
    assert frame["country"].isna().tolist() == [False, True, True, False]
    assert frame.attrs[MISSING_MARKERS_ATTR] == {"country": {"?": 1, "": 1}}


def test_booleans_with_missing_cells_stay_booleans(tmp_path: Path) -> None:
    path = tmp_path / "flags.csv"
    path.write_text("Flag,Response\nTrue,1\n?,0\nFalse,1\n")
    frame, _ = read_table(str(path))
    assert frame["Flag"].tolist()[0] is True and frame["Flag"].tolist()[2] is False
    assert pd.isna(frame.loc[1, "Flag"])


def test_parquet_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    df = make_frame()
    path = tmp_path / "export.bin"
    df.to_parquet(path, index=False)
    frame, _ = read_table(str(path))
    pd.testing.assert_frame_equal(frame, df)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("blob.data", bytes(range(256)) * 8),
        ("utf16.txt", "a,b\n1,2\n".encode("utf-16")),
        ("archive", b"\x1f\x8b\x08\x00" + bytes(200)),
        ("excel.csv", b"PK\x03\x04\x14\x00\x06\x00" + bytes(100)),
    ],
)
def test_binary_file_is_refused_naming_it(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataValidationError) as info:
        read_table(str(path))
    message = str(info.value)
    assert str(path) in message and "is binary, not delimited text" in message


def test_text_that_does_not_split_into_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Some notes about the data.\nThey are prose\nwith; an odd, separator\n")
    with pytest.raises(
        DataValidationError, match=r"notes\.txt has an unsupported extension '\.txt' and does not"
    ):
        read_table(str(path))
    path = tmp_path / "LICENSE"
    path.write_text("All rights reserved\n")
    with pytest.raises(DataValidationError, match=r"LICENSE has no extension and .*single field"):
        read_table(str(path))


def test_part_names_sort_by_their_numbers_and_never_compare_text_with_numbers() -> None:
    from components.data.reading import natural_key

    names = ["p10.csv", "p2.csv", "p1.csv2.csv", "p1.csv", "P01.csv"]
    assert sorted(names, key=natural_key) == ["P01.csv", "p1.csv", "p1.csv2.csv", "p2.csv", "p10.csv"]
