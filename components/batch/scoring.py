"""Batch scoring: read a batch, check it against the champion's input schema, score it in chunks.

The champion bundle decides what a valid batch is: the raw input columns its transformer needs,
their types from the saved input schema, the id columns and the target. Problems a user can fix
raise :class:`DataValidationError` naming the column, an example value and its row; unknown
categories and extra columns are not problems (the one-hot encoder maps unknown values to its
infrequent bucket or zeros; extra columns are ignored, the target is kept for labelled rows).

Scores come from ``ModelBundle.predict`` on row chunks, so the numbers are exactly those of the
evaluate stage and of the endpoint (up to the last bits of BLAS sums). Chunks of ~50k rows keep
the feature transform in cache (measured faster than one 1M-row pass) and bound the memory; they
are scored on one thread per core, which pays off for tree models (xgboost releases the GIL:
about 20% on 300 trees) and is neutral for linear ones. Two things are done once per batch
instead of per row because they dominate on millions of rows: date strings are parsed once per
distinct value, and local Parquet/CSV files are read by Arrow with only the needed columns and
string columns dictionary-encoded (categories, not millions of str objects).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from components.data.ingest import (
    CSV_SUFFIXES,
    MAX_SCHEMA_CATEGORIES,
    PARQUET_SUFFIXES,
    label_key,
    read_table,
)
from components.model.bundle import ModelBundle
from components.model.features import coerce_datetime
from components.registry.uri import open_registry
from components.shared import gcs as storage
from components.shared.errors import DataValidationError, RegistryError
from components.shared.report import markdown_table

TAKE_MODES = ("newest", "all")
DEFAULT_CHUNK_ROWS = 50_000
MAX_BAD_DATE_SHARE = 0.05  # more unparseable dates than this is a wrong format, not a few typos
PREDICTION_COLUMNS = ("id", "probability", "calibrated_probability", "label", "model_version", "scored_at")
PREDICTIONS_PARQUET = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"
_NUMERIC_TYPES = frozenset({"integer", "number"})


# ------------------------------------------------------------------------------------- champion


@dataclass(frozen=True)
class Champion:
    """The bundle a batch is scored with, pinned to a version (the alias may move mid-run)."""

    model_name: str
    version: str
    path: Path
    bundle: ModelBundle


def load_champion(registry_uri: str, model_name: str, ref: str = "champion") -> Champion:
    """Resolve ``ref`` (alias or version) to a version and load it; clear errors when there is none."""
    registry = open_registry(registry_uri)
    if model_name not in registry.models():
        known = ", ".join(registry.models()) or "none"
        raise RegistryError(
            f"registry {registry_uri} has no model {model_name!r} (models: {known}); "
            "train one first with `propensity run`"
        )
    if ref == "champion" and registry.champion(model_name) is None:
        raise RegistryError(
            f"model {model_name!r} in registry {registry_uri} has no champion: "
            "no version passed the quality gate yet"
        )
    path = registry.resolve(model_name, ref)
    return Champion(model_name, path.name, path, registry.load(model_name, path.name))


# -------------------------------------------------------------------------------------- reading


def _is_data_name(name: str) -> bool:
    lower = Path(name).name.lower()
    return not lower.startswith((".", "_")) and lower.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)


def _natural_key(name: str) -> tuple[Any, ...]:
    pieces = re.split(r"(\d+)", name.lower())
    return tuple(int(t) if i % 2 else t for i, t in enumerate(pieces))


def newest_part(folder: Path) -> Path:
    """The most recently modified data file in ``folder`` (ties: the last in natural name order)."""
    parts = [p for p in folder.iterdir() if p.is_file() and _is_data_name(p.name)]
    if not parts:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise DataValidationError(
            f"folder {folder} holds no data files (.csv, .tsv, .parquet); found: {found or 'nothing'}"
        )
    return max(parts, key=lambda p: (p.stat().st_mtime_ns, _natural_key(p.name)))


def _newest_gcs_part(uri: str, client: Any) -> str | None:
    """gs:// prefix -> URI of its newest data object directly under it (None: the URI is an object)."""
    bucket, name = storage.split_uri(uri)
    gcs = storage.get_client(client)
    if name and _is_data_name(name) and gcs.bucket(bucket).blob(name).exists():
        return None
    prefix = name.rstrip("/") + "/" if name else ""
    parts = [
        b
        for b in gcs.list_blobs(bucket, prefix=prefix)
        if "/" not in b.name[len(prefix) :] and _is_data_name(b.name)
    ]
    if not parts:
        raise DataValidationError(f"input {uri} has no data files (.csv, .tsv, .parquet) directly under it")
    newest = max(parts, key=lambda b: (b.updated, _natural_key(b.name)))
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
    string columns dictionary-encoded; every other input goes through ``ingest.read_table``.
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
    ``ingest``; None (anything unusual: Latin-1, a space after separators, duplicate or ragged
    header, a parse error) lets ``read_table`` read the file and report problems in its words.
    """
    import csv

    from pyarrow import csv as pacsv

    from components.data.ingest import MISSING_VALUES, detect_encoding, sniff_separator

    try:
        if path.stat().st_size == 0 or detect_encoding(path) != "utf-8-sig":
            return None
        with path.open("rb") as handle:  # the head only: the file may be gigabytes
            sample = handle.read(64 * 1024).decode("utf-8-sig", errors="replace")
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


# ----------------------------------------------------------------------------------- validation


@dataclass
class ValidatedBatch:
    """A batch ready to score: model inputs (numbers coerced, dates parsed), ids, labels if any."""

    frame: pd.DataFrame  # the transformer's input columns, cleaned
    raw: pd.DataFrame  # the same rows as read (for the prediction log)
    ids: pd.Series
    labels: pd.Series | None  # Int8 0/1 with <NA> for unlabelled rows; None without a target column
    source: str
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def labelled_rows(self) -> int:
        return 0 if self.labels is None else int(self.labels.notna().sum())


def validate_batch(
    frame: pd.DataFrame, bundle: ModelBundle, source: str, sources: list[str] | None = None
) -> ValidatedBatch:
    """Check the batch against the bundle's schema; returns what scoring and monitoring need."""
    schema = bundle.input_schema or {}
    if len(frame) == 0:
        raise DataValidationError(f"batch {source} has no rows (columns: {list(frame.columns)[:20]})")
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise DataValidationError(f"batch {source}: duplicate column name(s) {duplicated}; rename them")
    id_columns = [c for c in schema.get("id_columns", []) if c]
    required = list(dict.fromkeys([*id_columns, *bundle.input_columns]))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"batch {source} lacks column(s) {missing} that the champion model needs; "
            f"columns found: {[str(c) for c in frame.columns][:40]}"
        )
    types = {f["name"]: f for f in schema.get("features", [])}
    clean: dict[str, Any] = {}
    notes: list[str] = []
    for column in bundle.input_columns:
        kind = types.get(column, {}).get("type")
        values = frame[column]
        if kind in _NUMERIC_TYPES:
            clean[column] = _numeric_column(values, column, source)
        elif kind == "date" or column in bundle.transformer.date_inputs:
            clean[column] = _date_column(values, column, source, bundle)
        else:
            clean[column] = values
            if kind == "string":
                notes += _unknown_category_note(values, column, types[column].get("categories") or [])
    target = schema.get("target")
    labels = None
    if target and target in frame.columns:
        labels = _labels(frame[target], target, str(schema.get("positive_label", "1")), source)
        notes.append(f"{int(labels.notna().sum())} of {len(frame)} rows carry a label ({target})")
    frame = _with_default_index(frame)
    return ValidatedBatch(
        frame=pd.DataFrame({c: _with_default_index(v) for c, v in clean.items()}, copy=False),
        raw=frame,
        ids=_ids(frame, id_columns),
        labels=labels,
        source=source,
        sources=list(sources or [source]),
        notes=notes,
    )


