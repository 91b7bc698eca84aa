"""Stage 1 of training: read the user's table and check it can be trusted before any model sees it.

Every check raises :class:`DataValidationError` naming the source file and the column or value, so
the CLI and the pipeline logs tell the user what to fix without a stack trace.
"""

from __future__ import annotations

import csv
import math
import re
import tempfile
from collections import Counter
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

from components.shared.config import DatasetSpec
from components.shared.errors import DataValidationError
from components.shared.report import markdown_table

CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Also picked up as parts of a folder (UCI names its files adult.data); .txt is too often a README.
TEXT_PART_SUFFIXES = (".data", ".dat")
PART_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + TEXT_PART_SUFFIXES
PARQUET_MAGIC = b"PAR1"
MISSING_VALUES = tuple(DatasetSpec().missing_values)  # for readers that get no spec (batch scoring)
MISSING_MARKERS_ATTR = "missing_markers"  # frame.attrs key: {column: {marker: cells read as missing}}
SEPARATORS = (",", "\t", ";")
MAX_BAD_DATE_SHARE = 0.05  # more unparseable dates than this means a wrong format, not a few typos
MAX_SCHEMA_CATEGORIES = 50
LEAK_MIN_ROWS_PER_CLASS = 5  # fewer non-null rows of a class cannot show leakage, only chance
LEAK_MAX_CATEGORIES = 50  # a near-unique text column maps "purely" to anything: not leakage
_SAMPLE_BYTES = 64 * 1024
_SAMPLE_LINES = 20
_CONTROL_BYTES = bytes(sorted(set(range(32)) - {9, 10, 12, 13}))  # not tab, newline, form feed, CR
_BOOL_TEXTS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}
_BINARY_HINT = " (an Excel, zip, gzip or UTF-16 file?); save it as UTF-8 CSV or Parquet"


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
    """Read a delimited text/Parquet file, a folder of part files or a ``gs://`` object or prefix.

    Returns the frame and the names of the files it came from (gs:// URIs for GCS input).
    ``spec`` gives column names for header-less files and the texts read as missing (None: the
    defaults of ``DatasetSpec``); how many cells each marker emptied is in
    ``frame.attrs[MISSING_MARKERS_ATTR]`` for the data report.
    ``client`` is an optional ``google.cloud.storage.Client`` (injected by tests).
    """
    spec = spec or DatasetSpec()
    if uri.startswith("gs://"):
        return _read_gcs(uri, spec, client)
    path = Path(uri).expanduser()
    if not path.exists():
        raise DataValidationError(f"input {uri} does not exist")
    if path.is_dir():
        return _read_folder(path, spec)
    return _read_file(path, spec), [str(path)]


def _read_folder(folder: Path, spec: DatasetSpec) -> tuple[pd.DataFrame, list[str]]:
    """Concatenate part files in natural name order (p2 before p10); their columns must agree."""
    parts = sorted(
        (p for p in folder.iterdir() if p.is_file() and _is_data_file(p)),
        key=lambda p: _natural_key(p.name),
    )
    if not parts:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise DataValidationError(
            f"folder {folder} holds no data files ({', '.join(PART_SUFFIXES)}); found: {found or 'nothing'}"
        )
    frames = [_read_file(p, spec) for p in parts]
    first_columns = list(frames[0].columns)
    for part, frame in zip(parts[1:], frames[1:], strict=True):
        _check_same_columns(parts[0], first_columns, part, list(frame.columns))
    if len(frames) == 1:
        return frames[0], [str(parts[0])]
    merged = pd.concat([f[first_columns] for f in frames], ignore_index=True)
    merged.attrs[MISSING_MARKERS_ATTR] = _sum_markers(frames)  # concat drops attrs that differ
    return merged, [str(p) for p in parts]


def _sum_markers(frames: Sequence[pd.DataFrame]) -> dict[str, dict[str, int]]:
    """The report counts markers over the whole table, whichever part held them."""
    total: dict[str, Counter[str]] = {}
    for frame in frames:
        for column, counts in frame.attrs.get(MISSING_MARKERS_ATTR, {}).items():
            total.setdefault(column, Counter()).update(counts)
    return {column: dict(counts) for column, counts in total.items()}


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
    """Folder parts go by name (a folder also holds READMEs and _SUCCESS); a named file by content."""
    name = path.name.lower()
    return not name.startswith((".", "_")) and name.endswith(PART_SUFFIXES)


def _natural_key(name: str) -> tuple[Any, ...]:
    """Sort key in which digit runs compare as numbers: re.split alternates text and digits."""
    pieces = re.split(r"(\d+)", name.lower())
    return (*[int(t) if i % 2 else t for i, t in enumerate(pieces)], name)


