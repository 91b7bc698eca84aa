"""The online endpoint: a raw ASGI app on uvicorn that serves a model bundle (Vertex AI contract).

Routes: ``GET <health>`` (200 once a bundle is loaded and checksum-verified, else 503),
``POST <predict>``, ``GET /model_info``, ``GET /example_request``, ``GET /openapi.json``.
Routes come from ``AIP_HEALTH_ROUTE`` / ``AIP_PREDICT_ROUTE`` (read at startup by the CLI, see
``settings_from_environment``); ``/health`` and ``/predict`` always work too.

Why it is built this way:

- Hot swap. Every request reads ``ModelHolder.current`` once and uses that ``LoadedModel`` to the
  end; a background thread polls the registry's ``aliases.json`` (one ``stat`` per poll), loads
  and verifies a new champion off the request path, then replaces the reference in one
  assignment. In-flight requests finish on the old model and no request ever waits for a load.
- Dynamic batching. Scoring one row costs about as much as scoring a hundred (the transformer's
  per-call overhead dominates), so prediction requests that arrive together are merged into one
  transform/predict call on the event loop, then split again. A lone request is scored at once;
  under load the batch grows with the number of concurrent requests.
- Explanations (SHAP, seconds for many MLP rows) run in one worker thread so that health checks
  and plain predictions stay responsive.
- The prediction log is written by a background thread (queue -> JSON Lines, flushed after every
  write, fsynced every second and on shutdown); the access log has method, path, status, time,
  request id and instance count only: inputs are personal data and stay in the prediction log.
- No environment variable is read at import; ``ServeSettings`` carries everything.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import itertools
import logging
import math
import re
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from components.model.bundle import ModelBundle, bundle_digest, load_bundle, load_reference, verify_bundle
from components.model.calibration import apply_temperature
from components.model.explain import aggregate_to_raw, contributions
from components.model.families import predict_proba
from components.monitoring.prediction_log import BackgroundWriter, PredictionLog, utc_timestamp
from components.serving.schema import (
    Parameters,
    ParsedRequest,
    RequestError,
    RequestSchema,
    build_openapi,
    request_error,
)
from components.shared.config import ConfigError
from components.shared.errors import BundleError, DataValidationError, RegistryError

logger = logging.getLogger("propensity.serving")
access_logger = logging.getLogger("propensity.access")

DEFAULT_PORT = 8080
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PREDICT_ROUTE = "/predict"
MAX_BODY_BYTES = 1_572_864  # 1.5 MiB, Vertex AI's online prediction request limit
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # an oversized body is read (and dropped) up to this much
MAX_BATCH_ROWS = 4096  # rows merged into one transform call
# reference rows (linear SHAP needs only a mean; a blend's MLP member takes 50 of its 1000)
EXPLAIN_BACKGROUND = {"logreg": 1000, "mlp": 50, "blend": 1000}
EXAMPLE_CANDIDATE_ROWS = 20
SWITCH_INTERVAL_SECONDS = 0.001
LOADED_CACHE = 3  # recently served versions kept in memory: a rollback swaps back at once
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
JSON_HEADERS = [(b"content-type", b"application/json")]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs; built by the CLI from flags and the AIP_* environment."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    health_route: str = DEFAULT_HEALTH_ROUTE
    predict_route: str = DEFAULT_PREDICT_ROUTE
    registry_root: Path | None = None  # serve <registry_root>/<model_name> at ``alias``
    model_name: str | None = None
    alias: str = "champion"
    storage_uri: str | None = None  # serve this bundle (gs:// or local directory) instead
    log_dir: Path | None = None
    token: str | None = None
    max_instances: int = 1000
    accept_unknown_fields: bool = False  # ignore fields the training file never had instead of 422
    max_explain_instances: int = 100
    max_body_bytes: int = MAX_BODY_BYTES
    poll_seconds: float = 0.5
    access_log: bool = True


def settings_from_environment(settings: ServeSettings, environ: Mapping[str, str]) -> ServeSettings:
    """Apply the Vertex AI custom-container variables (AIP_*) that are set.

    With ``AIP_HTTP_PORT`` set the server is inside Vertex (or its image) and must listen on
    all interfaces; ``AIP_STORAGE_URI`` names the bundle to serve.
    """
    changes: dict[str, Any] = {}
    if environ.get("AIP_HTTP_PORT"):
        port = environ["AIP_HTTP_PORT"]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"AIP_HTTP_PORT={port!r} is not a TCP port number")
        changes["port"] = int(port)
        changes["host"] = "0.0.0.0"
    if environ.get("AIP_HEALTH_ROUTE"):
        changes["health_route"] = environ["AIP_HEALTH_ROUTE"]
    if environ.get("AIP_PREDICT_ROUTE"):
        changes["predict_route"] = environ["AIP_PREDICT_ROUTE"]
    if environ.get("AIP_STORAGE_URI"):
        changes["storage_uri"] = environ["AIP_STORAGE_URI"]
    return replace(settings, **changes)


# =========================================================================== the loaded model


@dataclass
class Scored:
    """Model output for a batch of rows: raw and calibrated probabilities (and features)."""

    probability: np.ndarray
    calibrated: np.ndarray
    features: np.ndarray


@dataclass
class LoadedModel:
    """A verified bundle plus everything derived from it once, so requests only compute."""

    bundle: ModelBundle
    version: str
    model_name: str
    digest: str
    source: str
    schema: RequestSchema
    background: np.ndarray
    raw_threshold: float
    example: dict[str, Any]
    routes: tuple[str, str] = (DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE)
    max_explain_instances: int = 100
    token_required: bool = False
    loaded_at: str = field(default_factory=utc_timestamp)
    encoder: dict[str, Any] = field(default_factory=dict)  # compiled or not, and why (model info)

    @property
    def threshold(self) -> float:
        return float(self.bundle.threshold)

    # ------------------------------------------------------------------ scoring

    def score(self, columns: dict[str, Sequence[Any]]) -> Scored:
        """Transform with the bundle's own transformer, predict, apply the temperature."""
        features = self.bundle.transformer.transform(self.schema.model_arrays(columns))
        probability = predict_proba(self.bundle.model, features)
        calibrated = apply_temperature(probability, self.bundle.temperature)
        return Scored(probability, calibrated, features)

    def explain(self, features: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Top-k SHAP contributions per row by raw input column, in the model's log-odds.

        ``base_value + sum(all contributions) == logit(probability)`` (the model's own
        probability; the temperature divides both sides for the calibrated one).
        """
        bundle = self.bundle
        base, values = contributions(bundle.model, bundle.family, features, self.background)
        names, raw = aggregate_to_raw(values, bundle.feature_names, bundle.source_columns)
        order = np.argsort(-np.abs(raw), axis=1, kind="stable")[:, :top_k]
        return [
            {
                "base_value": float(base[i]),
                "contributions": {names[j]: float(raw[i, j]) for j in order[i]},
            }
            for i in range(len(raw))
        ]

    def predictions(
        self, scored: Scored, params: Parameters, explanations: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The response items. The label is the same decision whichever scale is served: the
        bundle threshold was chosen on calibrated probabilities, and with ``use_calibration``
        false it is mapped through the (monotone) temperature onto the raw scale.
        """
        labels = (scored.calibrated >= self.threshold).astype(int).tolist()
        raw = scored.probability.tolist()
        if params.use_calibration:
            calibrated, threshold = scored.calibrated.tolist(), self.threshold
        else:
            calibrated, threshold = [None] * len(raw), self.raw_threshold
        version = self.version
        items = [
            {
                "probability": p,
                "calibrated_probability": c,
                "label": label,
                "threshold": threshold,
                "model_version": version,
            }
            for p, c, label in zip(raw, calibrated, labels, strict=True)
        ]
        for item, explanation in zip(items, explanations or [], strict=False):
            item["explanation"] = explanation
        return items

    def check_explain(self, parsed: ParsedRequest) -> None:
        n = len(parsed.instances)
        if parsed.parameters.explain and n > self.max_explain_instances:
            raise request_error(
                422,
                "instances",
                f"has {n} instances; with parameters.explain at most {self.max_explain_instances}",
            )

    def respond(self, body: bytes) -> tuple[ParsedRequest, Scored, bytes]:
        """The whole predict route without HTTP or batching (also the in-process benchmark)."""
        parsed = self.schema.parse(body)
        self.check_explain(parsed)
        scored = self.score(parsed.columns)
        explanations = (
            self.explain(scored.features, parsed.parameters.top_k) if parsed.parameters.explain else None
        )
        items = self.predictions(scored, parsed.parameters, explanations)
        return parsed, scored, orjson.dumps({"predictions": items})

    # ------------------------------------------------------------------ documents

    def info(self) -> dict[str, Any]:
        bundle = self.bundle
        calibration = dict(bundle.extra.get("calibration") or {})
        return {
            "model_name": self.model_name,
            "version": self.version,
            "family": bundle.family,
            "bundle_digest": self.digest,
            "source": self.source,
            "created_at": bundle.created_at,
            "loaded_at": self.loaded_at,
            "code_version": bundle.code_version,
            "metrics": bundle.metrics,
            "threshold": self.threshold,
            "raw_threshold": self.raw_threshold,
            "calibration": {
                "method": "temperature scaling",
                "temperature": float(bundle.temperature),
                "kept": calibration.get("kept", bundle.temperature != 1.0),
                "reason": calibration.get("reason", ""),
            },
            "encoder": self.encoder,
            "input_schema": {
                "fields": self.schema.describe_fields(),
                "id_columns": self.schema.id_columns,
                "max_instances": self.schema.max_instances,
                "max_explain_instances": self.max_explain_instances,
            },
            "explanation": {
                "space": "log-odds of the model probability (before the temperature)",
                "method": {"xgboost": "TreeSHAP", "logreg": "linear SHAP"}.get(
                    bundle.family, "permutation SHAP"
                ),
                "background_rows": len(self.background),
            },
            "library_versions": bundle.library_versions,
            "library_version_mismatches": bundle.version_mismatches(),
        }

    def example_request(self) -> dict[str, Any]:
        return {
            "instances": [self.example],
            "parameters": {"explain": False, "top_k": 5, "use_calibration": True},
        }

    def openapi(self) -> dict[str, Any]:
        return build_openapi(
            self.schema,
            title=f"propensity endpoint: {self.model_name}",
            version=self.version,
            routes=self.routes,
            example=self.example_request(),
            max_explain_instances=self.max_explain_instances,
            token_required=self.token_required,
        )


# =========================================================================== loading


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p) - math.log1p(-p)