def _with_default_index(data: Any) -> Any:
    """``data`` with a 0..n-1 index; re-indexing only when needed (it copies a million-row frame)."""
    index = data.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return data
    return data.reset_index(drop=True)


def _first_bad(values: pd.Series, bad: np.ndarray) -> tuple[int, Any, int]:
    position = int(np.flatnonzero(bad)[0])
    return position, values.iloc[position], int(bad.sum())


def _numeric_column(values: pd.Series, column: str, source: str) -> pd.Series:
    """Numbers pass as they are; text must parse as numbers (blank is missing)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.float64)
    text = values.astype("string").str.strip()
    coerced = pd.to_numeric(text.replace("", pd.NA), errors="coerce")
    bad = (coerced.isna() & text.notna() & (text != "")).to_numpy(dtype=bool)
    if bad.any():
        row, value, count = _first_bad(values, bad)
        raise DataValidationError(
            f"batch {source}: column {column!r} must be numeric, but data row {row + 1} holds {value!r} "
            f"({count} non-numeric value(s) in this column)"
        )
    return coerced.astype(np.float64)


def _date_column(values: pd.Series, column: str, source: str, bundle: ModelBundle) -> pd.Series:
    """Dates parsed once per distinct value with the transformer's own parser (same result, faster)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    transformer = bundle.transformer
    parsed_uniques = coerce_datetime(
        pd.Series(np.asarray(uniques, dtype=object)), transformer.date_format, transformer.dayfirst
    )
    parsed = np.where(codes >= 0, parsed_uniques[np.maximum(codes, 0)], np.datetime64("NaT"))
    parsed = parsed.astype("datetime64[ns]")
    present = codes >= 0
    bad = present & np.isnat(parsed)
    if present.any() and bad.sum() / present.sum() > MAX_BAD_DATE_SHARE:
        row, value, count = _first_bad(values, bad)
        raise DataValidationError(
            f"batch {source}: date column {column!r} has {count} of {int(present.sum())} values that do "
            f"not parse as dates, e.g. {value!r} in data row {row + 1}"
        )
    return pd.Series(parsed, index=values.index, name=column)


