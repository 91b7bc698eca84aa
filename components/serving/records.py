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
    request_id: str
    timestamp: str
    model: LoadedModel
    instances: list[dict[str, Any]]
    predictions: list[dict[str, Any]]


def log_records(entry: LogEntry) -> list[dict[str, Any]]:
    """One record per instance: ids, model, outputs, and the raw inputs (id columns apart)."""
    model = entry.model
    id_columns = model.schema.id_columns
    id_column = id_columns[0] if id_columns else None
    records = []
    for index, (instance, item) in enumerate(zip(entry.instances, entry.predictions, strict=True)):
        inputs = {k: v for k, v in instance.items() if k not in id_columns} if id_columns else instance
        records.append(
            {
                "request_id": entry.request_id,
                "instance": index,
                "timestamp": entry.timestamp,
                "model_name": model.model_name,
                "model_version": model.version,
                "source": "endpoint",
                "id": instance.get(id_column) if id_column else None,
                "probability": item["probability"],
                "calibrated_probability": item["calibrated_probability"],
                "label": item["label"],
                "threshold": item["threshold"],
                "inputs": inputs,
            }
        )
    return records
