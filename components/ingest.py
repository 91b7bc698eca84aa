"""Stage 1 of training: read the user's table and check it can be trusted before any model sees it.

Every check raises :class:`DataValidationError` naming the source file and the column or value, so
the CLI and the pipeline logs tell the user what to fix without a stack trace.
"""

from __future__ import annotations

import csv
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format
from sklearn.metrics import roc_auc_score

from components.config import DatasetSpec
from components.errors import DataValidationError
from components.report import markdown_table

CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
SEPARATORS = (",", "\t", ";")
MAX_BAD_DATE_SHARE = 0.05  # more unparseable dates than this means a wrong format, not a few typos
MAX_SCHEMA_CATEGORIES = 50
LEAK_MIN_ROWS_PER_CLASS = 5  # fewer non-null rows of a class cannot show leakage, only chance
LEAK_MAX_CATEGORIES = 50  # a near-unique text column maps "purely" to anything: not leakage
_SAMPLE_BYTES = 64 * 1024


@dataclass
class Validated:
    """The checked table plus what the data report and the next stages need to know about it."""

    frame: pd.DataFrame
    report_markdown: str
    schema: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- reading


def read_table(
    uri: str, spec: DatasetSpec | None = None, *, client: Any = None
) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV/Parquet file, a folder of part files or a ``gs://`` object or prefix.

    Returns the frame and the names of the files it came from (gs:// URIs for GCS input).
    ``spec`` gives column names for header-less files and the texts read as missing.
    ``client`` is an optional ``google.cloud.storage.Client`` (injected by tests).
    """
    if uri.startswith("gs://"):
        return _read_gcs(uri, client)
    path = Path(uri).expanduser()
    if not path.exists():
        raise DataValidationError(f"input {uri} does not exist")
    if path.is_dir():
        return _read_folder(path)
    return _read_file(path), [str(path)]


def _read_folder(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """Concatenate part files in natural name order (p2 before p10); their columns must agree."""
    parts = sorted(
        (p for p in folder.iterdir() if p.is_file() and _is_data_file(p)),
        key=lambda p: _natural_key(p.name),
    )
    if not parts:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise DataValidationError(
            f"folder {folder} holds no data files (.csv, .tsv, .parquet); found: {found or 'nothing'}"
        )
    frames = [_read_file(p) for p in parts]
    first_columns = list(frames[0].columns)
    for part, frame in zip(parts[1:], frames[1:], strict=True):
        _check_same_columns(parts[0], first_columns, part, list(frame.columns))
    if len(frames) == 1:
        return frames[0], [str(parts[0])]
    merged = pd.concat([f[first_columns] for f in frames], ignore_index=True)
    return merged, [str(p) for p in parts]


def _check_same_columns(first: Path, expected: list[str], part: Path, columns: list[str]) -> None:
    """Parts of one table must have the same columns; order may differ (concat aligns by name)."""
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra or len(columns) != len(expected):
        raise DataValidationError(
            f"part file {part} has different columns from the first part {first}: "
            f"missing {missing}, unexpected {extra}"
        )


def _is_data_file(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith((".", "_")) and name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)


def _natural_key(name: str) -> tuple[Any, ...]:
    """Sort key in which digit runs compare as numbers: re.split alternates text and digits."""
    pieces = re.split(r"(\d+)", name.lower())
    return (*[int(t) if i % 2 else t for i, t in enumerate(pieces)], name)


def _read_file(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        raise DataValidationError(
            f"file {path} has an unsupported extension {path.suffix!r}; "
            f"use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise DataValidationError(f"file {path} is empty (0 bytes)")
    frame = _read_parquet(path) if name.endswith(PARQUET_SUFFIXES) else _read_csv(path)
    if frame.empty:
        raise DataValidationError(f"file {path} has no rows (columns: {list(frame.columns)})")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    """ParquetFile keeps duplicate column names (pd.read_parquet fails on them) so validate names them."""
    try:
        return pq.ParquetFile(path).read().to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataValidationError(f"file {path} is not a readable Parquet file: {exc}") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    """Read with a sniffed separator; keep the raw header so duplicate names survive to validate."""
    encoding = detect_encoding(path)
    sample = path.read_bytes()[:_SAMPLE_BYTES].decode(encoding, errors="replace")
    sep = sniff_separator(sample)
    try:
        frame = pd.read_csv(path, sep=sep, encoding=encoding, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"file {path} is empty (no header)") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataValidationError(f"file {path} is not a readable CSV file: {exc}") from exc
    header = next(csv.reader(sample.splitlines()[:1], delimiter=sep), [])
    if len(header) == frame.shape[1] and len(set(header)) < len(header):
        frame.columns = header  # pandas renamed duplicates to X.1; restore them
    return frame


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) unless the bytes say otherwise; then Latin-1, which never fails."""
    try:
        path.read_bytes()[:_SAMPLE_BYTES].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < _SAMPLE_BYTES - 4:  # not just a character cut at the sample's end
            return "latin-1"
    return "utf-8-sig"


def sniff_separator(sample: str) -> str:
    """Pick the separator that splits the first lines into the most, consistent, fields.

    csv.Sniffer guesses wrong on short or quoted samples; counting fields per candidate is enough
    for the three separators we accept.
    """
    lines = [line for line in sample.splitlines()[:20] if line.strip()]
    if len(sample) >= _SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut by the sample
    best, best_score = ",", (False, 1)
    for sep in SEPARATORS:
        widths = [len(row) for row in csv.reader(lines, delimiter=sep)]
        if not widths:
            continue
        score = (len(set(widths)) == 1 and widths[0] > 1, widths[0])
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_gcs(uri: str, client: Any) -> tuple[pd.DataFrame, list[str]]:
    """Download the object (or every data object directly under the prefix) and read it locally."""
    bucket_name, _, name = uri[len("gs://") :].partition("/")
    if not bucket_name:
        raise DataValidationError(f"input {uri} has no bucket name")
    if client is None:
        from google.cloud import storage  # lazy: importing it is slow and needs no credentials yet

        client = storage.Client()
    blobs = [b for b in client.list_blobs(bucket_name, prefix=name) if not b.name.endswith("/")]
    exact = [b for b in blobs if b.name == name]
    folder = name.rstrip("/") + "/" if name else ""
    chosen = exact or [
        b
        for b in blobs
        if b.name.startswith(folder) and "/" not in b.name[len(folder) :] and _is_data_file(Path(b.name))
    ]
    if not chosen:
        raise DataValidationError(f"input {uri} does not exist (no object or prefix with that name)")
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        for blob in chosen:
            blob.download_to_filename(str(Path(tmp) / Path(blob.name).name))
        local = str(Path(tmp) / Path(name).name) if exact else tmp
        remote = f"gs://{bucket_name}/{name}" if exact else f"gs://{bucket_name}/{folder}".rstrip("/")
        try:
            frame, files = read_table(local)
        except DataValidationError as exc:
            raise DataValidationError(str(exc).replace(local, remote)) from exc
    sources = [f"gs://{bucket_name}/{folder}{Path(f).name}" for f in files] if not exact else [uri]
    return frame, sources


# ------------------------------------------------------------------------------------ validation


def validate(df: pd.DataFrame, spec: DatasetSpec, source: str) -> Validated:
    """Check the table against the dataset spec and map the target to int 0/1.

    Order matters: structural problems (names, missing columns) first, then the target, then the
    features, so the first error is the most fundamental one.
    """
    _check_duplicate_columns(df, source)
    _check_spec_columns(df, spec, source)
    frame = df.drop(columns=spec.drop_columns)
    dropped = {c: "dropped by the dataset spec" for c in spec.drop_columns}
    frame, null_target_rows = _map_target(frame, spec, source)
    _check_class_counts(frame[spec.target], spec, source)
    _check_all_null(frame, source)
    frame, date_notes = _parse_dates(frame, spec, source)
    _check_leakage(frame, spec, source)
    frame = frame.reset_index(drop=True)
    schema = infer_schema(frame, spec)
    report = _report(frame, spec, source, dropped, null_target_rows, date_notes)
    return Validated(frame=frame, report_markdown=report, schema=schema, dropped=dropped)


def _check_duplicate_columns(df: pd.DataFrame, source: str) -> None:
    duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if duplicated:
        raise DataValidationError(f"{source}: duplicate column name(s) {duplicated}; rename them")


def _check_spec_columns(df: pd.DataFrame, spec: DatasetSpec, source: str) -> None:
    """The target and every column the spec names must exist, and roles must not overlap."""
    columns = [str(c) for c in df.columns]
    if spec.target not in columns:
        raise DataValidationError(
            f"{source}: target column {spec.target!r} not found; available columns: {columns}"
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
    for column in _feature_columns(frame, spec):
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


def _feature_columns(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    excluded = {spec.target, *spec.id_columns, *spec.drop_columns}
    return [str(c) for c in frame.columns if c not in excluded]


# ---------------------------------------------------------------------------------------- schema


def infer_schema(frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    """The raw input schema that serving validates requests against (see CONTRACTS.md)."""
    features = []
    for column in _feature_columns(frame, spec):
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


# ---------------------------------------------------------------------------------------- report


def _report(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    source: str,
    dropped: dict[str, str],
    null_target_rows: int,
    date_notes: Sequence[str],
) -> str:
    """Markdown data report: what was read, what the columns look like, what was removed and why."""
    y = frame[spec.target]
    n = len(frame)
    balance = [
        {
            "class": label,
            "meaning": meaning,
            "rows": int((y == label).sum()),
            "share": float((y == label).mean()) if n else 0.0,
        }
        for label, meaning in ((1, f"{spec.target} == {spec.positive_label}"), (0, "other"))
    ]
    roles = {spec.target: "target", **dict.fromkeys(spec.id_columns, "id")}
    roles.update(dict.fromkeys(spec.date_columns, "date"))
    columns = [
        {
            "column": c,
            "dtype": str(frame[c].dtype),
            "role": roles.get(c, "feature"),
            "nulls": int(frame[c].isna().sum()),
            "null %": round(100 * float(frame[c].isna().mean()), 2),
            "distinct": int(frame[c].nunique()),
        }
        for c in frame.columns
    ]
    removed = [{"what": f"column {c}", "reason": r} for c, r in dropped.items()]
    if null_target_rows:
        removed.append({"what": f"{null_target_rows} rows", "reason": f"missing target {spec.target}"})
    constant = [str(c) for c in _feature_columns(frame, spec) if frame[c].nunique(dropna=False) <= 1]
    notes = [f"constant column(s), removed by the feature step: {', '.join(constant)}"] if constant else []
    notes += list(date_notes) + _duplicate_id_notes(frame, spec)
    return "\n".join(
        [
            f"# Data report: {spec.name}",
            "",
            f"- Source: {source}",
            f"- Rows: {n}",
            f"- Columns: {frame.shape[1]}",
            "",
            "## Class balance",
            markdown_table(balance),
            "## Columns",
            markdown_table(columns),
            "## Dropped",
            markdown_table(removed, ["what", "reason"]),
            "## Notes",
            "\n".join(f"- {note}" for note in notes) if notes else "_(none)_",
            "",
        ]
    )


def _duplicate_id_notes(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    notes = []
    for column in spec.id_columns:
        repeated = int(frame[column].dropna().duplicated().sum())
        if repeated:
            notes.append(f"id column {column}: {repeated} repeated value(s)")
    return notes
