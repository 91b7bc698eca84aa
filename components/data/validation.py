"""Stage 1 of training: check the user's table can be trusted before any model sees it.

Every check raises :class:`DataValidationError` naming the source file and the column or value, so
the CLI and the pipeline logs tell the user what to fix without a stack trace. The checks run in
order (names and columns, then the target, then the features); what passes becomes a
:class:`Validated` with its schema (``schema``) and data report (``report``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format
from sklearn.metrics import roc_auc_score

from components.data.reading import MISSING_MARKERS_ATTR
from components.data.report import data_report
from components.data.schema import feature_columns, infer_schema
from components.shared.config import DatasetSpec
from components.shared.errors import DataValidationError

MAX_BAD_DATE_SHARE = 0.05  # more unparseable dates than this means a wrong format, not a few typos
LEAK_MIN_ROWS_PER_CLASS = 5  # fewer non-null rows of a class cannot show leakage, only chance
LEAK_MAX_CATEGORIES = 50  # a near-unique text column maps "purely" to anything: not leakage


@dataclass
class Validated:
    """The checked table plus what the data report and the next stages need to know about it."""

    frame: pd.DataFrame
    report_markdown: str
    schema: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)


def validate(df: pd.DataFrame, spec: DatasetSpec, source: str) -> Validated:
    """Check the table against the dataset spec and map the target to int 0/1.

    Order matters: structural problems (names, missing columns) first, then the target, then the
    features, so the first error is the most fundamental one.
    """
    markers = df.attrs.get(MISSING_MARKERS_ATTR, {})
    _check_duplicate_columns(df, spec, source)
    _check_spec_columns(df, spec, source)
    frame = df.drop(columns=spec.drop_columns)
    frame.attrs.pop(MISSING_MARKERS_ATTR, None)  # told in the report; later stages need not carry it
    dropped = {c: "dropped by the dataset spec" for c in spec.drop_columns}
    frame, null_target_rows = _map_target(frame, spec, source)
    _check_class_counts(frame[spec.target], spec, source)
    _check_all_null(frame, source)
    frame, date_notes = _parse_dates(frame, spec, source)
    _check_leakage(frame, spec, source)
    frame = frame.reset_index(drop=True)
    schema = infer_schema(frame, spec)
    report = data_report(frame, spec, source, dropped, null_target_rows, date_notes, markers)
    return Validated(frame=frame, report_markdown=report, schema=schema, dropped=dropped)


def _check_duplicate_columns(df: pd.DataFrame, spec: DatasetSpec, source: str) -> None:
    duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if duplicated:
        hint = _headerless_hint([str(c) for c in df.columns], spec)
        raise DataValidationError(f"{source}: duplicate column name(s) {duplicated}; rename them{hint}")


def _check_spec_columns(df: pd.DataFrame, spec: DatasetSpec, source: str) -> None:
    """The target and every column the spec names must exist, and roles must not overlap."""
    columns = [str(c) for c in df.columns]
    if spec.target not in columns:
        raise DataValidationError(
            f"{source}: target column {spec.target!r} not found; available columns: {columns}"
            + _headerless_hint(columns, spec)
        )
    for role, names in (
        ("id_columns", spec.id_columns),
        ("date_columns", spec.date_columns),
        ("drop_columns", spec.drop_columns),
    ):
        missing = [c for c in names if c not in columns]
        if missing:
            raise DataValidationError(
                f"{source}: dataset.{role} names column(s) {missing} that do not exist; "
                f"available columns: {columns}"
            )
        if spec.target in names:
            raise DataValidationError(f"{source}: target column {spec.target!r} is also in dataset.{role}")


def _headerless_hint(columns: list[str], spec: DatasetSpec) -> str:
    """A header of numbers, or holding the positive label, is a data row: say how to name columns."""
    if spec.column_names or not columns:
        return ""
    numbers = sum(_is_number(c) for c in columns)
    if numbers * 3 < len(columns) and label_key(spec.positive_label) not in {label_key(c) for c in columns}:
        return ""
    return (
        "; the first row looks like data, not a header: if the file has no header row, "
        "name its columns with dataset.column_names"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def label_key(value: Any) -> str:
    """Normalise a label so '1', 1, 1.0, True and 'true' compare equal (and '0', 0, 0.0, False).

    Floats that are integers print as ints; booleans and 'true'/'false' (any case) become '1'/'0';
    any other text compares exactly after stripping whitespace ('Yes' != 'yes').
    """
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if math.isfinite(value) and float(value).is_integer() else str(value)
    text = str(value).strip()
    if text.lower() in {"true", "false"}:
        return "1" if text.lower() == "true" else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def _map_target(frame: pd.DataFrame, spec: DatasetSpec, source: str) -> tuple[pd.DataFrame, int]:
    """Drop rows without a target, then map the positive label to 1 and the other value to 0."""
    raw = frame[spec.target]
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    frame = frame.loc[~blank].copy()
    raw = frame[spec.target]
    keys = raw.map(label_key)
    found = {label_key(v): str(v).strip() for v in pd.unique(raw)}
    positive = label_key(spec.positive_label)
    shown = sorted(found.values())[:10]
    if len(found) > 2:
        raise DataValidationError(
            f"{source}: target column {spec.target!r} is not binary: {len(found)} distinct values "
            f"found, e.g. {shown}"
        )
    if positive not in found:
        raise DataValidationError(
            f"{source}: positive label {spec.positive_label!r} not found in target column "
            f"{spec.target!r}; values found: {shown}"
        )
    frame[spec.target] = (keys == positive).astype("int64")
    return frame, int(blank.sum())


def _check_class_counts(y: pd.Series, spec: DatasetSpec, source: str) -> None:
    counts = {label: int((y == label).sum()) for label in (0, 1)}
    if min(counts.values()) < spec.min_rows_per_class:
        raise DataValidationError(
            f"{source}: target column {spec.target!r} has too few rows of a class "
            f"(negative 0: {counts[0]}, positive 1: {counts[1]}); "
            f"dataset.min_rows_per_class is {spec.min_rows_per_class}"
        )


def _check_all_null(frame: pd.DataFrame, source: str) -> None:
    empty = [str(c) for c in frame.columns if frame[c].isna().all()]
    if empty:
        raise DataValidationError(
            f"{source}: column(s) {empty} are entirely null; drop them with dataset.drop_columns"
        )


def _parse_dates(frame: pd.DataFrame, spec: DatasetSpec, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Parse date columns; a few bad values become NaT (noted), many mean a wrong format (error)."""
    notes = []
    for column in spec.date_columns:
        values = frame[column]
        if ptypes.is_datetime64_any_dtype(values):
            continue
        text = values.where(values.isna(), values.astype(str).str.strip())
        text = text.where(text != "")
        parsed = _parse_date_column(text, spec)
        bad = text.notna() & parsed.isna()
        present = int(text.notna().sum())
        if present and bad.sum() / present > MAX_BAD_DATE_SHARE:
            how = f"format {spec.date_format!r}" if spec.date_format else f"dayfirst={spec.dayfirst}"
            raise DataValidationError(
                f"{source}: date column {column!r} has {int(bad.sum())} of {present} values that do "
                f"not parse with {how}, e.g. {text[bad].iloc[0]!r}; set dataset.date_format"
            )
        if bad.any():
            notes.append(f"{column}: {int(bad.sum())} unparseable value(s) set to missing")
        frame[column] = parsed
    return frame, notes


