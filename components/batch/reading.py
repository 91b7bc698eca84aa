"""Finding and reading a batch: a file, the newest part of a folder or prefix (or all its parts), gs://.

Local Parquet/CSV files are read by Arrow with only the columns scoring needs and string columns
dictionary-encoded (categories, not millions of str objects), which dominates the time on millions
of rows; anything unusual goes through the training reader, ``components.data.reading.read_table``,
which reports problems in its words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.data.formats import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    detect_encoding,
    is_part_name,
    read_head,
    sniff_separator,
)
from components.data.reading import MISSING_VALUES, natural_key, part_files, read_table
from components.model.bundle import ModelBundle
from components.shared import gcs as storage
from components.shared.errors import DataValidationError

TAKE_MODES = ("newest", "all")
BATCH_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES  # batch parts: no header-less .data/.dat files


def newest_part(folder: Path) -> Path:
    """The most recently modified data file in ``folder`` (ties: the last in natural name order)."""
    parts = part_files(folder, BATCH_SUFFIXES)
    return max(parts, key=lambda p: (p.stat().st_mtime_ns, natural_key(p.name)))


def _newest_gcs_part(uri: str, client: Any) -> str | None:
    """gs:// prefix -> URI of its newest data object directly under it (None: the URI is an object)."""
    bucket, name = storage.split_uri(uri)
    gcs = storage.get_client(client)
    if name and is_part_name(name, BATCH_SUFFIXES) and gcs.bucket(bucket).blob(name).exists():
        return None
    prefix = name.rstrip("/") + "/" if name else ""
    parts = [
        b
        for b in gcs.list_blobs(bucket, prefix=prefix)
        if "/" not in b.name[len(prefix) :] and is_part_name(b.name, BATCH_SUFFIXES)
    ]
    if not parts:
        raise DataValidationError(
            f"input {uri} has no data files ({', '.join(BATCH_SUFFIXES)}) directly under it"
        )
    newest = max(parts, key=lambda b: (b.updated, natural_key(b.name)))
    return f"gs://{bucket}/{newest.name}"


def resolve_batch_uri(uri: str, take: str = "newest", client: Any = None) -> str:
    """What to read: the URI itself, or (``take='newest'``) the newest part of a folder or prefix."""
    if take not in TAKE_MODES:
        raise DataValidationError(f"take must be one of {', '.join(TAKE_MODES)}, got {take!r}")
    if not uri:
        raise DataValidationError("no batch given: name a file, a folder of part files or a gs:// URI")
    if storage.is_gcs(uri):
        return uri if take == "all" else (_newest_gcs_part(uri, client) or uri)
    path = Path(uri).expanduser()
    if not path.exists():
        raise DataValidationError(f"batch {uri} does not exist")
    return str(newest_part(path)) if path.is_dir() and take == "newest" else str(path)


def read_batch(
    uri: str, take: str = "newest", columns: list[str] | None = None, client: Any = None
) -> tuple[pd.DataFrame, list[str]]:
    """Read a batch file, folder (newest part or all parts) or gs:// URI; returns (frame, sources).

    ``columns`` (the ones scoring needs) lets a local Parquet file be read column-selectively with
    string columns dictionary-encoded; every other input goes through ``read_table``.
    """
    resolved = resolve_batch_uri(uri, take, client)
    path = Path(resolved)
    if not storage.is_gcs(resolved) and path.is_file():
        name = path.name.lower()
        frame = None
        if name.endswith(PARQUET_SUFFIXES):
            frame = _read_parquet_columns(path, columns)
        elif name.endswith(CSV_SUFFIXES):
            frame = _read_csv_columns(path, columns)
        if frame is not None:
            return frame, [str(path)]
    return read_table(resolved, client=client)


def _read_parquet_columns(path: Path, columns: list[str] | None) -> pd.DataFrame | None:
    """Fast path: wanted columns only, strings as categories. None: let read_table handle the file."""
    try:
        schema = pq.read_schema(path)
    except Exception:  # pyarrow raises several unrelated types; read_table reports them properly
        return None
    if len(set(schema.names)) != len(schema.names):
        return None  # duplicate names: read_table keeps them so validation can name them
    wanted = [c for c in schema.names if columns is None or c in set(columns)]
    strings = [
        c
        for c in wanted
        if pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)
    ]
    try:
        table = pq.read_table(path, columns=wanted, read_dictionary=strings)
    except Exception:
        return None
    return table.to_pandas()


def _read_csv_columns(path: Path, columns: list[str] | None) -> pd.DataFrame | None:
    """Fast path: Arrow's multithreaded CSV reader, wanted columns only, strings as categories.

    Same separator sniffing, encoding check and missing markers (``?``, ``NA``, blank...) as
    ``read_table``; None (anything unusual: Latin-1, a space after separators, duplicate or ragged
    header, a parse error) lets ``read_table`` read the file and report problems in its words.
    """
    import csv

    from pyarrow import csv as pacsv

    try:
        if path.stat().st_size == 0 or detect_encoding(path) != "utf-8-sig":
            return None
        sample = read_head(path).decode("utf-8-sig", errors="replace")  # the head only: maybe gigabytes
        sep = sniff_separator(sample)
        if any(f"{sep} " in line for line in sample.splitlines()[:20]):
            return None  # "39, State-gov": Arrow cannot skip the space; pandas (skipinitialspace) can
        header = next(csv.reader(sample.splitlines()[:1], delimiter=sep), [])
        if not header or len(set(header)) != len(header):
            return None
        wanted = [c for c in header if columns is None or c in set(columns)]
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                null_values=list(MISSING_VALUES),
                strings_can_be_null=True,
                auto_dict_encode=True,
                auto_dict_max_cardinality=65_536,
            ),
        )
    except (OSError, ValueError, pa.ArrowException):
        return None
    return table.to_pandas()


def needed_columns(bundle: ModelBundle) -> list[str]:
    """Columns worth reading: ids, every schema feature, the target (extra columns are ignored)."""
    schema = bundle.input_schema or {}
    features = [f["name"] for f in schema.get("features", [])]
    target = [schema["target"]] if schema.get("target") else []
    return list(dict.fromkeys([*schema.get("id_columns", []), *bundle.input_columns, *features, *target]))