def raw_threshold(threshold: float, temperature: float) -> float:
    """The model-probability threshold equivalent to ``threshold`` on calibrated probabilities.

    calibrated = sigmoid(logit(p) / T) >= t  <=>  p >= sigmoid(T * logit(t)).
    """
    return 1.0 / (1.0 + math.exp(-temperature * _logit(threshold)))


def _compile_encoder(bundle: ModelBundle, directory: Path) -> dict[str, Any]:
    """Serve with the transformer's fitted steps compiled to numpy (components.model.compiled_encoder),
    or, when they cannot be compiled, with the steps themselves and a log line saying why."""
    from components.model.compiled_encoder import ENCODER_VERSION

    reason = bundle.transformer.use_compiled_encoder()
    if reason is None:
        return {"compiled": True, "version": ENCODER_VERSION}
    logger.warning("bundle %s: feature steps not compiled (%s); serving with scikit-learn", directory, reason)
    return {"compiled": False, "reason": reason}


def _reference(directory: Path) -> Any:
    """The bundle's reference sample, or None for a bundle written without one."""
    try:
        return load_reference(directory)
    except BundleError:
        return None


def _background(bundle: ModelBundle, reference: Any) -> np.ndarray:
    """Transformed reference rows for SHAP, computed once per load (xgboost needs none)."""
    rows = EXPLAIN_BACKGROUND.get(bundle.family, 0)
    if not rows or reference is None or not len(reference):
        return np.empty((0, len(bundle.feature_names)))
    sample = reference if len(reference) <= rows else reference.sample(n=rows, random_state=0)
    return bundle.transformer.transform(sample)


