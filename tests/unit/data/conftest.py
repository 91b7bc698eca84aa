"""Shared by the data tests: a small marketing-like table, its dataset spec, a bad-input check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.data.validation import validate
from components.shared.config import DatasetSpec
from components.shared.errors import DataValidationError

SOURCE = "data/train.csv"


def make_frame(rows: int = 80, seed: int = 0) -> pd.DataFrame:
    """A small marketing-like table whose features are noisy (no leakage)."""
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (rows // 2))
    start = pd.Timestamp("2012-01-01")
    days = rng.integers(0, 700, rows)
    return pd.DataFrame(
        {
            "ID": np.arange(1000, 1000 + rows),
            "Income": rng.normal(50_000, 10_000, rows).round(0) + 5_000 * y,
            "Kidhome": rng.integers(0, 3, rows),
            "Education": rng.choice(["Graduation", "PhD", "Master"], rows),
            "Dt_Customer": [(start + pd.Timedelta(days=int(d))).strftime("%d-%m-%Y") for d in days],
            "Z_CostContact": 3,
            "Response": y,
        }
    )


def make_spec(**changes: object) -> DatasetSpec:
    base = {
        "target": "Response",
        "positive_label": "1",
        "id_columns": ["ID"],
        "date_columns": ["Dt_Customer"],
        "drop_columns": ["Z_CostContact"],
        "min_rows_per_class": 5,
    }
    base.update(changes)
    return DatasetSpec(**base)  # type: ignore[arg-type]


def bad(df: pd.DataFrame, spec: DatasetSpec | None = None) -> str:
    with pytest.raises(DataValidationError) as info:
        validate(df, spec or make_spec(), SOURCE)
    message = str(info.value)
    assert SOURCE in message
    return message