def _parse_date_column(text: pd.Series, spec: DatasetSpec) -> pd.Series:
    """Parse with the spec's format; without one, prefer ISO (dayfirst would swap ISO month/day).

    Otherwise the format is guessed from a sample by majority, so one bad first value does not
    push pandas into slow, inconsistent per-element parsing.
    """
    if spec.date_format:
        return pd.to_datetime(text, format=spec.date_format, errors="coerce")
    iso = pd.to_datetime(text, format="ISO8601", errors="coerce")
    if text.notna().sum() == iso.notna().sum():
        return iso
    sample = text.dropna().drop_duplicates().head(50)
    guesses = sample.map(lambda v: guess_datetime_format(v, dayfirst=spec.dayfirst)).dropna()
    if guesses.empty:
        guessed = pd.to_datetime(text, format="mixed", dayfirst=spec.dayfirst, errors="coerce")
    else:
        guessed = pd.to_datetime(text, format=guesses.mode().iloc[0], errors="coerce")
    return guessed if guessed.notna().sum() > iso.notna().sum() else iso


def _check_leakage(frame: pd.DataFrame, spec: DatasetSpec, source: str) -> None:
    """A single feature that ranks the target almost perfectly is a copy of it, not a signal."""
    y = frame[spec.target].to_numpy()
    for column in feature_columns(frame, spec):
        auc = _leakage_auc(frame[column], y)
        if auc is not None and auc >= spec.leakage_auc:
            raise DataValidationError(
                f"{source}: column {column!r} reproduces the target {spec.target!r} "
                f"(single-feature ROC-AUC {auc:.4f} >= {spec.leakage_auc}): likely leakage; "
                "remove it or add it to dataset.drop_columns"
            )


def _leakage_auc(values: pd.Series, y: np.ndarray) -> float | None:
    """max(AUC, 1-AUC) of the column as a score; categories are scored by their in-sample target rate."""
    if ptypes.is_bool_dtype(values) or not (
        ptypes.is_numeric_dtype(values) or ptypes.is_datetime64_any_dtype(values)
    ):
        codes = values.astype(str).where(values.notna(), "<missing>")
        if codes.nunique() > min(LEAK_MAX_CATEGORIES, max(2, len(codes) // 10)):
            return None
        score = pd.Series(y, index=values.index).groupby(codes).transform("mean").to_numpy(float)
        target = y
    else:
        present = values.notna().to_numpy()
        numbers = values.to_numpy()[present]
        score = numbers.astype("int64" if numbers.dtype.kind == "M" else float)
        target = y[present]
    if min((target == 0).sum(), (target == 1).sum()) < LEAK_MIN_ROWS_PER_CLASS or np.ptp(score) == 0:
        return None
    auc = float(roc_auc_score(target, score))
    return max(auc, 1.0 - auc)
