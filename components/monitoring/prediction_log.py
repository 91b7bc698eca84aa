"""The prediction log: every prediction the endpoint or batch scoring makes, kept for monitoring.

A directory of part files, never rewritten::

    endpoint-<YYYYMMDD>-<pid>.jsonl          one JSON object per predicted instance (the endpoint)
    batch-<YYYYMMDDTHHMMSS>-<uuid>.parquet   one file per scored batch (batch scoring)

Why two formats: the endpoint appends a few records at a time and must never lose the ones already
written, which JSON Lines opened in append mode gives cheaply; a batch writes many rows at once,
which Parquet stores compactly, written to a temporary name and renamed so that a reader never sees
half a file. Drift monitoring reads both through :meth:`PredictionLog.read`.

Records (one per instance): request_id, timestamp (ISO 8601, UTC), model_name, model_version,
source ("endpoint" | "batch"), id (customer id or null), probability, calibrated_probability,
label, threshold, and ``inputs`` (raw input columns -> values) in JSON Lines; in Parquet the inputs
are plain columns next to the record fields. Nothing here knows about HTTP or models.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pandas as pd

from components.shared.artifacts import fsync_dir

logger = logging.getLogger(__name__)

RECORD_FIELDS: tuple[str, ...] = (
    "request_id",
    "timestamp",
    "model_name",
    "model_version",
    "source",
    "id",
    "probability",
    "calibrated_probability",
    "label",
    "threshold",
)
# What a batch frame must carry; the other record fields are filled in when absent.
REQUIRED_FRAME_FIELDS: tuple[str, ...] = ("model_version", "probability", "label")
INPUTS_FIELD = "inputs"
# An input column whose name clashes with a record field is kept under this prefix.
CLASH_PREFIX = "input."
FLUSH_SECONDS = 0.05
SYNC_SECONDS = 1.0
ENDPOINT_PREFIX = "endpoint-"
BATCH_PREFIX = "batch-"


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with microseconds (sortable as text, parsed by pandas)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class PredictionLog:
    """Append-only prediction log in ``directory`` (created on first write).

    ``append_records`` is safe to call from many threads: one lock per instance serialises the
    writes, and each write holds an ``flock`` on the file as well, so two processes that end up
    with the same file name (pid 1 in two container restarts on one day) never interleave lines.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._handle: BinaryIO | None = None
        self._handle_path: Path | None = None

    # ------------------------------------------------------------------ endpoint path (JSONL)

    def endpoint_path(self, day: date | None = None) -> Path:
        day = day or datetime.now(UTC).date()
        return self.directory / f"{ENDPOINT_PREFIX}{day:%Y%m%d}-{os.getpid()}.jsonl"

    def append_records(self, records: list[dict[str, Any]]) -> None:
        """Append records as JSON Lines and flush them to the operating system.

        Flushed, not fsynced: the data survives a crash of this process (the common failure); call
        :meth:`sync` to survive a machine crash too (the endpoint does so regularly and on exit).
        """
        if not records:
            return
        payload = b"".join(orjson.dumps(r, default=json_default) + b"\n" for r in records)
        with self._lock:
            handle = self._open(self.endpoint_path())
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                handle.write(payload)
                handle.flush()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _open(self, path: Path) -> BinaryIO:
        """The append handle of ``path``; a new day (or a new pid after fork) opens a new file."""
        if self._handle is not None and self._handle_path == path:
            return self._handle
        self._close_handle()
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(path, "ab")  # noqa: SIM115 - kept open across calls, closed in close()
        _terminate_partial_line(handle)
        self._handle, self._handle_path = handle, path
        return handle

    def sync(self) -> None:
        """fsync the current endpoint file: written records then survive a power loss."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())

    def close(self) -> None:
        with self._lock:
            self._close_handle()

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        self._handle, self._handle_path = None, None

    # ------------------------------------------------------------------ batch path (Parquet)

    def append_frame(self, frame: pd.DataFrame, source: str = "batch") -> Path:
        """Write one batch of scored rows as a Parquet part file; returns its path.

        ``frame`` holds the record fields (at least model_version, probability, label) and the raw
        input columns. Missing record fields are filled: request_id (one per row), timestamp
        (now), source (``source``), and null model_name, id, threshold; calibrated_probability
        defaults to probability.
        """
        out = with_record_fields(frame, source)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / batch_part_name()
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            out.to_parquet(tmp, index=False)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.directory)
        return path

    # ------------------------------------------------------------------ reading

    def read(self, since: datetime | None = None, model_version: str | None = None) -> pd.DataFrame:
        """Every logged prediction (both formats), oldest first, inputs as raw-named columns.

        ``timestamp`` comes back as a UTC ``datetime64``; ``since`` (naive means UTC) keeps
        records at or after it and ``model_version`` keeps one version. Lines cut short by a crash
        are skipped. Columns: the record fields, then the input columns in first-seen order.
        """
        since_ts = as_utc(since) if since is not None else None
        if not self.directory.is_dir():
            return merge_parts([], since_ts, model_version)
        names = sorted(p.name for p in self.directory.iterdir())
        frames = [jsonl_frame((self.directory / n).read_bytes()) for n in endpoint_parts(names, since_ts)]
        frames += [pd.read_parquet(self.directory / n) for n in names if is_batch_part(n)]
        return merge_parts(frames, since_ts, model_version)


class BackgroundWriter:
    """Moves log writes off a request path: callers ``put`` items, one thread writes them.

    ``put`` only appends to a queue: the writer is not woken per item (a wake-up per request
    costs a thread switch and a GIL hand-over on the request path); it wakes every
    ``flush_seconds``, turns what is queued into records with ``expand`` (so callers enqueue cheap
    references, not finished dicts; by default an item is already a list of records), appends
    them and flushes them to the OS, and fsyncs every ``sync_seconds`` and on ``close``. So a
    crash of the process loses at most ``flush_seconds`` of predictions, a crash of the machine at
    most ``sync_seconds``, and a normal shutdown nothing.
    """

    def __init__(
        self,
        log: PredictionLog,
        expand: Callable[[Any], list[dict[str, Any]]] | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        sync_seconds: float = SYNC_SECONDS,
    ) -> None:
        self.log = log
        self.expand = expand or list
        self.flush_seconds = flush_seconds
        self.sync_seconds = sync_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.written = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def close(self) -> None:
        """Write everything queued, fsync, close the file (called on server shutdown)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        self._flush()  # whatever arrived after the thread's last turn (or it never started)
        self._sync()
        self.log.close()

    def _run(self) -> None:
        last_sync = time.monotonic()
        while not self._stop.wait(self.flush_seconds):
            self._flush()
            if time.monotonic() - last_sync >= self.sync_seconds:
                self._sync()
                last_sync = time.monotonic()

    def _flush(self) -> None:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if items:
            self._write(items)

    def _write(self, items: list[Any]) -> None:
        records: list[dict[str, Any]] = []
        for item in items:
            try:
                records.extend(self.expand(item))
            except Exception:  # one malformed item is dropped (and logged), not its whole batch
                self.failed += 1
                logger.exception("prediction log: could not turn an item into records")
        if not records:
            return
        try:
            self.log.append_records(records)
            self.written += len(records)
        except Exception:  # keep the writer alive: a lost batch is logged, not fatal
            self.failed += len(records)
            logger.exception("prediction log: could not write %d record(s)", len(records))

    def _sync(self) -> None:
        try:
            self.log.sync()
        except OSError:
            logger.exception("prediction log: fsync failed")