def _unknown_category_note(values: pd.Series, column: str, known: list[str]) -> list[str]:
    if len(known) >= MAX_SCHEMA_CATEGORIES:
        return []  # the schema lists only the most frequent categories: "unseen" would be a guess
    unknown = sorted({str(v) for v in pd.unique(values.dropna())} - set(known))
    if not unknown:
        return []
    return [f"column {column!r}: {len(unknown)} category value(s) unseen in training, e.g. {unknown[:5]}"]


def _labels(values: pd.Series, target: str, positive_label: str, source: str) -> pd.Series:
    """The target as Int8 0/1 (<NA> where blank): labelled rows feed realised profit and retraining."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # one label_key call per distinct value
    keys = [label_key(u) for u in uniques]
    distinct = sorted({k for k in keys if k})
    if len(distinct) > 2:
        raise DataValidationError(
            f"batch {source}: target column {target!r} is not binary: values {distinct[:10]}"
        )
    positive = label_key(positive_label)
    per_value = np.array([-1 if not k else int(k == positive) for k in keys] or [-1], dtype=np.int8)
    mapped = np.where(codes >= 0, per_value[np.maximum(codes, 0)], -1)
    return pd.Series(mapped, name=target).astype("Int8").mask(mapped < 0)


def _ids(frame: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """The customer id: the one id column as is, several joined with '|', else the row number."""
    if not id_columns:
        return pd.Series(np.arange(len(frame)), name="id")
    if len(id_columns) == 1:
        return frame[id_columns[0]].reset_index(drop=True).rename("id")
    joined = frame[id_columns].astype(str).agg("|".join, axis=1)
    return joined.reset_index(drop=True).rename("id")


# -------------------------------------------------------------------------------------- scoring


def _chunks(rows: int, chunk_rows: int) -> Iterator[slice]:
    for start in range(0, rows, chunk_rows):
        yield slice(start, min(start + chunk_rows, rows))


def default_workers() -> int:
    """Threads for chunk scoring: the usable cores (2 on the reference machines), at most 4."""
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(4, os.cpu_count() or 1))


def predict_chunked(
    bundle: ModelBundle, frame: pd.DataFrame, chunk_rows: int = DEFAULT_CHUNK_ROWS, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(probability, calibrated probability) of every row via ``bundle.predict`` on row chunks.

    BLAS is held to one thread per chunk so that parallel chunks do not oversubscribe the cores.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    workers = workers or default_workers()
    slices = list(_chunks(len(frame), chunk_rows))
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1 or len(slices) == 1:
            parts = [bundle.predict(frame.iloc[s]) for s in slices]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(lambda s: bundle.predict(frame.iloc[s]), slices))
    if not parts:
        return np.empty(0), np.empty(0)
    return np.concatenate([p for p, _ in parts]), np.concatenate([c for _, c in parts])


def score_batch(
    champion: Champion,
    batch: ValidatedBatch,
    scored_at: datetime | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per batch row: id, probabilities, label (p >= threshold), version, time, target if any."""
    bundle = champion.bundle
    probability, calibrated = predict_chunked(bundle, batch.frame, chunk_rows, workers)
    n = batch.rows
    stamp = pd.Timestamp(scored_at or scored_at_now())
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    out = pd.DataFrame(
        {
            "id": batch.ids.to_numpy(),
            "probability": probability,
            "calibrated_probability": calibrated,
            "label": (calibrated >= bundle.threshold).astype(np.int8),
            "model_version": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), [champion.version]),
            "scored_at": pd.DatetimeIndex(np.full(n, stamp.tz_localize(None).to_datetime64())).tz_localize(
                "UTC"
            ),
        },
        copy=False,
    )
    if batch.labels is not None:
        out[bundle.input_schema.get("target", "target")] = batch.labels.array
    return out


