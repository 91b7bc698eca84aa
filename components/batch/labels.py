"""Labels that arrive after scoring: read them, join them by id to the prediction log, validate.

Outcomes usually come days after a customer was scored. A labels input (a CSV/Parquet file, a
folder of parts, or a ``gs://`` object or prefix) carries the dataset's id column(s) and the
target; each label is joined to the latest prediction-log record of its customer, whose logged
inputs are the customer's features as scored. The joined rows are validated like a labelled batch
(the champion's schema decides) and so become training rows of the same form as a labelled
batch's. How many labels joined, and which did not (never scored, or scored before the log's
retention), is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.batch.reading import needed_columns
from components.batch.scoring import labelled_frame
from components.batch.validation import validate_batch
from components.data.reading import read_table
from components.data.validation import label_key
from components.model.bundle import ModelBundle
from components.monitoring.prediction_log import CLASH_PREFIX, RECORD_FIELDS
from components.monitoring.retraining import OBSERVED_AT
from components.shared.errors import DataValidationError

_KEY = "__label_key"
_EXAMPLES = 10


@dataclass
class LabelJoin:
    """The labelled rows a labels input gave, and how the join went."""

    labelled: pd.DataFrame  # validated rows (like a labelled batch's), with OBSERVED_AT
    source: str
    label_rows: int  # rows in the labels input with an outcome
    joined: int  # of them, found in the prediction log
    unmatched_ids: list[str] = field(default_factory=list)
    blank_labels: int = 0  # rows whose outcome is still blank (skipped)

    @property
    def unmatched(self) -> int:
        return len(self.unmatched_ids)

    def report(self) -> dict[str, Any]:
        return {
            "labels": self.source,
            "label rows": self.label_rows,
            "joined to the prediction log": self.joined,
            "not joined (id never scored, or not in the log)": self.unmatched,
            "examples of ids not joined": self.unmatched_ids[:_EXAMPLES],
            "rows with a blank outcome (skipped)": self.blank_labels,
        }


def _schema_names(bundle: ModelBundle) -> tuple[list[str], str, str]:
    schema = bundle.input_schema or {}
    return (
        [c for c in schema.get("id_columns", []) if c],
        schema.get("target") or "",
        str(schema.get("positive_label", "1")),
    )


def id_keys(frame: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """Join keys: the one id (``1``, ``1.0`` and ``"1"`` alike) or several joined with '|'."""
    if len(id_columns) == 1:
        return frame[id_columns[0]].map(label_key)
    return frame[id_columns].astype(str).agg("|".join, axis=1)


def read_labels(uri: str, bundle: ModelBundle) -> tuple[pd.DataFrame, int]:
    """(one row per customer: join key + outcome as given, rows with a blank outcome).

    Errors name the input, the column and the value: a missing id or target column, a blank id,
    an outcome that is not one of the two classes, one customer with two different outcomes.
    """
    id_columns, target, positive = _schema_names(bundle)
    if not id_columns:
        raise DataValidationError(
            "labels can only be joined by id: the champion's dataset has no id column (dataset.id_columns)"
        )
    frame, _ = read_table(uri)
    missing = [c for c in [*id_columns, target] if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"labels {uri} lack column(s) {missing}: they need the id column(s) {id_columns} and the "
            f"target {target!r}; columns found: {[str(c) for c in frame.columns][:20]}"
        )
    for column in id_columns:
        blank = frame[column].isna().to_numpy()
        if blank.any():
            raise DataValidationError(
                f"labels {uri}: id column {column!r} is blank in row {int(blank.argmax())}"
            )
    outcome = frame[target]
    blank = outcome.isna() | (outcome.map(lambda v: str(v).strip()) == "")
    keys = outcome.map(label_key).where(~blank)
    bad = _unexpected_outcomes(keys, label_key(positive))
    if bad:
        row = int(np.flatnonzero((keys == bad[0]).to_numpy())[0])
        raise DataValidationError(
            f"labels {uri}: target column {target!r} has value {outcome.iloc[row]!r} in row {row}; "
            f"expected the classes of the training data (positive label {positive!r})"
        )
    labels = pd.DataFrame({_KEY: id_keys(frame, id_columns), target: outcome, "_outcome": keys})[~blank]
    conflicting = labels.groupby(_KEY)["_outcome"].nunique()
    if (conflicting > 1).any():
        raise DataValidationError(
            f"labels {uri}: id {conflicting[conflicting > 1].index[0]!r} has two different outcomes"
        )
    labels = labels.drop_duplicates(_KEY, keep="last").drop(columns=["_outcome"])
    return labels.reset_index(drop=True), int(blank.sum())


def _unexpected_outcomes(keys: pd.Series, positive: str) -> list[str]:
    """Outcomes outside the two classes: 0/1 targets allow only those; others allow the positive
    label and one other value (the rarer extra values are named)."""
    counts = keys.value_counts()
    if positive in {"0", "1"}:
        return [v for v in counts.index if v not in {"0", "1"}]
    others = [v for v in counts.index if v != positive]  # most frequent first
    return others[1:]


def _logged_inputs(log: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """The raw input columns of logged records (names that clashed with record fields restored)."""
    out = {}
    for column in bundle.input_columns:
        logged = f"{CLASH_PREFIX}{column}" if column in RECORD_FIELDS else column
        if logged in log.columns:
            out[column] = log[logged].to_numpy()
    return pd.DataFrame(out)


def join_labels(uri: str, log_dir: str | Path, bundle: ModelBundle, max_rows: int, seed: int) -> LabelJoin:
    """Labels joined by id to the latest logged prediction of each customer, validated as a batch."""
    id_columns, target, _ = _schema_names(bundle)
    labels, blank = read_labels(uri, bundle)
    from components.monitoring.gcs_log import open_prediction_log  # a directory or a gs:// prefix

    log = open_prediction_log(log_dir).read()
    if log.empty:
        raise DataValidationError(
            f"prediction log {log_dir} has no records: labels ({uri}) join to scored customers only"
        )
    log = log.assign(**{_KEY: log["id"].map(label_key)}).drop_duplicates(_KEY, keep="last")
    matched = labels.merge(log, on=_KEY, how="inner", suffixes=("", "_log"))
    unmatched = labels.loc[~labels[_KEY].isin(set(log[_KEY])), _KEY].tolist()
    if matched.empty:
        return LabelJoin(pd.DataFrame(columns=needed_columns(bundle)), uri, len(labels), 0, unmatched, blank)
    raw = _logged_inputs(matched, bundle)
    ids = matched[_KEY].str.split("|", expand=True) if len(id_columns) > 1 else matched[["id"]]
    for position, column in enumerate(id_columns):
        raw[column] = ids.iloc[:, position].to_numpy()
    raw[target] = matched[target].to_numpy()
    batch = validate_batch(raw, bundle, f"labels {uri} joined to the prediction log")
    rows = labelled_frame(batch, bundle, max_rows=len(raw), seed=seed)
    rows[OBSERVED_AT] = pd.to_datetime(matched["timestamp"].to_numpy(), utc=True)
    if len(rows) > max_rows:
        rows = rows.sample(n=max_rows, random_state=seed).reset_index(drop=True)
    return LabelJoin(rows, uri, len(labels), len(matched), unmatched, blank)