def _registry_metadata(directory: Path) -> dict[str, Any]:
    path = directory / "metadata.json"
    try:
        return orjson.loads(path.read_bytes()) if path.is_file() else {}
    except (OSError, orjson.JSONDecodeError):
        return {}


def load_model(
    directory: Path,
    settings: ServeSettings,
    version: str | None = None,
    model_name: str | None = None,
) -> LoadedModel:
    """Verify and load a bundle directory into a ``LoadedModel`` (raises ``BundleError``).

    The name is ``model_name`` (a registry source knows it), else the bundle's own (registry
    metadata, then the training config), else ``settings.model_name``.
    """
    directory = Path(directory)
    bundle = load_bundle(directory)  # checksums first, allow-listed types only
    encoder = _compile_encoder(bundle, directory)
    reference = _reference(directory)
    meta = _registry_metadata(directory)
    digest = bundle_digest(directory)
    schema = RequestSchema.from_bundle(bundle, settings.max_instances, settings.accept_unknown_fields)
    candidates = [] if reference is None else reference.head(EXAMPLE_CANDIDATE_ROWS).to_dict("records")
    background = _background(bundle, reference)
    if len(background) == 0 and bundle.family != "xgboost":
        logger.warning("bundle %s has no reference data: explanations use a zero background", directory)
        background = np.zeros((1, len(bundle.feature_names)))
    return LoadedModel(
        bundle=bundle,
        version=version or str(meta.get("version") or f"sha256-{digest[:12]}"),
        model_name=model_name
        or str(meta.get("model_name") or bundle.extra.get("model_name") or settings.model_name or "model"),
        digest=digest,
        source=str(directory),
        schema=schema,
        background=background,
        encoder=encoder,
        raw_threshold=raw_threshold(float(bundle.threshold), float(bundle.temperature)),
        example=schema.example_instance(candidates, bundle.extra.get("reference_stats") or {}),
        routes=(settings.health_route, settings.predict_route),
        max_explain_instances=settings.max_explain_instances,
        token_required=bool(settings.token),
    )


