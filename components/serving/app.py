"""The online endpoint's ASGI app: routing, bodies, authentication, responses, the access log.

Routes: ``GET <health>`` (200 once a bundle is loaded and checksum-verified, else 503),
``POST <predict>``, ``GET /model_info``, ``GET /example_request``, ``GET /openapi.json``.
Routes come from ``AIP_HEALTH_ROUTE`` / ``AIP_PREDICT_ROUTE`` (read at startup by the CLI, see
``components.serving.settings.settings_from_environment``); ``/health`` and ``/predict`` always
work too.

Raw ASGI, so that the request path has no framework layers. The app only routes: scoring is the
``LoadedModel``'s (``model``), merging requests the ``Batcher``'s (``batching``), the model in use
the ``ModelHolder``'s (``sources``). Explanations expected to take over ``INLINE_EXPLAIN_MS``
(SHAP: seconds for many MLP rows) run in one worker thread so that health checks and plain
predictions stay responsive; cheaper ones (a few XGBoost or linear rows) run on the event loop,
where the hand-off to a thread and back would cost more than the explanation. The access log has
method, path, status, time, request id and instance count only: inputs are personal data and stay
in the prediction log (``records``).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from components.monitoring.prediction_log import BackgroundWriter, PredictionLog, utc_timestamp
from components.serving.batching import Batcher
from components.serving.errors import RequestError, request_error
from components.serving.model import LoadedModel, Scored, limit_threads
from components.serving.records import LogEntry, log_records
from components.serving.schema import ParsedRequest
from components.serving.settings import DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE, ServeSettings
from components.serving.sources import ModelHolder, Source, make_source
from components.shared.errors import DataValidationError

logger = logging.getLogger("propensity.serving")
access_logger = logging.getLogger("propensity.access")

DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # an oversized body is read (and dropped) up to this much
SWITCH_INTERVAL_SECONDS = 0.001
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
JSON_HEADERS = [(b"content-type", b"application/json")]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away before sending its whole body."""


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers") or ())