def _read_file(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Parquet by extension or magic bytes; anything else is read if its content is delimited text."""
    if path.stat().st_size == 0:
        raise DataValidationError(f"file {path} is empty (0 bytes)")
    head = _head(path)
    if path.name.lower().endswith(PARQUET_SUFFIXES) or head.startswith(PARQUET_MAGIC):
        frame = _read_parquet(path)
    else:
        frame = _read_csv(path, head, spec)
    if frame.empty:
        raise DataValidationError(f"file {path} has no rows (columns: {list(frame.columns)})")
    return frame


def _head(path: Path) -> bytes:
    """The first bytes only: sniffing a 1 GB file must not read it all into memory."""
    with path.open("rb") as handle:
        return handle.read(_SAMPLE_BYTES)


def _read_parquet(path: Path) -> pd.DataFrame:
    """ParquetFile keeps duplicate column names (pd.read_parquet fails on them) so validate names them."""
    try:
        return pq.ParquetFile(path).read().to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataValidationError(f"file {path} is not a readable Parquet file: {exc}") from exc


def _read_csv(path: Path, head: bytes, spec: DatasetSpec) -> pd.DataFrame:
    """Read delimited text once, as text cells, then count and blank the spec's missing markers.

    ``skipinitialspace`` drops the space after separators (UCI's ``39, State-gov``); reading
    without NA detection lets the report say which marker emptied which cells.
    """
    encoding, sep, lines, widths = _inspect_text(path, head)
    first_row = [cell.strip() for cell in next(csv.reader(lines[:1], delimiter=sep, skipinitialspace=True))]
    names = [name.strip() for name in spec.column_names]
    if names:
        _check_field_count(path, names, widths)
    frame = _parse_delimited(path, sep, encoding, names, has_header=not names or first_row == names)
    frame.columns = _column_names(frame, names or first_row)
    frame.attrs[MISSING_MARKERS_ATTR] = _blank_markers(frame, {"", *spec.missing_values})
    return frame


def _inspect_text(path: Path, head: bytes) -> tuple[str, str, list[str], list[int]]:
    """Encoding, separator, first lines and their field counts; refuses what is not delimited text.

    A .csv/.tsv may be ragged (pandas then names the bad line); other names must split cleanly.
    """
    truncated = path.stat().st_size > len(head)
    encoding = _encoding_of(head, truncated)
    if _looks_binary(head):
        raise DataValidationError(
            f"file {path} {_extension_words(path)}is binary, not delimited text{_BINARY_HINT}"
        )
    lines = _sample_lines(head.decode(encoding, errors="replace"), truncated)
    if not lines:
        raise DataValidationError(f"file {path} is empty (no header)")
    sep, widths = _sniff(lines)
    if not path.name.lower().endswith(CSV_SUFFIXES) and not _consistent(widths):
        raise DataValidationError(_not_delimited_message(path, sep, widths))
    return encoding, sep, lines, widths


def _parse_delimited(path: Path, sep: str, encoding: str, names: list[str], has_header: bool) -> pd.DataFrame:
    """All cells as pandas types them without NA detection; parse errors name the file."""
    try:
        return pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            header=0 if has_header else None,
            names=names or None,
            index_col=False,  # more fields than names must be an error, not an implicit index
            skipinitialspace=True,
            keep_default_na=False,
            na_filter=False,  # markers are counted and blanked afterwards
            low_memory=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"file {path} is empty (no header)") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataValidationError(f"file {path} is not a readable CSV file: {exc}") from exc


def _column_names(frame: pd.DataFrame, header: list[str]) -> list[str]:
    """Names without surrounding spaces; the raw header when pandas renamed duplicates to X.1."""
    if len(header) == frame.shape[1] and len(set(header)) < len(header):
        return header
    return [str(c).strip() for c in frame.columns]


def _check_field_count(path: Path, names: list[str], widths: list[int]) -> None:
    """Checked on the sample: pandas would pad short rows or shift long ones into an index."""
    wrong = [w for w in widths if w != len(names)]
    if wrong:
        raise DataValidationError(
            f"file {path} has {wrong[0]} fields per row but dataset.column_names lists {len(names)} "
            "name(s); give one name per field"
        )


def _blank_markers(frame: pd.DataFrame, markers: set[str]) -> dict[str, dict[str, int]]:
    """Set marker cells to missing in place, re-typing the column; returns the count per marker.

    Only text columns can hold a marker: pandas already typed the others without one.
    """
    counts: dict[str, Counter[str]] = {}
    for i in range(frame.shape[1]):  # by position: duplicate names must survive to validate
        values = frame.iloc[:, i]
        if values.dtype != object:
            continue
        hits = values.isin(markers)
        if not hits.any():
            continue
        found = values[hits].value_counts()
        counts.setdefault(str(frame.columns[i]), Counter()).update({str(k): int(n) for k, n in found.items()})
        frame.isetitem(i, _retype(values.mask(hits)))
    return {column: dict(found) for column, found in counts.items()}


def _retype(values: pd.Series) -> pd.Series:
    """What pandas would have inferred had the markers been missing: numbers, booleans or text."""
    try:
        return pd.to_numeric(values)
    except (ValueError, TypeError):
        pass
    present = values.dropna()
    if len(present) and present.iloc[0] in _BOOL_TEXTS and present.isin(list(_BOOL_TEXTS)).all():
        return values.map(_BOOL_TEXTS)
    return values


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) unless the bytes say otherwise; then Latin-1, which never fails."""
    return _encoding_of(_head(path), path.stat().st_size > _SAMPLE_BYTES)


def _encoding_of(head: bytes, truncated: bool) -> str:
    """UTF-8 unless the bytes fail to decode before the (possibly cut) end of the sample."""
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not truncated or exc.start < len(head) - 4:  # not just a character cut at the sample's end
            return "latin-1"
    return "utf-8-sig"


def _looks_binary(head: bytes) -> bool:
    """NUL bytes or more than 1% control characters: no delimited text file looks like that."""
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return b"\x00" in head or control * 100 > len(head)


def sniff_separator(sample: str) -> str:
    """Pick the separator that splits the first lines into the most, consistent, fields.

    csv.Sniffer guesses wrong on short or quoted samples; counting fields per candidate is enough
    for the three separators we accept.
    """
    return _sniff(_sample_lines(sample, len(sample) >= _SAMPLE_BYTES))[0]


def _sample_lines(sample: str, truncated: bool) -> list[str]:
    """The first non-blank lines; a truncated sample's last line may be cut, so it is left out."""
    lines = sample.splitlines()
    if truncated and len(lines) > 1:
        lines = lines[:-1]
    return [line for line in lines if line.strip()][:_SAMPLE_LINES]


def _sniff(lines: list[str]) -> tuple[str, list[int]]:
    """The best separator and the field count of each line with it (ties: the first of SEPARATORS)."""
    widths = {
        sep: [len(row) for row in csv.reader(lines, delimiter=sep, skipinitialspace=True)]
        for sep in SEPARATORS
    }
    best = max(SEPARATORS, key=lambda sep: (_consistent(widths[sep]), widths[sep][0] if widths[sep] else 0))
    return best, widths[best]


def _consistent(widths: list[int]) -> bool:
    return bool(widths) and len(set(widths)) == 1 and widths[0] > 1


def _extension_words(path: Path) -> str:
    """'' for .csv/.tsv; otherwise what is unusual about the name, to start an error message."""
    if path.name.lower().endswith(CSV_SUFFIXES):
        return ""
    return f"has an unsupported extension {path.suffix!r} and " if path.suffix else "has no extension and "


def _not_delimited_message(path: Path, sep: str, widths: list[int]) -> str:
    split = (
        "its lines hold a single field each"
        if set(widths) == {1}
        else f"its first {len(widths)} lines split into {sorted(set(widths))} fields on {sep!r}"
    )
    return (
        f"file {path} {_extension_words(path)}does not read as delimited text: {split}; "
        f"use {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or any text file whose rows have the same "
        "number of ',', tab or ';' separated fields"
    )


def _read_gcs(uri: str, spec: DatasetSpec, client: Any) -> tuple[pd.DataFrame, list[str]]:
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
            frame, files = read_table(local, spec)
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
    report = _report(frame, spec, source, dropped, null_target_rows, date_notes, markers)
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
    markers: dict[str, dict[str, int]],
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
            "## Read as missing",
            _marker_lines([str(c) for c in frame.columns], markers),
            "## Notes",
            "\n".join(f"- {note}" for note in notes) if notes else "_(none)_",
            "",
        ]
    )


def _marker_lines(columns: list[str], markers: dict[str, dict[str, int]]) -> str:
    """Which texts became missing where, so a '?' or 'NULL' turned into NaN is never a surprise."""
    lines = []
    for column in (c for c in columns if markers.get(c)):
        counts = sorted(markers[column].items(), key=lambda item: (-item[1], item[0]))
        cells = [_cells(marker, n) for marker, n in counts]
        lines.append(f"- `{column}`: {', '.join(cells)} read as missing")
    return "\n".join(lines) + "\n" if lines else "_(none)_\n"


def _cells(marker: str, n: int) -> str:
    plural = "s" if n != 1 else ""
    return f"{n:,} empty cell{plural}" if marker == "" else f"{n:,} cell{plural} `{marker}`"


def _duplicate_id_notes(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    notes = []
    for column in spec.id_columns:
        repeated = int(frame[column].dropna().duplicated().sum())
        if repeated:
            notes.append(f"id column {column}: {repeated} repeated value(s)")
    return notes
