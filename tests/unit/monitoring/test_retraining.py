"""The retraining decision: only something new retrains; the table, the held-out rows, the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from components.data.synthetic import generate_marketing
from components.data.validation import validate
from components.model.bundle import data_fingerprint
from components.monitoring import retraining as R
from components.shared.config import Config
from tests.unit.batch.conftest import BuiltRegistry, make_registry

DRIFTED = {"drifted": True, "reason": "12 of 25 columns drifted"}
CALM = {"drifted": False, "reason": "1 of 25 columns drifted"}


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> BuiltRegistry:
    return make_registry(tmp_path_factory.mktemp("retraining"), rows=600, seed=1)


def new_rows(rows: int = 200, seed: int = 9) -> pd.DataFrame:
    return validate(generate_marketing(rows=rows, seed=seed, drift=1.0), Config().dataset, "new").frame


def plan(reg: BuiltRegistry, labelled: pd.DataFrame | None, config: Config | None = None, **kw: object):
    return R.plan_retraining(
        kw.pop("drift", DRIFTED),  # type: ignore[arg-type]
        reg.train,
        labelled,
        config or Config(),
        reg.bundle,
        "v0001",
        "test",
        **kw,  # type: ignore[arg-type]
    )


def test_drift_without_labels_trains_nothing_and_says_why(reg: BuiltRegistry) -> None:
    decided, data = plan(reg, None)
    assert data is None and decided.retrain is False
    assert decided.reason.startswith("drift detected, retraining needs labels: 0 labelled rows < minimum 100")
    assert decided.alert == decided.reason


def test_rows_already_in_the_champions_data_are_not_new(reg: BuiltRegistry) -> None:
    """Re-scoring the training table itself: 600 labelled rows, none new."""
    decided, data = plan(reg, reg.train.copy())
    assert data is None and decided.labelled_rows == len(reg.train) and decided.new_rows == 0
    assert "0 labelled rows < minimum 100" in decided.reason


def test_no_drift_no_retrain_whatever_the_labels(reg: BuiltRegistry) -> None:
    decided, data = plan(reg, new_rows(), drift=CALM)
    assert data is None and decided.retrain is False and decided.alert is None
    assert decided.reason.startswith("no drift")


def test_new_rows_of_one_outcome_cannot_show_anything(reg: BuiltRegistry) -> None:
    only_zeros = new_rows().assign(Response=0)
    decided, data = plan(reg, only_zeros)
    assert data is None and "needs both outcomes" in decided.reason and decided.alert


def test_enough_new_rows_retrain_with_a_stratified_held_out_part(reg: BuiltRegistry) -> None:
    new = new_rows(200)
    new.loc[0, "ID"] = reg.train["ID"].iloc[0]  # a customer seen again: the newer row replaces the old
    decided, data = plan(reg, new)
    assert decided.retrain is True and data is not None
    assert decided.new_rows == 200 and decided.holdout_rows == len(data.holdout) == 60
    assert data.holdout["Response"].mean() == pytest.approx(new["Response"].mean(), abs=0.02)
    assert not set(data.holdout["ID"]) & set(data.table["ID"])  # held out: never trained on
    assert data.table["ID"].is_unique
    seen_again = int(reg.train["ID"].isin(set(new["ID"])).sum())  # random synthetic ids collide too
    assert seen_again >= 1
    assert len(data.table) == len(reg.train) - seen_again + 140 == decided.training_rows
    assert decided.reference_rows_used == len(reg.train) - seen_again and decided.train_new_rows == 140
    assert data.config.dataset.drop_columns == [] and data.config.dataset.positive_label == "1"
    checked = validate(data.table, data.config.dataset, "retrain.parquet")  # the training ingest accepts it
    assert len(checked.frame) == len(data.table)
    assert data.table.dtypes.equals(reg.train.dtypes)
    assert decided.provenance("h.parquet")["new_rows_held_out"] == 60


def test_identical_training_data_config_and_code_is_nothing_to_retrain(reg: BuiltRegistry) -> None:
    """min_new_labels 0 lets an unlabelled drift through; the table would be the champion's own."""
    config = Config().with_overrides(["monitoring.min_new_labels=0"])
    fingerprint = R.ingested_fingerprint(reg.train, R.retraining_config(config, list(reg.train.columns)))
    assert fingerprint == data_fingerprint(reg.train)  # ingest gives the champion's dataset fingerprint
    decided, data = plan(reg, None, config)
    assert data is None and decided.retrain is False
    assert "nothing to retrain: the training data would be identical to champion v0001's" in decided.reason
    assert decided.alert == decided.reason

    # other code (or another config) may learn something else from the same data
    other_code, _ = R.plan_retraining(DRIFTED, reg.train, None, config, reg.bundle, "v0001", "other-code")
    assert other_code.retrain is True


def test_windows_recent_rows_and_recent_days(reg: BuiltRegistry) -> None:
    now = datetime(2030, 1, 10, tzinfo=UTC)
    new = new_rows(200).assign(**{R.OBSERVED_AT: [now - timedelta(days=d % 20) for d in range(200)]})
    recent = Config().with_overrides(
        ["monitoring.retrain_window=recent_rows", "monitoring.retrain_recent_rows=300"]
    )
    decided, data = plan(reg, new, recent, now=now)
    assert data is not None and len(data.table) == 300 and decided.train_new_rows == 140
    assert decided.window == "recent_rows" and R.OBSERVED_AT not in data.table.columns

    days = Config().with_overrides(
        ["monitoring.retrain_window=recent_days", "monitoring.retrain_recent_days=10"]
    )
    decided, data = plan(reg, new, days, now=now)
    trained_on = data.table  # type: ignore[union-attr]
    # the champion was built years before 2030: its reference is outside the window; only new rows
    assert decided.reference_rows_used == 0
    assert set(trained_on["ID"]) <= set(new["ID"]) and 0 < len(trained_on) < 140


def test_config_rejects_an_unknown_window() -> None:
    from components.shared.config import ConfigError

    with pytest.raises(ConfigError, match=r"monitoring\.retrain_window must be one of"):
        Config().with_overrides(["monitoring.retrain_window=everything"])
    with pytest.raises(ConfigError, match="new_rows_holdout"):
        Config().with_overrides(["monitoring.new_rows_holdout=1.0"])


def test_columns_the_model_does_not_use_may_be_missing_from_new_rows(reg: BuiltRegistry) -> None:
    """The prediction log keeps only model inputs; a reference column outside them is left empty."""
    from components.shared.errors import DataValidationError

    reference = reg.train.assign(Note="kept for reporting")
    new = new_rows()
    aligned = R.aligned_like(new, reference, list(reg.train.columns))
    assert list(aligned.columns) == list(reference.columns) and aligned["Note"].isna().all()
    with pytest.raises(DataValidationError, match=r"lack column\(s\) \['Income'\]"):
        R.aligned_like(new.drop(columns=["Income"]), reference, list(reg.train.columns))
