"""Drift: Evidently's share on crafted shifted vs unshifted frames, the score PSI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.data.synthetic import generate_marketing
from components.data.validation import validate
from components.monitoring import drift as D
from components.monitoring.prediction_log import PredictionLog
from components.shared.config import Config
from components.shared.errors import DataValidationError
from tests.unit.batch.conftest import BuiltRegistry, make_registry


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    return make_registry(tmp_path_factory.mktemp("drift"), rows=1500, seed=1)


def report(reg: BuiltRegistry, current: pd.DataFrame, threshold: float = 0.15) -> D.DriftResult:
    bundle = reg.bundle
    _, scores = bundle.predict(current)
    return D.run_drift_report(
        reg.train,
        current,
        bundle,
        threshold,
        scores,
        D.reference_scores(bundle, reg.train),
        "test batch",
        with_html=False,
    )


# ------------------------------------------------------------------------------------ Evidently


def test_same_population_does_not_drift(reg: BuiltRegistry) -> None:
    result = report(reg, generate_marketing(rows=1500, seed=2))
    assert result.column_count == len(D.drift_columns(reg.bundle)) == 25
    assert result.share <= 0.15 and not result.drifted
    assert result.drifted_count == len(result.drifted_columns)  # our per-column rule is Evidently's
    assert result.score_psi < D.PSI_MODERATE
    assert "no retrain" in result.reason


def test_shifted_population_drifts_in_the_shifted_columns(reg: BuiltRegistry) -> None:
    result = report(reg, generate_marketing(rows=1500, seed=2, drift=1.0))
    assert result.share > 0.15 and result.drifted
    assert {"Income", "Year_Birth", "MntWines", "MntMeatProducts"} <= set(result.drifted_columns)
    assert not {"Education", "Marital_Status", "Recency", "Complain"} & set(result.drifted_columns)
    assert result.drifted_count == len(result.drifted_columns)
    assert result.share == pytest.approx(result.drifted_count / result.column_count)
    assert "retrain" in result.reason and "Income" in result.reason


def test_one_crafted_column_shift_is_found_alone(reg: BuiltRegistry) -> None:
    """The reference itself with Income doubled: exactly one of 25 columns drifts."""
    current = reg.train.assign(Income=reg.train["Income"] * 2)
    result = report(reg, current)
    assert result.drifted_columns == ["Income"]
    assert result.share == pytest.approx(1 / 25) and not result.drifted
    assert report(reg, current, threshold=0.01).drifted  # the threshold decides


def test_string_dates_compare_with_parsed_reference_dates(reg: BuiltRegistry) -> None:
    raw = generate_marketing(rows=300, seed=3)
    parsed = validate(raw, Config().dataset, "x").frame  # Dt_Customer as datetime64
    a = D.comparable_frame(raw, reg.bundle)
    b = D.comparable_frame(parsed, reg.bundle)
    pd.testing.assert_frame_equal(a, b)
    assert a["Dt_Customer"].between(15_000, 17_000).all()  # days since 1970, in 2012-2014


def test_missing_current_column_is_named(reg: BuiltRegistry) -> None:
    with pytest.raises(DataValidationError, match="Income"):
        D.comparable_frame(generate_marketing(rows=20, seed=1).drop(columns=["Income"]), reg.bundle)


# ----------------------------------------------------------------------------------------- PSI


def test_psi_hand_checked() -> None:
    reference = np.arange(10, dtype=float)  # deciles: one value per bin
    assert D.psi(reference, reference) == pytest.approx(0.0)
    # all current values in the first bin: (1 - 0.1) ln(1 / 0.1) + 9 * (eps - 0.1) ln(eps / 0.1)
    eps = 1e-6
    expected = 0.9 * math.log(10) + 9 * (eps - 0.1) * math.log(eps / 0.1)
    assert D.psi(reference, np.zeros(5)) == pytest.approx(expected)


def test_psi_levels_and_edge_cases() -> None:
    rng = np.random.default_rng(0)
    reference = rng.beta(2, 5, 5000)
    assert D.psi(reference, rng.beta(2, 5, 5000)) < D.PSI_MODERATE
    assert D.psi_level(D.psi(reference, rng.beta(5, 2, 5000))) == "significant"
    assert math.isnan(D.psi(reference, np.array([])))
    assert D.psi(np.full(10, 0.3), np.full(10, 0.3)) == pytest.approx(0.0)
    assert D.psi_level(float("nan")) == "unknown"


def test_sample_rows_is_bounded_and_seeded() -> None:
    frame = pd.DataFrame({"a": np.arange(1000)})
    first, again = D.sample_rows(frame, 100, seed=3), D.sample_rows(frame, 100, seed=3)
    assert len(first) == 100 and first.equals(again)
    assert len(D.sample_rows(frame, 5000)) == 1000


# ---------------------------------------------------------------------------------- log source


def test_current_from_log_reads_the_recent_records(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log")
    rows = pd.DataFrame(
        {
            "model_version": ["v0001", "v0002"],
            "probability": [0.1, 0.2],
            "label": [0, 0],
            "Income": [1.0, 2.0],
        }
    )
    log.append_frame(rows)
    found = D.current_from_log(tmp_path / "log", hours=1, model_version="v0002")
    assert found["Income"].tolist() == [2.0]
    with pytest.raises(DataValidationError, match="no records"):
        D.current_from_log(tmp_path / "log", hours=1, model_version="v0009")
