"""The prediction log: append-only, safe under threads, readable as one table by drift monitoring."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from components.monitoring.prediction_log import RECORD_FIELDS, BackgroundWriter, PredictionLog


def record(request_id: str, version: str = "v0001", **inputs: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "model_name": "m",
        "model_version": version,
        "source": "endpoint",
        "id": None,
        "probability": 0.25,
        "calibrated_probability": 0.2,
        "label": 0,
        "threshold": 0.4,
        "inputs": inputs or {"Income": 1.0, "Education": "PhD"},
    }


def test_records_come_back_with_inputs_as_columns(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log")
    log.append_records([record("a", Income=5.0, Education="PhD"), record("b", Income=None, Education="x")])
    log.close()
    frame = log.read()
    assert list(frame.columns[: len(RECORD_FIELDS)]) == list(RECORD_FIELDS)
    assert frame["request_id"].tolist() == ["a", "b"]
    assert frame["Education"].tolist() == ["PhD", "x"]
    assert pd.isna(frame.loc[1, "Income"])
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert [p.name.split("-")[0] for p in (tmp_path / "log").iterdir()] == ["endpoint"]


def test_an_empty_or_missing_log_reads_as_an_empty_table(tmp_path: Path) -> None:
    frame = PredictionLog(tmp_path / "nothing").read()
    assert frame.empty and list(frame.columns) == list(RECORD_FIELDS)


def test_concurrent_threads_never_interleave_lines(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)

    def write(thread: int) -> None:
        for batch in range(50):
            log.append_records([record(f"t{thread}-{batch}-{i}", Note="x" * 500) for i in range(4)])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    frame = log.read()
    assert len(frame) == 8 * 50 * 4 and frame["request_id"].is_unique
    assert (frame["Note"] == "x" * 500).all()


def test_reopening_appends_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    first = PredictionLog(tmp_path)
    first.append_records([record("kept-1"), record("kept-2")])
    first.close()
    [path] = tmp_path.glob("endpoint-*.jsonl")
    with open(path, "ab") as handle:
        handle.write(b'{"request_id": "torn", "timest')  # a crash in the middle of a line
    second = PredictionLog(tmp_path)  # a restart: same day, same pid in a container
    second.append_records([record("after-restart")])
    second.close()
    assert PredictionLog(tmp_path).read()["request_id"].tolist() == ["kept-1", "kept-2", "after-restart"]


def test_batch_frames_are_parquet_parts_merged_with_endpoint_records(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.append_records([record("e1", version="v0001", Income=3.0)])
    batch = pd.DataFrame(
        {
            "model_version": ["v0002", "v0002"],
            "probability": [0.1, 0.9],
            "label": [0, 1],
            "id": [11, 12],
            "Income": [10.0, 20.0],
            "Education": ["PhD", "Basic"],
        }
    )
    path = log.append_frame(batch, source="batch")
    log.close()
    assert list(batch.columns) == ["model_version", "probability", "label", "id", "Income", "Education"]
    assert path.name.startswith("batch-") and path.suffix == ".parquet"
    assert not list(tmp_path.glob(".*.tmp"))
    frame = log.read()
    assert len(frame) == 3
    rows = frame[frame["source"] == "batch"]
    assert rows["request_id"].is_unique and rows["calibrated_probability"].tolist() == [0.1, 0.9]
    assert rows["Income"].tolist() == [10.0, 20.0]
    assert log.read(model_version="v0001")["request_id"].tolist() == ["e1"]


def test_batch_frame_must_carry_the_prediction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="probability"):
        PredictionLog(tmp_path).append_frame(pd.DataFrame({"model_version": ["v1"], "label": [0]}))


def test_since_filters_by_timestamp(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    old = record("old")
    old["timestamp"] = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    log.append_records([old, record("new")])
    log.close()
    since = datetime.now(UTC) - timedelta(hours=1)
    assert log.read(since=since)["request_id"].tolist() == ["new"]
    naive = since.replace(tzinfo=None)  # naive means UTC
    assert log.read(since=naive)["request_id"].tolist() == ["new"]


def test_an_input_named_like_a_record_field_keeps_both(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.append_records([record("a", label="customer label", Income=1.0)])
    log.close()
    frame = log.read()
    assert frame.loc[0, "label"] == 0 and frame.loc[0, "input.label"] == "customer label"


def test_background_writer_writes_everything_before_close(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    writer = BackgroundWriter(
        log, expand=lambda n: [record(f"r{n}-{i}") for i in range(3)], sync_seconds=0.05
    )
    writer.start()
    for n in range(200):
        writer.put(n)
    writer.close()
    assert writer.written == 600 and writer.failed == 0
    assert len(PredictionLog(tmp_path).read()) == 600


def test_background_writer_survives_a_bad_item(tmp_path: Path) -> None:
    writer = BackgroundWriter(PredictionLog(tmp_path))
    writer.start()
    writer.put([record("ok-1")])
    writer.put(None)  # not a list of records: dropped and logged, the writer lives on
    writer.put([record("ok-3")])
    writer.close()
    assert writer.failed == 1 and writer.written == 2
    late = BackgroundWriter(PredictionLog(tmp_path))
    late.put([record("ok-4")])
    late.close()  # never started: close still writes what was queued
    assert PredictionLog(tmp_path).read()["request_id"].tolist() == ["ok-1", "ok-3", "ok-4"]
