"""Dynamic batching: prediction requests that arrive together are scored in one model call.

Scoring one row costs about as much as scoring a hundred (the transformer's per-call overhead
dominates), so prediction requests that arrive together are merged into one transform/predict
call on the event loop, then split again. A lone request is scored at once; under load the batch
grows with the number of concurrent requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components.serving.model import LoadedModel, Scored

MAX_BATCH_ROWS = 4096  # rows merged into one transform call


@dataclass
class _Pending:
    model: LoadedModel
    columns: dict[str, Sequence[Any]]
    rows: int
    future: asyncio.Future[Scored]


class Batcher:
    """Merges the prediction requests that are ready in one event-loop turn into one model call.

    ``submit`` queues a request and schedules a flush with ``call_soon``: every request parsed in
    the same loop iteration joins, none waits for a timer. Requests scored by different models
    (a swap happened in between) are scored separately, each by its own model.
    """

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._scheduled = False
        self.batches = 0
        self.rows = 0

    def submit(
        self, model: LoadedModel, columns: dict[str, Sequence[Any]], rows: int
    ) -> asyncio.Future[Scored]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scored] = loop.create_future()
        self._pending.append(_Pending(model, columns, rows, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        pending, self._pending, self._scheduled = self._pending, [], False
        group: list[_Pending] = []
        size = 0
        for item in pending:
            if group and (item.model is not group[0].model or size + item.rows > MAX_BATCH_ROWS):
                self._score(group)
                group, size = [], 0
            group.append(item)
            size += item.rows
        if group:
            self._score(group)

    def _score(self, group: list[_Pending]) -> None:
        self.batches += 1
        self.rows += sum(item.rows for item in group)
        if len(group) == 1:
            _settle(group[0], group[0].columns)
            return
        merged = {name: [v for item in group for v in item.columns[name]] for name in group[0].columns}
        try:
            scored = group[0].model.score(merged)
        except Exception:  # score one by one so that only a request that really fails fails
            for item in group:
                _settle(item, item.columns)
            return
        start = 0
        for item in group:
            end = start + item.rows
            part = Scored(
                scored.probability[start:end], scored.calibrated[start:end], scored.features[start:end]
            )
            if not item.future.done():
                item.future.set_result(part)
            start = end


def _settle(item: _Pending, columns: dict[str, Sequence[Any]]) -> None:
    try:
        result = item.model.score(columns)
    except Exception as exc:
        if not item.future.done():
            item.future.set_exception(exc)
        return
    if not item.future.done():
        item.future.set_result(result)
