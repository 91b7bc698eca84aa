"""The raw input schema of a validated table: its feature columns, their types and known categories.

Written next to the model, it is the contract serving and batch scoring check their input
against (see CONTRACTS.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from components.shared.config import DatasetSpec

MAX_SCHEMA_CATEGORIES = 50


def feature_columns(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """The columns a model learns from: all but the target, the ids and the dropped ones."""
    excluded = {spec.target, *spec.id_columns, *spec.drop_columns}
    return [str(c) for c in frame.columns if c not in excluded]


def infer_schema(frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    """The raw input schema that serving validates requests against (see CONTRACTS.md)."""
    features = []
    for column in feature_columns(frame, spec):
        values = frame[column]
        kind = _schema_type(values, column in spec.date_columns)
        entry: dict[str, Any] = {"name": column, "type": kind, "nullable": bool(values.isna().any())}
        if kind == "string":
            top = values.dropna().astype(str).value_counts().head(MAX_SCHEMA_CATEGORIES)
            entry["categories"] = [str(c) for c in top.index]
        features.append(entry)
    return {
        "target": spec.target,
        "positive_label": spec.positive_label,
        "id_columns": [c for c in spec.id_columns if c in frame.columns],
        "date_columns": [c for c in spec.date_columns if c in frame.columns],
        "features": features,
    }


def _schema_type(values: pd.Series, is_date: bool) -> str:
    if is_date or ptypes.is_datetime64_any_dtype(values):
        return "date"
    if ptypes.is_bool_dtype(values):
        return "boolean"
    if ptypes.is_integer_dtype(values):
        return "integer"
    if ptypes.is_numeric_dtype(values):
        return "number"
    present = values.dropna()
    if len(present) and present.map(lambda v: isinstance(v, bool | np.bool_)).all():
        return "boolean"  # True/False with gaps is read as object
    return "string"