class RegistrySource:
    """The version an alias of a registry model points at, noticed with one ``stat`` per poll."""

    def __init__(self, root: Path, model_name: str, alias: str = "champion") -> None:
        from components.registry.local import LocalRegistry

        self.registry = LocalRegistry(root)
        self.model_name = model_name
        self.alias = alias
        self.aliases_file = Path(root) / model_name / "aliases.json"
        self._signature: tuple[int, int, int] | None = None
        self._ref: str | None = None

    def current_ref(self) -> str | None:
        try:
            st = self.aliases_file.stat()
        except FileNotFoundError:
            self._signature, self._ref = None, None
            return None
        signature = (st.st_mtime_ns, st.st_ino, st.st_size)
        if signature != self._signature:
            self._ref = self.registry.aliases(self.model_name).get(self.alias)
            self._signature = signature
        return self._ref

    def directory(self, ref: str) -> Path:
        return self.registry.resolve(self.model_name, ref)

    def describe(self) -> str:
        return f"registry {self.registry.root} model {self.model_name!r} alias {self.alias!r}"


class StaticSource:
    """One bundle (a local directory, or a gs:// prefix downloaded once): never changes."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._local: Path | None = None

    def current_ref(self) -> str | None:
        return self.uri

    def directory(self, ref: str) -> Path:
        if self._local is None:
            if ref.startswith("gs://"):
                from components.shared.gcs import localize  # google-cloud-storage only when needed

                self._local = Path(localize(ref))
            else:
                self._local = Path(ref)
        return self._local

    def describe(self) -> str:
        return f"bundle {self.uri}"


Source = RegistrySource | StaticSource


class ModelHolder:
    """Owns ``current``: loads the source's bundle in a background thread and swaps it in.

    A failed load (corrupted bundle, missing version) leaves the previous model serving; the
    same reference is retried only after ``retry_seconds`` so a broken champion does not make
    the poller spin.
    """

    def __init__(self, source: Source, settings: ServeSettings, retry_seconds: float = 10.0) -> None:
        self.source = source
        self.settings = settings
        self.retry_seconds = retry_seconds
        self.current: LoadedModel | None = None
        self.current_ref: str | None = None
        self.last_error: str | None = None
        self._failed: dict[str, float] = {}
        self._cache: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_logged = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # never let the watcher die: the server keeps its current model
                logger.exception("model watcher: unexpected error")
            if isinstance(self.source, StaticSource) and self.current is not None:
                return  # a fixed bundle never changes: stop polling
            self._stop.wait(self.settings.poll_seconds)

    def check(self) -> bool:
        """Load and swap in the source's current bundle if it changed; True when swapped."""
        ref = self.source.current_ref()
        if ref is None and self.current is None and not self._waiting_logged:
            self._waiting_logged = True
            logger.warning(
                "nothing to serve yet: %s has no version (train and deploy one, e.g. `propensity run`);"
                " health answers 503 until it appears",
                self.source.describe(),
            )
        if ref is None or ref == self.current_ref:
            return False
        if time.monotonic() - self._failed.get(ref, -math.inf) < self.retry_seconds:
            return False
        started = time.perf_counter()
        try:
            loaded = self._load(ref)
        except (BundleError, RegistryError, OSError, ValueError) as exc:
            self._failed[ref] = time.monotonic()
            self.last_error = f"could not load {ref}: {exc}"
            logger.error("model %s: %s", self.source.describe(), self.last_error)
            return False
        previous = self.current.version if self.current else None
        self.current, self.current_ref, self.last_error = loaded, ref, None  # the swap
        self._failed.pop(ref, None)
        _settle_garbage_collector()
        logger.info(
            "serving %s %s (%s) in %.2fs%s",
            loaded.model_name,
            loaded.version,
            loaded.bundle.family,
            time.perf_counter() - started,
            f", replacing {previous}" if previous else "",
        )
        return True

    def _load(self, ref: str) -> LoadedModel:
        directory = self.source.directory(ref)
        key = (str(directory), bundle_digest(directory))
        if key in self._cache:  # registry versions are immutable: a rollback needs no reload
            self._cache.move_to_end(key)
            verify_bundle(directory)  # but re-check the files' checksums before serving them again
            return self._cache[key]
        name = self.source.model_name if isinstance(self.source, RegistrySource) else None
        loaded = load_model(directory, self.settings, model_name=name)
        self._cache[key] = loaded
        while len(self._cache) > LOADED_CACHE:
            self._cache.popitem(last=False)
        return loaded