def endpoint_parts(names: list[str], since: pd.Timestamp | None) -> list[str]:
    """The endpoint JSONL parts among ``names``, skipping days before ``since`` (a part holds
    records of the UTC day in its name)."""
    parts = sorted(n for n in names if n.startswith(ENDPOINT_PREFIX) and n.endswith(".jsonl"))
    if since is None:
        return parts
    first_day = f"{since:%Y%m%d}"
    return [n for n in parts if n[len(ENDPOINT_PREFIX) : len(ENDPOINT_PREFIX) + 8] >= first_day]


def is_batch_part(name: str) -> bool:
    return name.startswith(BATCH_PREFIX) and name.endswith(".parquet")


def jsonl_frame(data: bytes) -> pd.DataFrame:
    """The records of one JSONL part, inputs spread into columns; lines cut short are skipped."""
    rows = []
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(record, dict):
            rows.append(flatten_record(record))
    return pd.DataFrame(rows)


def merge_parts(
    frames: list[pd.DataFrame], since: pd.Timestamp | None, model_version: str | None
) -> pd.DataFrame:
    """Every part's records in one frame, oldest first, filtered as ``PredictionLog.read`` says."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(RECORD_FIELDS))
    merged = _concat(frames)
    merged["timestamp"] = pd.to_datetime(merged["timestamp"], utc=True, format="ISO8601")
    if since is not None:
        merged = merged[merged["timestamp"] >= since]
    if model_version is not None:
        merged = merged[merged["model_version"] == model_version]
    merged = merged.sort_values("timestamp", kind="stable").reset_index(drop=True)
    leading = [c for c in RECORD_FIELDS if c in merged.columns]
    return merged[leading + [c for c in merged.columns if c not in leading]]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack part files; a column that is all null in one part takes its dtype from the others."""
    columns = list(dict.fromkeys(c for frame in frames for c in frame.columns))
    trimmed = [frame.loc[:, frame.notna().any(axis=0)] for frame in frames]
    return pd.concat(trimmed, ignore_index=True, sort=False).reindex(columns=columns)


