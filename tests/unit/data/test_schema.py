"""The input schema: types, nullability and categories of the feature columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.schema import infer_schema
from components.data.validation import validate
from components.shared.config import DatasetSpec
from tests.unit.data.conftest import SOURCE, make_frame, make_spec


def test_infer_schema_types_nullability_and_categories() -> None:
    df = make_frame()
    df["Flag"] = np.random.default_rng(3).random(len(df)) > 0.5
    df.loc[3, "Income"] = np.nan
    df.loc[5, "Education"] = None
    result = validate(df, make_spec(), SOURCE)
    schema = result.schema
    assert schema["target"] == "Response" and schema["positive_label"] == "1"
    assert schema["id_columns"] == ["ID"] and schema["date_columns"] == ["Dt_Customer"]
    features = {f["name"]: f for f in schema["features"]}
    assert list(features) == ["Income", "Kidhome", "Education", "Dt_Customer", "Flag"]
    assert features["Income"] == {"name": "Income", "type": "number", "nullable": True}
    assert features["Kidhome"] == {"name": "Kidhome", "type": "integer", "nullable": False}
    assert features["Dt_Customer"]["type"] == "date"
    assert features["Flag"]["type"] == "boolean"
    education = features["Education"]
    assert education["type"] == "string" and education["nullable"] is True
    assert sorted(education["categories"]) == ["Graduation", "Master", "PhD"]


def test_schema_categories_capped_at_50_most_frequent() -> None:
    frame = pd.DataFrame({"c": [f"v{i}" for i in range(60)] + ["v59"] * 5, "y": 0})
    schema = infer_schema(frame, DatasetSpec(target="y", id_columns=[], date_columns=[], drop_columns=[]))
    categories = schema["features"][0]["categories"]
    assert len(categories) == 50 and categories[0] == "v59"
