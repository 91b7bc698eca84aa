"""The prediction log in Cloud Storage: what a Vertex AI endpoint writes, and drift reads from GCS.

A Vertex endpoint's container has no lasting disk, and GCS objects cannot be appended to, so the
endpoint's records go up in batches, one new JSON Lines object per batch, next to the batch parts
of batch scoring (Parquet), under one prefix::

    gs://BUCKET/.../prediction_log/endpoint-<YYYYMMDD>-<HHMMSS.ffffff>-<host>-<pid>-<n>.jsonl
    gs://BUCKET/.../prediction_log/batch-<YYYYMMDDTHHMMSS>-<uuid>.parquet

Objects are created with ``ifGenerationMatch=0``: a part is never overwritten, so replicas and
restarts need no coordination. The names keep the local log's ``endpoint-<day>`` prefix, so
:meth:`GcsPredictionLog.read` skips whole days exactly as the local reader does.

How much a crash loses: records wait in memory until ``batch_seconds`` (5 s) have passed since the
oldest of them or ``batch_records`` (10 000) are waiting, checked by the endpoint's log writer every
second; SIGTERM (what Vertex sends on undeploy and scale-down) uploads everything. A killed
replica loses at most the last ``batch_seconds`` (plus the writer's one-second turn) of
predictions; a failed upload is retried (components.shared.gcs) and, if it still fails, kept for
the next turn.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from components.monitoring.prediction_log import (
    ENDPOINT_PREFIX,
    PredictionLog,
    as_utc,
    batch_part_name,
    endpoint_parts,
    is_batch_part,
    json_default,
    jsonl_frame,
    merge_parts,
    with_record_fields,
)
from components.shared import gcs as storage

BATCH_SECONDS = 5.0
BATCH_RECORDS = 10_000


class GcsPredictionLog:
    """The prediction log under a gs:// prefix, with the writer and reader API of ``PredictionLog``."""

    def __init__(
        self,
        uri: str,
        client: Any = None,
        batch_seconds: float = BATCH_SECONDS,
        batch_records: int = BATCH_RECORDS,
    ) -> None:
        if not storage.is_gcs(uri):
            raise ValueError(f"{uri!r} is not a gs:// prefix")
        self.uri = uri.rstrip("/")
        self.batch_seconds, self.batch_records = batch_seconds, batch_records
        self._client = client
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._oldest: float | None = None
        self._count = 0
        self._writer = f"{_safe(socket.gethostname())}-{os.getpid()}"

    # ------------------------------------------------------------------ endpoint path (JSONL)

    def append_records(self, records: list[dict[str, Any]]) -> None:
        """Queue records for the next upload; upload now when the batch is full."""
        if not records:
            return
        lines = [orjson.dumps(r, default=json_default) + b"\n" for r in records]
        with self._lock:
            self._pending.extend(lines)
            self._oldest = self._oldest or time.monotonic()
            full = len(self._pending) >= self.batch_records
        if full:
            self.upload()

    def sync(self) -> None:
        """Upload the waiting records once the oldest has waited ``batch_seconds``."""
        with self._lock:
            due = self._oldest is not None and time.monotonic() - self._oldest >= self.batch_seconds
        if due:
            self.upload()

    def close(self) -> None:
        self.upload()

    def upload(self) -> str | None:
        """Write every waiting record as one new object; its URI (None when nothing waited)."""
        with self._lock:
            if not self._pending:
                return None
            lines, self._pending, self._oldest = self._pending, [], None
            self._count += 1
            name = f"{ENDPOINT_PREFIX}{datetime.now(UTC):%Y%m%d-%H%M%S.%f}-{self._writer}-{self._count}.jsonl"
        uri = storage.join(self.uri, name)
        try:
            storage.write_bytes(
                uri, b"".join(lines), self._client, if_generation_match=0, content_type="application/x-ndjson"
            )
        except Exception:
            with self._lock:  # keep them for the next turn, oldest first
                self._pending[:0] = lines
                self._oldest = self._oldest or time.monotonic()
            raise
        return uri

    # ------------------------------------------------------------------ batch path (Parquet)

    def append_frame(self, frame: pd.DataFrame, source: str = "batch") -> str:
        """One batch of scored rows as a new Parquet object (as ``PredictionLog.append_frame``)."""
        out = with_record_fields(frame, source)
        buffer = io.BytesIO()
        out.to_parquet(buffer, index=False)
        uri = storage.join(self.uri, batch_part_name())
        storage.write_bytes(uri, buffer.getvalue(), self._client, if_generation_match=0)
        return uri

    # ------------------------------------------------------------------ reading

    def read(self, since: datetime | None = None, model_version: str | None = None) -> pd.DataFrame:
        """Every logged prediction under the prefix, as ``PredictionLog.read`` returns them."""
        since_ts = as_utc(since) if since is not None else None
        names = [n for n in storage.list_names(self.uri, self._client) if "/" not in n]
        frames = [
            jsonl_frame(storage.read_bytes(storage.join(self.uri, n), self._client))
            for n in endpoint_parts(names, since_ts)
        ]
        frames += [
            pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(self.uri, n), self._client)))
            for n in names
            if is_batch_part(n)
        ]
        return merge_parts(frames, since_ts, model_version)


def open_prediction_log(location: str | Path, client: Any = None) -> PredictionLog | GcsPredictionLog:
    """The prediction log at a local directory or a gs:// prefix."""
    if storage.is_gcs(str(location)):
        return GcsPredictionLog(str(location), client)
    return PredictionLog(Path(location).expanduser())


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40] or "host"
