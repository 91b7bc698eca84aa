"""Reading a user's table: a text or Parquet file, a folder of part files, a gs:// object or prefix.

Text is read once as text cells (pandas types the columns); the missing-value markers of the
dataset spec ('?', 'NA', blank...) are then counted and blanked, so the data report can say which
marker emptied which cells. Problems raise :class:`DataValidationError` naming the file.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from components.data.formats import (
    PARQUET_MAGIC,
    PARQUET_SUFFIXES,
    PART_SUFFIXES,
    inspect_text,
    is_part_name,
    read_head,
)
from components.shared.config import DatasetSpec
from components.shared.errors import DataValidationError

MISSING_VALUES = tuple(DatasetSpec().missing_values)  # for readers that get no spec (batch scoring)
MISSING_MARKERS_ATTR = "missing_markers"  # frame.attrs key: {column: {marker: cells read as missing}}
_BOOL_TEXTS = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


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
    parts = part_files(folder)
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


def part_files(folder: Path, suffixes: tuple[str, ...] = PART_SUFFIXES) -> list[Path]:
    """The data files directly in ``folder``, in natural name order; none is an error naming what is there."""
    parts = sorted(
        (p for p in folder.iterdir() if p.is_file() and is_part_name(p.name, suffixes)),
        key=lambda p: natural_key(p.name),
    )
    if not parts:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise DataValidationError(
            f"folder {folder} holds no data files ({', '.join(suffixes)}); found: {found or 'nothing'}"
        )
    return parts


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key in which digit runs compare as numbers: re.split alternates text and digits, so
    position i always holds the same kind in every key; the name itself breaks ties (p01 / p1)."""
    pieces = re.split(r"(\d+)", name.lower())
    return (tuple(int(t) if i % 2 else t for i, t in enumerate(pieces)), name)


def _read_file(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Parquet by extension or magic bytes; anything else is read if its content is delimited text."""
    if path.stat().st_size == 0:
        raise DataValidationError(f"file {path} is empty (0 bytes)")
    head = read_head(path)
    if path.name.lower().endswith(PARQUET_SUFFIXES) or head.startswith(PARQUET_MAGIC):
        frame = _read_parquet(path)
    else:
        frame = _read_csv(path, head, spec)
    if frame.empty:
        raise DataValidationError(f"file {path} has no rows (columns: {list(frame.columns)})")
    return frame


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
    encoding, sep, lines, widths = inspect_text(path, head)
    first_row = [cell.strip() for cell in next(csv.reader(lines[:1], delimiter=sep, skipinitialspace=True))]
    names = [name.strip() for name in spec.column_names]
    if names:
        _check_field_count(path, names, widths)
    frame = _parse_delimited(path, sep, encoding, names, has_header=not names or first_row == names)
    frame.columns = _column_names(frame, names or first_row)
    frame.attrs[MISSING_MARKERS_ATTR] = _blank_markers(frame, {"", *spec.missing_values})
    return frame


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
        if b.name.startswith(folder) and "/" not in b.name[len(folder) :] and is_part_name(b.name)
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