def write_predictions(predictions: pd.DataFrame, directory: str | Path, csv: bool = False) -> dict[str, str]:
    """predictions.parquet (and predictions.csv on request) in ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"parquet": str(directory / PREDICTIONS_PARQUET)}
    pq.write_table(pa.Table.from_pandas(predictions, preserve_index=False), paths["parquet"])
    if csv:
        paths["csv"] = str(directory / PREDICTIONS_CSV)
        predictions.to_csv(paths["csv"], index=False)
    return paths


def read_predictions(directory: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(directory) / PREDICTIONS_PARQUET)


# ------------------------------------------------------------------------------ prediction log


def log_frame(champion: Champion, batch: ValidatedBatch, predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows for ``PredictionLog.append_frame``: record fields plus the raw input columns.

    request_id and timestamp are filled here, in bulk (the log's per-row defaults are built for a
    few endpoint records, not for a million batch rows).
    """
    n = len(predictions)
    prefix = f"batch-{os.urandom(6).hex()}-"
    stamp = predictions["scored_at"].iloc[0].isoformat() if n else datetime.now(UTC).isoformat()
    columns: dict[str, Any] = {
        "request_id": np.array([f"{prefix}{i}" for i in range(n)], dtype=object),
        "timestamp": np.full(n, stamp, dtype=object),
        "model_name": np.full(n, champion.model_name, dtype=object),
        "model_version": np.full(n, champion.version, dtype=object),
        "id": predictions["id"].to_numpy(),
        "probability": predictions["probability"].to_numpy(),
        "calibrated_probability": predictions["calibrated_probability"].to_numpy(),
        "label": predictions["label"].to_numpy(),
        "threshold": np.full(n, float(champion.bundle.threshold)),
    }
    for column in champion.bundle.input_columns:
        if column in batch.raw.columns:
            columns[f"input.{column}" if column in columns else column] = batch.raw[column].array
    return pd.DataFrame(columns, copy=False)


