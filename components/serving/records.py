"""The prediction-log records the endpoint writes: one per predicted instance.

The app queues one ``LogEntry`` per answered request; the prediction log's background writer
(``components.monitoring.prediction_log.BackgroundWriter``: queue -> JSON Lines, flushed after
every write, fsynced every second and on shutdown) expands it with ``log_records`` off the
request path. The inputs are personal data: they go to the prediction log and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.serving.model import LoadedModel


@dataclass
class LogEntry:
    """One answered request. It owns ``instances``: the app hands the parsed request's dicts over
    once the response is built, and ``log_records`` takes the id columns out of them in place."""

    request_id: str
    timestamp: str
    model: LoadedModel
    instances: list[dict[str, Any]]
    predictions: list[dict[str, Any]]


def log_records(entry: LogEntry) -> list[dict[str, Any]]:
    """One record per instance: ids, model, outputs, and the raw inputs (id columns apart).

    The id columns are popped from the instance (no copy of every input per record: copying was
    most of the writer's time at 100 instances per request)."""
    model = entry.model
    id_columns = model.schema.id_columns
    id_column = id_columns[0] if id_columns else None
    request_id, timestamp = entry.request_id, entry.timestamp
    name, version = model.model_name, model.version
    records = []
    for index, (instance, item) in enumerate(zip(entry.instances, entry.predictions, strict=True)):
        ident = instance.get(id_column) if id_column else None
        for column in id_columns:
            instance.pop(column, None)
        records.append(
            {
                "request_id": request_id,
                "instance": index,
                "timestamp": timestamp,
                "model_name": name,
                "model_version": version,
                "source": "endpoint",
                "id": ident,
                "probability": item["probability"],
                "calibrated_probability": item["calibrated_probability"],
                "label": item["label"],
                "threshold": item["threshold"],
                "inputs": instance,
            }
        )
    return records
