"""Batch scoring: score a validated batch in chunks, write the predictions, append them to the log.

Scores come from ``ModelBundle.predict`` on row chunks, so the numbers are exactly those of the
evaluate stage and of the endpoint (up to the last bits of BLAS sums). Chunks of ~50k rows keep
the feature transform in cache (measured faster than one 1M-row pass) and bound the memory; they
are scored on one thread per core, which pays off for tree models (xgboost releases the GIL:
about 20% on 300 trees) and is neutral for linear ones. :func:`run_batch_scoring` is the whole
step: read (``reading``), validate (``validation``), score, write, log.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from components.batch.champion import Champion
from components.batch.reading import needed_columns, read_batch
from components.batch.validation import ValidatedBatch, validate_batch
from components.model.bundle import ModelBundle

DEFAULT_CHUNK_ROWS = 50_000
PREDICTION_COLUMNS = ("id", "probability", "calibrated_probability", "label", "model_version", "scored_at")
PREDICTIONS_PARQUET = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"


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
        from components.monitoring.gcs_log import open_prediction_log

        start = time.perf_counter()
        log_path = str(
            open_prediction_log(log_dir).append_frame(log_frame(champion, batch, predictions), "batch")
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
    return labelled_frame(run.batch, run.champion.bundle, max_rows, seed)


def labelled_frame(batch: ValidatedBatch, bundle: ModelBundle, max_rows: int, seed: int) -> pd.DataFrame:
    """:func:`labelled_rows` of any validated batch (a scored one, or labels joined to the log)."""
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