def local_directory(uri: str) -> Path:
    """A directory for a local path, or for gs://bucket/x its Cloud Storage FUSE path /gcs/bucket/x."""
    if storage.is_gcs(uri):
        bucket, name = storage.split_uri(uri)
        fuse = Path("/gcs") / bucket / name
        if not Path("/gcs").is_dir():
            raise DataValidationError(
                f"{uri}: a gs:// prediction log needs the Cloud Storage FUSE mount /gcs (Vertex AI); "
                "use a local directory here"
            )
        return fuse
    return Path(uri).expanduser()


def scored_at_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def describe_scores(predictions: pd.DataFrame) -> dict[str, Any]:
    """Batch-level facts for metadata and the summary."""
    calibrated = predictions["calibrated_probability"].to_numpy()
    return {
        "rows": len(predictions),
        "positive_labels": int(predictions["label"].sum()),
        "positive_rate": round(float(predictions["label"].mean()), 5) if len(predictions) else math.nan,
        "mean_calibrated_probability": round(float(calibrated.mean()), 5) if len(predictions) else math.nan,
    }


# ------------------------------------------------------------------------------ the whole step


@dataclass
class ScoringRun:
    """What one batch scoring produced, with the seconds each step took."""

    champion: Champion
    batch: ValidatedBatch
    predictions: pd.DataFrame
    paths: dict[str, str]
    log_path: str | None
    seconds: dict[str, float]

    @property
    def rows_per_second(self) -> float:
        """End to end, file in -> predictions file out (the prediction log is timed apart)."""
        total = sum(v for k, v in self.seconds.items() if k != "log")
        return self.batch.rows / total if total else math.inf


def needed_columns(bundle: ModelBundle) -> list[str]:
    """Columns worth reading: ids, every schema feature, the target (extra columns are ignored)."""
    schema = bundle.input_schema or {}
    features = [f["name"] for f in schema.get("features", [])]
    target = [schema["target"]] if schema.get("target") else []
    return list(dict.fromkeys([*schema.get("id_columns", []), *bundle.input_columns, *features, *target]))


def run_batch_scoring(
    batch_uri: str,
    champion: Champion,
    output_dir: str | Path,
    take: str = "newest",
    csv: bool = False,
    log_dir: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    client: Any = None,
) -> ScoringRun:
    """Read, validate, score, write the predictions and (with ``log_dir``) append them to the log."""
    import time

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    frame, sources = read_batch(batch_uri, take, needed_columns(champion.bundle), client=client)
    seconds["read"] = time.perf_counter() - start
    start = time.perf_counter()
    source = sources[0] if len(sources) == 1 else batch_uri
    batch = validate_batch(frame, champion.bundle, source, sources)
    seconds["validate"] = time.perf_counter() - start
    start = time.perf_counter()
    predictions = score_batch(champion, batch, chunk_rows=chunk_rows, workers=workers)
    seconds["score"] = time.perf_counter() - start
    start = time.perf_counter()
    paths = write_predictions(predictions, output_dir, csv=csv)
    seconds["write"] = time.perf_counter() - start
    log_path = None
    if log_dir:
        from components.monitoring.prediction_log import PredictionLog

        start = time.perf_counter()
        log_path = str(
            PredictionLog(Path(log_dir)).append_frame(log_frame(champion, batch, predictions), "batch")
        )
        seconds["log"] = time.perf_counter() - start
    seconds = {k: round(v, 4) for k, v in seconds.items()}
    return ScoringRun(champion, batch, predictions, paths, log_path, seconds)


def sample_for_drift(run: ScoringRun, max_rows: int, seed: int) -> pd.DataFrame:
    """A bounded sample of the batch as read (raw inputs) with its calibrated score, for the drift step."""
    columns = [c for c in run.champion.bundle.input_columns if c in run.batch.raw.columns]
    frame = run.batch.raw[columns].assign(
        calibrated_probability=run.predictions["calibrated_probability"].to_numpy()
    )
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    return frame.reset_index(drop=True)