def flatten_record(record: dict[str, Any]) -> dict[str, Any]:
    """A JSONL record with its ``inputs`` spread into raw-named columns (clashes get a prefix)."""
    flat = {k: v for k, v in record.items() if k != INPUTS_FIELD}
    for name, value in (record.get(INPUTS_FIELD) or {}).items():
        flat[f"{CLASH_PREFIX}{name}" if name in flat else name] = value
    return flat


def batch_part_name() -> str:
    """A new batch part's name: its UTC time (sortable) and a random suffix (never reused)."""
    return f"{BATCH_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex}.parquet"


def with_record_fields(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """A copy of ``frame`` with every record field present, record fields first.

    ``frame`` must hold at least model_version, probability and label (ValueError otherwise).
    """
    missing = [c for c in REQUIRED_FRAME_FIELDS if c not in frame.columns]
    if missing:
        raise ValueError(f"prediction log frame lacks column(s): {', '.join(missing)}")
    out = frame.reset_index(drop=True)  # a new frame: adding columns never touches the caller's
    n = len(out)
    defaults: dict[str, Any] = {
        "request_id": lambda: [uuid.uuid4().hex for _ in range(n)],
        "timestamp": lambda: [utc_timestamp()] * n,
        "source": lambda: [source] * n,
        "calibrated_probability": lambda: out["probability"],
        "model_name": lambda: [None] * n,
        "id": lambda: [None] * n,
        "threshold": lambda: [None] * n,
    }
    for name, make in defaults.items():
        if name not in out.columns:
            out[name] = make()
    if pd.api.types.is_datetime64_any_dtype(out["timestamp"]):
        out["timestamp"] = _iso_strings(out["timestamp"])
    out["request_id"] = out["request_id"].astype(str)
    out["model_version"] = out["model_version"].astype(str)
    return out[list(RECORD_FIELDS) + [c for c in out.columns if c not in RECORD_FIELDS]]


def _iso_strings(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values, utc=True)
    return pd.Series([ts.isoformat() for ts in stamps], index=values.index, dtype=object)


def as_utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def json_default(value: Any) -> Any:
    """Values orjson does not know (numpy scalars, pandas timestamps, decimals) as plain JSON."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    return str(value)


def _terminate_partial_line(handle: BinaryIO) -> None:
    """Start on a fresh line when a crash left the file's last line unterminated."""
    size = handle.seek(0, os.SEEK_END)
    if not size:
        return
    with open(handle.name, "rb") as reader:
        reader.seek(size - 1)
        if reader.read(1) != b"\n":
            handle.write(b"\n")
            handle.flush()