def _settle_garbage_collector() -> None:
    """Collect, then freeze every live object (the models) out of the collector's scans.

    A full collection walks every tracked object: about 200k with a model loaded, 0.1-0.2 s with
    the GIL held, and it would hit random requests. Frozen objects are never scanned, so routine
    collections only see request garbage. Runs after each load (startup or swap), where a pause
    is expected anyway; unfreezing first lets a model evicted from the cache be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# =========================================================================== prediction log


@dataclass
class _LogEntry:
    request_id: str
    timestamp: str
    model: LoadedModel
    instances: list[dict[str, Any]]
    predictions: list[dict[str, Any]]


def log_records(entry: _LogEntry) -> list[dict[str, Any]]:
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


# =========================================================================== batching


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


# =========================================================================== the ASGI app


class ClientDisconnected(Exception):
    """The client went away before sending its whole body."""


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers") or ())


def _json(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


class ServingApp:
    """The ASGI application (raw ASGI: the request path has no framework layers)."""

    def __init__(self, settings: ServeSettings, source: Source | None = None) -> None:
        self.settings = settings
        self.source = source if source is not None else make_source(settings)
        self.holder = ModelHolder(self.source, settings)
        self.log_writer: BackgroundWriter | None = None
        if settings.log_dir is not None:
            self.log_writer = BackgroundWriter(PredictionLog(settings.log_dir), expand=log_records)
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
        if params.explain:
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
            self.log_writer.put(_LogEntry(request_id, timestamp, model, parsed.instances, items))
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


def limit_threads() -> None:
    """One BLAS and one OpenMP thread per call: requests are small matrices, where more threads
    only spin and contend for two cores (an xgboost DMatrix built with the default all-cores
    OpenMP setting measured 15 ms against 0.2 ms with one thread, per explained row)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception:  # an optional optimisation; never fail start-up for it
        logger.debug("could not limit BLAS/OpenMP threads", exc_info=True)


def make_source(settings: ServeSettings) -> Source:
    if settings.storage_uri:
        return StaticSource(settings.storage_uri)
    if settings.registry_root is None or not settings.model_name:
        raise RegistryError("serve needs a bundle (AIP_STORAGE_URI / --bundle) or a registry and model name")
    return RegistrySource(settings.registry_root, settings.model_name, settings.alias)


def configure_logging(level: str = "INFO") -> None:
    """Plain one-line logs on stderr (what Cloud Logging ingests from a container)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both; shutdown drains the prediction log)."""
    import uvicorn

    app = ServingApp(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # ours (propensity.access) has no client address and no inputs
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
        backlog=1024,
    )
    uvicorn.Server(config).run()