def labelled_rows(run: ScoringRun, max_rows: int, seed: int) -> pd.DataFrame:
    """The batch rows that carry a label, in validated form (numbers coerced, dates parsed, target 0/1).

    At most ``max_rows`` (a seeded sample), the same bound as the bundle's reference sample, so a
    retrain on a huge labelled batch stays a normal-sized training run.
    """
    batch, bundle = run.batch, run.champion.bundle
    target = (bundle.input_schema or {}).get("target") or "target"
    if batch.labels is None or not batch.labelled_rows:
        return pd.DataFrame(columns=[*needed_columns(bundle)])
    keep = batch.labels.notna().to_numpy()
    raw = batch.raw[[c for c in needed_columns(bundle) if c in batch.raw.columns and c != target]]
    frame = raw.assign(**{c: batch.frame[c] for c in batch.frame.columns})[keep]
    frame[target] = batch.labels[keep].astype(np.int64).to_numpy()
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    return frame.reset_index(drop=True)


def scoring_markdown(run: ScoringRun) -> str:
    facts = describe_scores(run.predictions)
    rows = [{"step": k, "seconds": v} for k, v in run.seconds.items()]
    lines = [
        "# Batch scoring",
        "",
        f"- Batch: {run.batch.source} ({len(run.batch.sources)} file(s))",
        f"- Model: {run.champion.model_name} {run.champion.version} ({run.champion.bundle.family}), "
        f"threshold {run.champion.bundle.threshold:.4f}",
        f"- Rows scored: {facts['rows']}; predicted positive: {facts['positive_labels']} "
        f"({facts['positive_rate']:.2%}); mean calibrated probability "
        f"{facts['mean_calibrated_probability']:.4f}",
        f"- Labelled rows: {run.batch.labelled_rows}",
        f"- Throughput: {run.rows_per_second:,.0f} rows/s (read to written, prediction log excluded)",
        f"- Predictions: {', '.join(run.paths.values())}",
        f"- Prediction log part: {run.log_path or 'not written (no log configured)'}",
        "",
        "## Steps",
        markdown_table(rows),
    ]
    if run.batch.notes:
        lines += ["## Notes", *[f"- {note}" for note in run.batch.notes]]
    return "\n".join(lines) + "\n"


def model_record(champion: Champion) -> dict[str, Any]:
    """The pinned model, handed to the later steps (they load this exact version)."""
    bundle = champion.bundle
    return {
        "model_name": champion.model_name,
        "version": champion.version,
        "path": str(champion.path),
        "family": bundle.family,
        "threshold": float(bundle.threshold),
        "temperature": float(bundle.temperature),
        "created_at": bundle.created_at,
        "target": (bundle.input_schema or {}).get("target"),
    }


def build_prediction_summary(
    scoring: dict[str, Any],
    model: dict[str, Any],
    business: dict[str, Any],
    drift: dict[str, Any],
    artifact_uris: dict[str, str],
    stage_seconds: dict[str, float | None],
    run_root: str,
) -> dict[str, Any]:
    """prediction_summary.json: scores, campaign value, drift decision and where the retrain reports."""
    retrain = {
        "triggered": bool(drift["drifted"]),
        "reason": drift["reason"],
        "training_summary": (
            f"the nested training pipeline's pipeline_summary output in this run (locally: {run_root}/"
            "summarize*/pipeline_summary); its gate decides whether the new model is deployed"
            if drift["drifted"]
            else None
        ),
    }
    return {
        "model": model,
        "scoring": _integral_floats_as_ints(scoring),
        "business": business,
        "drift": {k: v for k, v in drift.items() if k != "columns"},
        "drift_columns": drift.get("columns", []),
        "retrain": retrain,
        "artifacts": artifact_uris,
        "stage_seconds": stage_seconds,
    }


def _integral_floats_as_ints(data: dict[str, Any]) -> dict[str, Any]:
    """KFP metadata hands ints back as floats (2000 -> 2000.0); counts read better as ints again."""
    return {
        k: int(v) if isinstance(v, float) and v.is_integer() and k != "stage_seconds" else v
        for k, v in data.items()
    }
