"""The feature transformer: derived features, encoding rules, JSON coercion and safe persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from components.model.derived import MNT_COLUMNS, add_derived_features
from components.model.features import (
    TRUSTED_TYPES,
    FeatureTransformer,
    fit_transformer,
    load_transformer,
    save_transformer,
)
from components.shared.config import DatasetSpec, FeatureConfig
from components.shared.errors import BundleError, DataValidationError

REPO = Path(__file__).resolve().parents[3]
SPEC = DatasetSpec()  # marketing defaults: target Response, id ID, date Dt_Customer, drop Z_*
CFG = FeatureConfig()  # reference date 2015-01-01, min birth year 1920


def marketing_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small validated-looking marketing frame (target int, dates datetime64, ids present)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "ID": np.arange(n),
            "Year_Birth": rng.integers(1950, 1995, n),
            "Education": rng.choice(["Graduation", "PhD", "Master"], n),
            "Marital_Status": rng.choice(["Married", "Single", "Together"], n),
            "Income": rng.normal(50_000, 15_000, n).round(0),
            "Kidhome": rng.integers(0, 3, n),
            "Teenhome": rng.integers(0, 3, n),
            "Dt_Customer": pd.Timestamp("2012-08-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
            "Recency": rng.integers(0, 100, n),
            **{c: rng.integers(0, 500, n) for c in MNT_COLUMNS},
            **{
                c: rng.integers(0, 10, n)
                for c in ["NumDealsPurchases", "NumWebPurchases", "NumCatalogPurchases", "NumStorePurchases"]
            },
            **{f"AcceptedCmp{i}": (rng.random(n) < 0.2).astype(int) for i in (3, 4, 5, 1, 2)},
            "Complain": (rng.random(n) < 0.1).astype(int),
            "Z_CostContact": 3,
            "Response": (rng.random(n) < 0.3).astype(int),
        }
    )
    frame.loc[0, "Education"] = "Basic"  # 1 of 60 rows: rare
    frame.loc[1, "Marital_Status"] = "YOLO"
    return frame


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return marketing_frame()


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> FeatureTransformer:
    return fit_transformer(train, SPEC, FeatureConfig(rare_category_min_frequency=0.05))


def column(t: FeatureTransformer, X: np.ndarray, name: str) -> np.ndarray:
    return X[:, t.feature_names.index(name)]


def json_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """What serving builds from JSON instances: dates as strings, numbers as JSON numbers."""
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    return pd.DataFrame(records)


# --- add_derived_features ------------------------------------------------------------------------


def three_rows() -> pd.DataFrame:
    frame = marketing_frame(3).drop(columns=["Response"])
    frame["Year_Birth"] = [1970, 1890, 1985]
    frame["Dt_Customer"] = pd.to_datetime(["2014-12-01", "2013-01-01", "2012-01-01"])
    frame[MNT_COLUMNS] = [[10] * 6, [1, 2, 3, 4, 5, 6], [0] * 6]
    frame[["Kidhome", "Teenhome"]] = [[1, 0], [0, 2], [1, 1]]
    frame[["NumWebPurchases", "NumCatalogPurchases", "NumStorePurchases", "NumDealsPurchases"]] = [
        [1, 2, 3, 4],
        [0, 0, 0, 0],
        [5, 0, 1, 0],
    ]
    frame[[f"AcceptedCmp{i}" for i in range(1, 6)]] = [[1, 0, 0, 0, 1], [0] * 5, [1] * 5]
    return frame


def test_derived_features_are_hand_checked_values() -> None:
    raw = three_rows()
    out = add_derived_features(raw, CFG)
    np.testing.assert_array_equal(out["Age"], [45.0, np.nan, 30.0])  # 1890 < 1920: missing
    np.testing.assert_array_equal(out["Total_Spent"], [60.0, 21.0, 0.0])
    np.testing.assert_array_equal(out["Customer_Days"], [31.0, 730.0, 1096.0])  # 2012 is a leap year
    np.testing.assert_array_equal(out["Children"], [1.0, 2.0, 2.0])
    np.testing.assert_array_equal(out["Total_Purchases"], [10.0, 0.0, 6.0])
    np.testing.assert_array_equal(out["Total_Accepted"], [2.0, 0.0, 5.0])
    assert "Year_Birth" not in out and "Dt_Customer" not in out
    assert "Year_Birth" in raw and raw["Year_Birth"].tolist() == [1970, 1890, 1985]  # pure


def test_derived_features_follow_the_reference_date() -> None:
    out = add_derived_features(three_rows(), FeatureConfig(reference_date="2016-01-01"))
    np.testing.assert_array_equal(out["Age"], [46.0, np.nan, 31.0])
    np.testing.assert_array_equal(out["Customer_Days"], [396.0, 1095.0, 1461.0])


def test_derived_features_accept_json_shaped_values() -> None:
    raw = three_rows()
    shaped = raw.astype({"Year_Birth": str, "MntWines": str}).assign(
        Dt_Customer=["01-12-2014", "2013-01-01", None]
    )
    out = add_derived_features(shaped, CFG)
    np.testing.assert_array_equal(out["Age"], [45.0, np.nan, 30.0])
    np.testing.assert_array_equal(out["Total_Spent"], [60.0, 21.0, 0.0])
    np.testing.assert_array_equal(out["Customer_Days"], [31.0, 730.0, np.nan])


def test_derived_features_are_off_when_not_applicable() -> None:
    raw = three_rows()
    assert add_derived_features(raw, FeatureConfig(derived="none")) is raw
    partial = raw.drop(columns=["MntWines"])
    assert add_derived_features(partial, CFG) is partial  # auto: marketing columns incomplete
    with pytest.raises(DataValidationError, match="MntWines"):
        add_derived_features(partial, FeatureConfig(derived="marketing"))


# --- fitting and encoding ------------------------------------------------------------------------


def test_features_exclude_target_id_and_drop_columns(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    for name in ("Response", "ID", "Z_CostContact"):
        assert name not in fitted.input_columns
        assert not any(name in sources for sources in fitted.source_columns.values())
    assert {"Age", "Total_Spent", "Customer_Days", "Children", "Total_Purchases", "Total_Accepted"} <= set(
        fitted.feature_names
    )
    assert "Year_Birth" in fitted.input_columns and "Year_Birth" not in fitted.feature_names
    X = fitted.transform(train)  # extra columns (target, id) are ignored
    assert X.dtype == np.float64 and X.shape == (len(train), len(fitted.feature_names))
    assert np.isfinite(X).all()
    assert len(set(fitted.feature_names)) == len(fitted.feature_names)


def test_source_columns_map_encoded_features_to_raw_columns(fitted: FeatureTransformer) -> None:
    sources = fitted.source_columns
    assert set(sources) == set(fitted.feature_names)
    assert sources["Marital_Status_Single"] == ["Marital_Status"]
    assert sources["Education_infrequent_sklearn"] == ["Education"]
    assert sources["Age"] == ["Year_Birth"]
    assert sources["Customer_Days"] == ["Dt_Customer"]
    assert sources["Total_Spent"] == MNT_COLUMNS
    assert sources["Children"] == ["Kidhome", "Teenhome"]
    assert sources["Income"] == ["Income"]
    raw = {c for cols in sources.values() for c in cols}
    assert raw <= set(fitted.input_columns)


def test_rare_categories_are_grouped(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    assert "Education_Basic" not in fitted.feature_names  # 1/60 < 5%
    assert "Marital_Status_YOLO" not in fitted.feature_names
    X = fitted.transform(train.iloc[:2])
    assert column(fitted, X, "Education_infrequent_sklearn")[0] == 1.0
    assert column(fitted, X, "Marital_Status_infrequent_sklearn")[1] == 1.0


def test_max_categories_caps_the_one_hot_width(train: pd.DataFrame) -> None:
    t = fit_transformer(train, SPEC, FeatureConfig(rare_category_min_frequency=0.0, max_categories=2))
    assert [n for n in t.feature_names if n.startswith("Education_")] == [
        next(n for n in t.feature_names if n.startswith("Education_") and "infrequent" not in n),
        "Education_infrequent_sklearn",
    ]


def test_unknown_category_does_not_fail(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    row = train.iloc[[2]].assign(Education="Doctorate", Marital_Status="Alone")
    X = fitted.transform(row)
    assert column(fitted, X, "Education_infrequent_sklearn")[0] == 1.0
    assert column(fitted, X, "Marital_Status_infrequent_sklearn")[0] == 1.0
    assert np.isfinite(X).all()


def test_unknown_category_without_infrequent_group_is_all_zeros(train: pd.DataFrame) -> None:
    t = fit_transformer(train.iloc[2:], SPEC, FeatureConfig(rare_category_min_frequency=0.0))
    X = t.transform(train.iloc[[2]].assign(Education="Doctorate"))
    assert all(column(t, X, n)[0] == 0.0 for n in t.feature_names if n.startswith("Education_"))


def test_constant_and_empty_columns_are_dropped_and_recorded(train: pd.DataFrame) -> None:
    frame = train.assign(Channel="web", Empty=np.nan, AcceptedCmp2=0)
    t = fit_transformer(frame, SPEC, CFG)
    assert t.dropped_columns["Channel"].startswith("constant")
    assert "entirely missing" in t.dropped_columns["Empty"]
    assert "AcceptedCmp2" in t.dropped_columns
    assert not any(n.startswith(("Channel", "Empty")) for n in t.feature_names)
    assert "AcceptedCmp2" not in t.feature_names
    assert "Channel" not in t.input_columns and "Empty" not in t.input_columns
    assert "AcceptedCmp2" in t.input_columns  # still a source of Total_Accepted
    assert t.transform(train.drop(columns=["Z_CostContact"])).shape[0] == len(train)  # not required


def test_nulls_are_imputed(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    row = train.iloc[[3]].astype(object)
    row[["Income", "Education", "Dt_Customer", "MntWines"]] = None
    X = fitted.transform(row)
    assert np.isfinite(X).all()
    scaler = fitted.numeric_pipeline.named_steps["scale"]
    income = fitted.numeric_features.index("Income")
    median = float(np.median(train["Income"]))
    assert column(fitted, X, "Income")[0] == pytest.approx(
        (median - scaler.mean_[income]) / scaler.scale_[income]
    )
    assert sum(column(fitted, X, n)[0] for n in fitted.feature_names if n.startswith("Education_")) == 1.0


def test_impossible_birth_year_becomes_missing_then_imputed(
    fitted: FeatureTransformer, train: pd.DataFrame
) -> None:
    row = train.iloc[[4]]
    impossible = fitted.transform(row.assign(Year_Birth=1890))
    missing = fitted.transform(row.assign(Year_Birth=None))
    assert column(fitted, impossible, "Age")[0] == column(fitted, missing, "Age")[0]
    assert column(fitted, impossible, "Age")[0] != column(fitted, fitted.transform(row), "Age")[0]


def test_numeric_strings_are_coerced(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    rows = train.iloc[:5]
    as_strings = rows.astype({"Income": str, "Kidhome": str, "MntWines": str, "Year_Birth": str})
    np.testing.assert_array_equal(fitted.transform(as_strings), fitted.transform(rows))
    garbage = fitted.transform(rows.iloc[[0]].assign(Income="n/a"))
    missing = fitted.transform(rows.iloc[[0]].assign(Income=None))
    np.testing.assert_array_equal(garbage, missing)


def test_date_strings_in_both_formats_are_coerced(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    rows = train.iloc[:4]
    expected = fitted.transform(rows)
    iso = rows.assign(Dt_Customer=rows["Dt_Customer"].dt.strftime("%Y-%m-%d"))
    day_first = rows.assign(Dt_Customer=rows["Dt_Customer"].dt.strftime("%d-%m-%Y"))
    mixed = rows.assign(Dt_Customer=[*iso["Dt_Customer"][:2], *day_first["Dt_Customer"][2:]])
    for frame in (iso, day_first, mixed, json_rows(rows)):
        np.testing.assert_array_equal(fitted.transform(frame), expected)


def test_configured_date_format_is_used_with_fallback(train: pd.DataFrame) -> None:
    frame = train.assign(Dt_Customer=train["Dt_Customer"].dt.strftime("%d/%m/%Y"))
    t = fit_transformer(frame, DatasetSpec(date_format="%d/%m/%Y"), CFG)
    reference = fit_transformer(train, SPEC, CFG)
    np.testing.assert_allclose(t.transform(frame), reference.transform(train))
    iso = train.assign(Dt_Customer=train["Dt_Customer"].dt.strftime("%Y-%m-%d"))
    np.testing.assert_allclose(t.transform(iso), reference.transform(train))


def test_column_mapping_input_matches_dataframe(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    rows = json_rows(train.iloc[:3])
    as_mapping = {c: rows[c].tolist() for c in rows.columns}
    np.testing.assert_array_equal(fitted.transform(as_mapping), fitted.transform(rows))
    with pytest.raises(DataValidationError, match="different lengths"):
        fitted.transform({**as_mapping, "Income": [1.0]})


def test_zero_rows_give_an_empty_matrix(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    assert fitted.transform(train.iloc[:0]).shape == (0, len(fitted.feature_names))


def test_missing_input_column_is_named(fitted: FeatureTransformer, train: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"Income, Dt_Customer"):
        fitted.transform(train.drop(columns=["Income", "Dt_Customer"]))


def test_generic_frame_without_marketing_columns() -> None:
    rng = np.random.default_rng(1)
    n = 40
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n),
            "paperless": rng.random(n) < 0.5,
            "contract": pd.Categorical(rng.choice(["monthly", "yearly"], n)),
            "signup": pd.Timestamp("2014-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "churn": rng.integers(0, 2, n),
        }
    )
    spec = DatasetSpec(target="churn", id_columns=[], date_columns=[], drop_columns=[])
    t = fit_transformer(frame, spec, CFG)
    assert t.feature_names == [
        "tenure",
        "signup_days",
        "paperless_False",
        "paperless_True",
        "contract_monthly",
        "contract_yearly",
    ]
    assert t.source_columns["signup_days"] == ["signup"]
    row = pd.DataFrame([{"tenure": "5", "paperless": True, "contract": "yearly", "signup": "2014-12-30"}])
    X = t.transform(row)
    assert column(t, X, "paperless_True")[0] == 1.0 and column(t, X, "contract_yearly")[0] == 1.0
    days = t.numeric_pipeline.named_steps["scale"]
    assert column(t, X, "signup_days")[0] == pytest.approx((2.0 - days.mean_[1]) / days.scale_[1])


def test_marketing_mode_requires_its_columns() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "Response": [0, 1, 0]})
    with pytest.raises(DataValidationError, match="Year_Birth"):
        fit_transformer(frame, SPEC, FeatureConfig(derived="marketing"))


# --- persistence ---------------------------------------------------------------------------------

_FRESH_PROCESS = """
import json, sys
import pandas as pd
from components.model.features import load_transformer
t = load_transformer(sys.argv[1])
print(json.dumps(t.transform(pd.DataFrame(json.loads(sys.stdin.read()))).tolist()))
"""


def test_save_load_round_trip_in_a_fresh_process(
    fitted: FeatureTransformer, train: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "transformer.skops"
    save_transformer(fitted, path)
    payload = train.iloc[:5].to_json(orient="records", date_format="iso")
    expected = fitted.transform(pd.DataFrame(json.loads(payload)))
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(path)],
        input=payload,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.array(json.loads(result.stdout)), expected)
    loaded = load_transformer(path)
    assert loaded.feature_names == fitted.feature_names
    assert loaded.source_columns == fitted.source_columns
    assert loaded.input_columns == fitted.input_columns


def test_trusted_types_are_exactly_what_a_transformer_needs(
    fitted: FeatureTransformer, tmp_path: Path
) -> None:
    path = tmp_path / "t.skops"
    save_transformer(fitted, path)
    assert sorted(sio.get_untrusted_types(file=path)) == sorted(TRUSTED_TYPES)


class Smuggled:
    """A type nobody trusted: loading a file that contains it must be refused."""

    def __init__(self) -> None:
        self.payload = "anything"


def test_untrusted_type_is_refused(train: pd.DataFrame, tmp_path: Path) -> None:
    t = fit_transformer(train, SPEC, CFG)
    t.dropped_columns = {"x": Smuggled()}  # type: ignore[dict-item]
    path = tmp_path / "t.skops"
    save_transformer(t, path)
    with pytest.raises(BundleError, match=r"untrusted type.*Smuggled"):
        load_transformer(path)


def test_tampered_file_is_refused(fitted: FeatureTransformer, tmp_path: Path) -> None:
    path = tmp_path / "t.skops"
    save_transformer(fitted, path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__module__"], schema["__class__"] = "subprocess", "Popen"
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(BundleError, match=r"subprocess\.Popen"):
        load_transformer(path)


def test_unreadable_or_missing_file_is_a_bundle_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match=r"bad\.skops"):
        load_transformer(bad)
    with pytest.raises(BundleError, match="does not exist"):
        load_transformer(tmp_path / "absent.skops")


def test_heavy_tailed_money_columns_are_log_scaled_and_flags_are_not() -> None:
    rng = np.random.default_rng(0)
    rows = 500
    frame = pd.DataFrame(
        {
            "spend": rng.lognormal(3, 1.5, rows),  # skewness far above 2
            "age": rng.normal(45, 10, rows),
            "flag": rng.integers(0, 2, rows),
            "y": rng.integers(0, 2, rows),
        }
    )
    spec = DatasetSpec(target="y", id_columns=[], date_columns=[], drop_columns=[])
    t = fit_transformer(frame, spec, FeatureConfig(derived="none"))
    assert t.log_features == ["spend"]
    X = t.transform(frame)
    spend = X[:, t.feature_names.index("spend")]
    expected = np.log1p(frame["spend"].to_numpy())
    np.testing.assert_allclose(spend, (expected - expected.mean()) / expected.std(), atol=1e-9)
    off = fit_transformer(frame, spec, FeatureConfig(derived="none", log_skewed=False))
    assert off.log_features == []
    one = t.transform({"spend": [-5.0], "age": [40.0], "flag": [1]})  # unseen negative: still finite
    assert np.all(np.isfinite(one))


DATE_SHAPES = [
    "2014-03-01",
    "2014-03-01T10:20",
    "2014-03-01 10:20:30",
    "2014-03-01T10:20:30.123456",
    "2014-03-01T23:30:00Z",
    "2014-03-01T00:30:00+01:00",
    "2014-03-01T00:30:00+0100",
    "2014-03-01T20:00:00-05:30",
    "03-04-2013",
    "3/4/2013",
    "03.04.2013",
    "31-12-1999",
    "2014-02-30",  # not a date: pandas decides (NaT)
    "12-31-1999",  # month 31 when day first: pandas decides
    "01-01-1500",  # outside datetime64[ns]: pandas decides (NaT), never a wrapped-around date
    "9999-12-31",
    "2263-01-01",
    "1677-01-01T00:00:00Z",
]


@pytest.mark.parametrize("dayfirst", [True, False])
def test_the_fast_date_path_reads_every_accepted_shape_as_pandas_does(dayfirst: bool) -> None:
    """The endpoint's small requests skip pandas for dates; the results must be pandas' own."""
    from components.model import coercion as C
    for text in DATE_SHAPES:
        raw = np.array([text], dtype=object)
        expected = pd.to_datetime(raw, format="mixed", dayfirst=dayfirst, errors="coerce", utc=True)
        expected = expected.tz_convert(None).to_numpy()
        got = C.parse_mixed(raw, dayfirst)
        assert got.dtype == expected.dtype, text
        assert got.astype("int64").tolist() == expected.astype("int64").tolist(), text  # NaT included
    assert C.fast_date("2014-03-01T00:30:00+01:00", dayfirst) is not None  # the fast path ran
    mixed = np.array([*DATE_SHAPES[:4], None, float("nan")], dtype=object)  # nulls: NaT both ways
    expected = pd.to_datetime(mixed, format="mixed", dayfirst=dayfirst, errors="coerce", utc=True)
    got = C.parse_mixed(mixed, dayfirst).astype("int64").tolist()
    assert got == expected.tz_convert(None).to_numpy().astype("int64").tolist()


def test_an_out_of_range_year_never_wraps_around_whatever_the_row_count() -> None:
    from components.model import coercion as C
    few = np.array(["01-01-1500", "12-05-2013"], dtype=object)
    many = np.array(["01-01-1500", "12-05-2013"] * (C.FAST_DATE_ROWS // 2 + 1), dtype=object)
    assert np.isnat(C.parse_mixed(few, True)[0]) and np.isnat(C.parse_mixed(many, True)[0])
    assert C.parse_mixed(few, True)[1] == C.parse_mixed(many, True)[1] == np.datetime64("2013-05-12")