def _json(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def _prediction_log(location: str | Path) -> Any:
    """The local log, or the batched GCS log for a gs:// prefix (a Vertex endpoint's)."""
    if str(location).startswith("gs://"):
        from components.monitoring.gcs_log import GcsPredictionLog  # google-cloud-storage only then

        return GcsPredictionLog(str(location))
    return PredictionLog(location)


class ServingApp:
    """The ASGI application (raw ASGI: the request path has no framework layers)."""

    def __init__(self, settings: ServeSettings, source: Source | None = None) -> None:
        self.settings = settings
        self.source = source if source is not None else make_source(settings)
        self.holder = ModelHolder(self.source, settings)
        self.log_writer: BackgroundWriter | None = None
        if settings.log_dir is not None:
            self.log_writer = BackgroundWriter(_prediction_log(settings.log_dir), expand=log_records)
        self.batcher = Batcher()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")
        self._token = f"Bearer {settings.token}".encode() if settings.token else None
        self._health = {settings.health_route, DEFAULT_HEALTH_ROUTE}
        self._predict = {settings.predict_route, DEFAULT_PREDICT_ROUTE}
        self._documents: dict[str, Callable[[LoadedModel], Any]] = {
            "/model_info": LoadedModel.info,
            "/example_request": LoadedModel.example_request,
            "/openapi.json": LoadedModel.openapi,
        }
        self._request_id = RequestIds()
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def startup(self) -> None:
        if self._started:
            return
        self._started = True
        limit_threads()
        # Background threads (model loading, the prediction log, explanations) hand the GIL back
        # to the event loop after 1 ms instead of Python's default 5 ms: a cap on how long they
        # can delay a plain prediction.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        if self.log_writer is not None:
            self.log_writer.start()
        self.holder.start()
        logger.info("propensity endpoint: %s", self.source.describe())

    def shutdown(self) -> None:
        self.holder.stop()
        self.executor.shutdown(wait=True)
        if self.log_writer is not None:
            self.log_writer.close()
            logger.info("prediction log: %d record(s) written", self.log_writer.written)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ requests

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        request_id = self._request_id(headers)
        path, method = scope["path"], scope["method"]
        state = {"instances": 0}
        try:
            status, body, extra = await self._route(path, method, headers, receive, request_id, state)
        except RequestError as exc:
            status, body, extra = exc.status, _json(exc.to_body()), []
        except DataValidationError as exc:  # the transformer refused a value validation let through
            status, body, extra = 422, _json({"error": str(exc)}), []
        except ClientDisconnected:
            return
        except Exception:
            logger.exception("internal error in %s %s (request %s)", method, path, request_id)
            status, extra = 500, []
            body = _json({"error": "internal server error", "request_id": request_id})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *JSON_HEADERS,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        if self.settings.access_log:
            access_logger.info(
                "%s %s %d %.2fms id=%s n=%d",
                method,
                path,
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
                state["instances"],
            )

    async def _route(
        self,
        path: str,
        method: str,
        headers: dict[bytes, bytes],
        receive: Receive,
        request_id: str,
        state: dict[str, int],
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if path in self._health:
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD")
            return self._health_response()
        is_predict = path in self._predict
        if not is_predict and path not in self._documents:
            return 404, _json({"error": f"no route {path}"}), []
        if self._token is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self._token
        ):
            return 401, _json({"error": "missing or wrong bearer token"}), [(b"www-authenticate", b"Bearer")]
        model = self.holder.current
        if is_predict:
            if method != "POST":
                return _not_allowed("POST")
            if model is None:
                return 503, _json({"error": "no model loaded yet"}), [(b"retry-after", b"1")]
            body = await self._read_body(headers, receive)
            return await self._predict_response(model, body, request_id, state)
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        if model is None:
            return 503, _json({"error": "no model loaded yet"}), [(b"retry-after", b"1")]
        return 200, _json(self._documents[path](model)), []

    def _health_response(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        model = self.holder.current
        if model is None:
            status = {"status": "loading", "source": self.source.describe(), "error": self.holder.last_error}
            return 503, _json(status), []
        status = {
            "status": "ok",
            "model_name": model.model_name,
            "version": model.version,
            "bundle_digest": model.digest,
            "error": self.holder.last_error,  # e.g. a newer champion that failed to load
        }
        return 200, _json(status), []

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        """The request body, refusing (413) one over the limit before buffering all of it."""
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(receive)
            raise _too_large(int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body"):
                    await _drain(receive)
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _predict_response(
        self, model: LoadedModel, body: bytes, request_id: str, state: dict[str, int]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        timestamp = utc_timestamp()
        parsed = model.schema.parse(body)
        state["instances"] = len(parsed.instances)
        model.check_explain(parsed)
        params = parsed.parameters
        if params.explain and model.explains_inline(len(parsed.instances)):
            scored, explanations = _score_and_explain(model, parsed)
        elif params.explain:
            loop = asyncio.get_running_loop()
            scored, explanations = await loop.run_in_executor(
                self.executor, _score_and_explain, model, parsed
            )
        else:
            scored, explanations = (
                await self.batcher.submit(model, parsed.columns, len(parsed.instances)),
                None,
            )
        items = model.predictions(scored, params, explanations)
        if self.log_writer is not None:
            self.log_writer.put(LogEntry(request_id, timestamp, model, parsed.instances, items))
        extra = [(b"x-ignored-fields", ignored_fields_header(parsed.ignored))] if parsed.ignored else []
        return 200, orjson.dumps({"predictions": items}), extra


IGNORED_HEADER_LIMIT = 1024  # bytes: proxies and load balancers refuse long headers


def ignored_fields_header(names: Sequence[str]) -> bytes:
    """The ignored field names, percent-encoded (a client's key may hold commas or newlines),
    comma-separated, cut to IGNORED_HEADER_LIMIT with a count of the rest."""
    from urllib.parse import quote

    kept: list[str] = []
    size = 0
    for name in names:
        encoded = quote(name, safe="")
        if size + len(encoded) + 1 > IGNORED_HEADER_LIMIT:
            kept.append(f"...{len(names) - len(kept)}-more")
            break
        kept.append(encoded)
        size += len(encoded) + 1
    return ",".join(kept).encode("ascii")


def _score_and_explain(model: LoadedModel, parsed: ParsedRequest) -> tuple[Scored, list[dict[str, Any]]]:
    scored = model.score(parsed.columns)
    return scored, model.explain(scored.features, parsed.parameters.top_k)


class RequestIds:
    """Request ids: the caller's X-Request-ID when it is a short safe token, else a new one.

    New ids are a random per-process prefix plus a counter: unique across restarts without a
    uuid4 (an os.urandom system call) on every request.
    """

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)

    def __call__(self, headers: dict[bytes, bytes]) -> str:
        given = headers.get(b"x-request-id")
        if given:
            text = given.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
        return f"{self._prefix}-{next(self._counter):x}"


def _not_allowed(allow: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return 405, _json({"error": f"method not allowed (allowed: {allow})"}), [(b"allow", allow.encode())]


def _too_large(size: int, limit: int) -> RequestError:
    return request_error(413, "", f"the body has {size} bytes; the limit is {limit} bytes")


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body (up to a cap) so the client sees the answer."""
    seen = 0
    while seen < DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return
