"""A loopback Vertex AI API for the tests: the REST v1 JSON surface this project calls, in memory.

The real, unpatched ``google-cloud-aiplatform`` SDK talks to it over its REST transport::

    with running_vertex_api() as api:
        api.init_sdk()   # aiplatform.init(api_endpoint="http://127.0.0.1:PORT", api_transport="rest",
                         #                 credentials=AnonymousCredentials(), project=, location=)

(an ``api_endpoint`` with an ``http://`` scheme is kept as it is by the generated REST transports:
``rest_base.py`` only prefixes ``https://`` when the host has no scheme).

What is served, and the rules it follows (Google's documented behaviour, checked where it matters):

* **Models** (``ModelService``): ``models:upload`` (a long-running operation whose response names
  the model and its ``modelVersionId``; ``parentModel`` adds version N+1 of that model; without it a
  new model with version 1), ``models/{id}`` and ``models/{id}@{version|alias}`` get, ``models``
  list (one entry per model, at its default version), ``models/{id}:listVersions`` and
  ``:mergeVersionAliases``. Version aliases are unique within a model: giving a version an alias
  another version holds moves it. The default version is the one holding the alias ``default``
  (the SDK adds it to ``versionAliases`` for ``is_default_version=True``; a model's first version
  always gets it). Aliases must match ``[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]`` and must not look
  like a version id; labels follow GCP's label rules.
  ``models/{id}@{version}/evaluations:import`` and the ``evaluations`` list keep each version's
  model evaluations (``metricsSchemaUri`` and ``metrics`` required).
* **Endpoints** (``EndpointService``): create (an operation), get, list, ``:deployModel`` and
  ``:undeployModel`` (operations). A traffic split, when given, must sum to 100 and name only
  deployed models (``"0"`` is the model being deployed); a model with a container spec needs
  ``dedicatedResources``; a deployed model that would keep traffic cannot be undeployed; undeploying
  the last model empties the split; a 0% deployment is kept, serving nothing.
* **Operations**: every operation is answered not-done at first and done on its
  ``done_after_polls``-th get (``GET .../operations/{id}`` under any parent), as Vertex does.
* **Pipeline jobs** (``PipelineService``): create (``pipelineJobId`` or a generated id; 409 when
  the id exists; its ``system.PipelineRun`` metadata context in ``jobDetail``), get, which moves the
  job to ``pipeline_outcome`` after ``pipeline_polls`` gets.
* **Metadata** (what Experiments logging calls): ``metadataStores`` create (an operation) and get;
  ``contexts`` / ``executions`` / ``artifacts`` create (409 on an existing id), get, list, patch;
  ``contexts/{id}:addContextChildren`` and ``:addContextArtifactsAndExecutions``.
* **Lists**: ``filter`` (``display_name="x"``, ``labels.key="v"``, ``labels.key:*``, joined by
  ``AND``; anything else is a 400, so a query this API does not understand never matches silently),
  ``pageSize`` (capped by ``page_size``) and ``pageToken``.
* **Errors** in Google's JSON error format: ``{"error": {"code", "message", "status"}}``; an unknown
  route answers 404 ``NOT_FOUND`` naming the method and path. ``fail(...)`` injects errors.
* **Request log**: ``requests`` keeps every call (method, path, query, JSON body, status).

To extend it (e.g. Vertex AI Experiments' metadataStores), add routes with :meth:`VertexApi.route`:
a method, a path template whose ``{name}`` parts match one path segment, and a handler that takes
``(call, **segments)`` and returns ``(status, body)``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.loopback import answer_json, serve_on_loopback, stop_server

Json = dict[str, Any]
Answer = tuple[int, Json]
Handler = Callable[..., Answer]

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}
DEFAULT = "default"  # the alias of a model's default version (the SDK sends it on upload)
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
_TERM_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(=|:)\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*$')
_FIELD_NAMES = {"display_name": "displayName", "displayName": "displayName"}
_PIPELINE_DONE = {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}
_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."


class ApiError(Exception):
    """Answered as Google's error JSON with this HTTP code."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or _STATUS.get(code, "UNKNOWN")

    def body(self) -> Json:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Call:
    """One request as the API saw it (``body`` is the parsed JSON, {} without one)."""

    method: str
    path: str
    query: dict[str, str]
    body: Json
    status: int = 0

    @property
    def verb(self) -> str:
        """The custom method (``upload``, ``deployModel``...) or the collection/resource kind."""
        last = self.path.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else last


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    template: str


@dataclass
class _Fault:
    method: str
    path_contains: str
    code: int
    times: int
    hits: int = 0


@dataclass
class VertexApi:
    """The in-memory API (see the module docstring). Start it with :func:`running_vertex_api`."""

    project: str = "proj"
    location: str = "europe-west4"
    page_size: int = 100  # the most a list answers per page (pageSize asks for fewer)
    done_after_polls: int = 1
    pipeline_polls: int = 1
    pipeline_outcome: str = "PIPELINE_STATE_SUCCEEDED"
    requests: list[Call] = field(default_factory=list)
    models: dict[str, Json] = field(default_factory=dict)  # model id -> {"versions": {id: Model}, ...}
    endpoints: dict[str, Json] = field(default_factory=dict)
    operations: dict[str, Json] = field(default_factory=dict)
    pipeline_jobs: dict[str, Json] = field(default_factory=dict)
    evaluations: dict[str, list[Json]] = field(default_factory=dict)  # "ID@VERSION" -> evaluations
    metadata: dict[str, Json] = field(default_factory=dict)  # resource name -> store/context/...
    server: ThreadingHTTPServer | None = None
    _routes: list[_Route] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._add_model_routes()
        self._add_endpoint_routes()
        self._add_operation_routes()
        self._add_metadata_routes()

    # ------------------------------------------------------------------ extension point

    def route(self, method: str, template: str, handler: Handler, version: str = "v1") -> None:
        """Serve ``method template`` with ``handler(call, **segments) -> (status, body)``.

        ``{name}`` matches one path segment without ``:`` (``{name...}``: with it). Templates are
        relative to ``/<version>/projects/{project}/locations/{location}/``. Later routes win.
        """
        base = f"/{version}/projects/{{project}}/locations/{{location}}/"
        full = base + template.lstrip("/")
        regex = ""
        for part in re.split(r"(\{[a-z_]+\.{0,3}\})", full):
            if part.startswith("{"):
                name = part.strip("{}.")
                regex += f"(?P<{name}>[^/]+)" if part.endswith("...}") else f"(?P<{name}>[^/:]+)"
            else:
                regex += re.escape(part)
        self._routes.insert(0, _Route(method.upper(), re.compile(f"^{regex}$"), handler, full))

    def next_id(self) -> str:
        return str(next(self._ids))

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    # ------------------------------------------------------------------ test controls

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def init_sdk(self, **kwargs: Any) -> None:
        """``aiplatform.init`` pointed at this API (the real SDK, REST transport, no credentials)."""
        from google.cloud import aiplatform

        aiplatform.init(**{**self.sdk_init_arguments(), **kwargs})

    def sdk_init_arguments(self) -> dict[str, Any]:
        from google.auth.credentials import AnonymousCredentials

        return {
            "project": self.project,
            "location": self.location,
            "api_endpoint": self.url,
            "api_transport": "rest",
            "credentials": AnonymousCredentials(),
        }

    def fail(self, method: str, path_contains: str, code: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``code`` (Google's error JSON)."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_contains, code, times))

    def calls(self, verb: str, method: str | None = None) -> list[Call]:
        """Requests whose custom method or last path segment kind is ``verb`` (e.g. ``upload``)."""
        with self._lock:
            return [
                c
                for c in self.requests
                if (c.verb == verb or c.path.endswith(f"/{verb}")) and (method is None or c.method == method)
            ]

    def model_named(self, display_name: str) -> Json:
        (model,) = [m for m in self.models.values() if m["displayName"] == display_name]
        return model

    def aliases(self, display_name: str) -> dict[str, str]:
        """alias -> version id of the model with that display name."""
        model = self.model_named(display_name)
        return {a: v for v, record in model["versions"].items() for a in record["versionAliases"]}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> VertexApi:
        self.server = serve_on_loopback(self._serve)
        return self

    def stop(self) -> None:
        stop_server(self.server)

    # ------------------------------------------------------------------ HTTP

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        path = urllib.parse.unquote(split.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        call = Call(handler.command, path, query, {})
        try:
            call.body = json.loads(raw) if raw.strip() else {}
            status, body = self._dispatch(call)
        except ApiError as error:
            status, body = error.code, error.body()
        except ValueError as error:  # a body that is not JSON
            status, body = 400, ApiError(400, f"invalid JSON payload: {error}").body()
        call.status = status
        with self._lock:
            self.requests.append(call)
        answer_json(handler, status, body)

    def _dispatch(self, call: Call) -> Answer:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.method == call.method
                    and fault.path_contains in call.path
                    and fault.hits < fault.times
                ):
                    fault.hits += 1
                    raise ApiError(fault.code, f"injected by the test ({fault.code})")
            for route in self._routes:
                if route.method != call.method:
                    continue
                match = route.pattern.match(call.path)
                if match is None:
                    continue
                segments = match.groupdict()
                if (segments.pop("project"), segments.pop("location")) != (self.project, self.location):
                    raise ApiError(404, f"project/location of {call.path} does not exist here")
                return route.handler(call, **segments)
        raise ApiError(404, f"no such method: {call.method} {call.path}")

    # ------------------------------------------------------------------ operations

    def operation(self, parent: str, method: str, response: Json, response_type: str) -> Answer:
        """A long-running operation of ``method`` (e.g. ``UploadModel``) under ``parent``.

        Not done when created; done on its ``done_after_polls``-th get, with ``response``.
        """
        name = f"{parent}/operations/{self.next_id()}"
        metadata = {"genericMetadata": {"createTime": now(), "updateTime": now()}}
        record = {
            "name": name,
            "metadata": {"@type": f"{_TYPE}{method}OperationMetadata", **metadata},
            "done": False,
        }
        self.operations[name] = {"op": record, "polls": 0, "response": {"@type": response_type, **response}}
        if self.done_after_polls <= 0:
            self._finish(name)
        return 200, dict(self.operations[name]["op"])

    def _finish(self, name: str) -> None:
        state = self.operations[name]
        state["op"] = {**state["op"], "done": True, "response": state["response"]}

    def _add_operation_routes(self) -> None:
        def get(call: Call, resource: str) -> Answer:
            name = f"{self.parent}/{resource}"
            state = self.operations.get(name)
            if state is None:
                raise ApiError(404, f"operation {name} not found")
            state["polls"] += 1
            if state["polls"] >= self.done_after_polls:
                self._finish(name)
            return 200, state["op"]

        for template in ("operations/{op}", "{kind}/{id}/operations/{op}"):

            def handler(call: Call, _template: str = template, **parts: str) -> Answer:
                resource = _template.format(**parts)
                return get(call, resource)

            # the SDK's REST operations client polls the /ui/ form first (as Vertex serves both)
            self.route("GET", template, handler)
            self.route("GET", template, handler, version="ui")

    # ------------------------------------------------------------------ lists

    def page(self, call: Call, items: list[Json], key: str) -> Answer:
        """Filter ``items`` by ``filter`` and answer one page of them under ``key``."""
        items = [item for item in items if matches(call.query.get("filter", ""), item)]
        size = int(call.query.get("pageSize") or self.page_size)
        size = max(1, min(size, self.page_size))
        start = int(call.query.get("pageToken") or 0)
        body: Json = {key: items[start : start + size]}
        if start + size < len(items):
            body["nextPageToken"] = str(start + size)
        return 200, body

    # ------------------------------------------------------------------ models

    def _add_model_routes(self) -> None:
        self.route("POST", "models:upload", self._upload)
        self.route("GET", "models", lambda call: self.page(call, self._default_versions(), "models"))
        self.route("GET", "models/{model...}", self._get_model)
        self.route("GET", "models/{model}:listVersions", self._list_versions)
        self.route("POST", "models/{model}:mergeVersionAliases", self._merge_aliases)
        self.route("POST", "models/{model}/evaluations:import", self._import_evaluation)
        self.route(
            "GET",
            "models/{model}/evaluations",
            lambda call, model: self.page(
                call, self.evaluations.get(self._version_key(model), []), "modelEvaluations"
            ),
        )

    def _default_versions(self) -> list[Json]:
        return [default_version(m) for m in self.models.values()]

    def _model(self, reference: str) -> Json:
        model_id = reference.split("@", 1)[0].rsplit("/", 1)[-1]
        model = self.models.get(model_id)
        if model is None:
            raise ApiError(404, f"Model {self.parent}/models/{model_id} does not exist.")
        return model

    def version(self, reference: str) -> Json:
        """The Model of ``ID``, ``ID@VERSION`` or ``ID@ALIAS`` (a full resource name works too)."""
        model = self._model(reference)
        wanted = reference.split("@", 1)[1] if "@" in reference else DEFAULT
        if wanted in model["versions"]:
            return model["versions"][wanted]
        for record in model["versions"].values():
            if wanted in record["versionAliases"]:
                return record
        raise ApiError(404, f"Model {model['name']}@{wanted} does not exist.")

    def _get_model(self, call: Call, model: str) -> Answer:
        if ":" in model:
            raise ApiError(404, f"no such method: GET {call.path}")
        return 200, self.version(model)

    def _list_versions(self, call: Call, model: str) -> Answer:
        found = self._model(model)
        versions = [found["versions"][v] for v in sorted(found["versions"], key=int)]
        return self.page(call, versions, "models")

    def _upload(self, call: Call) -> Answer:
        spec = call.body.get("model") or {}
        if not spec.get("displayName"):
            raise ApiError(400, "model.display_name is required")
        container = spec.get("containerSpec") or {}
        if not container.get("imageUri"):
            raise ApiError(400, "model.container_spec.image_uri is required for a custom container")
        if not str(spec.get("artifactUri", "")).startswith("gs://"):
            raise ApiError(400, f"model.artifact_uri must be a gs:// URI, got {spec.get('artifactUri')!r}")
        check_labels(spec.get("labels") or {})
        aliases = list(spec.get("versionAliases") or [])
        check_aliases(aliases)
        parent_model = call.body.get("parentModel")
        if parent_model:
            model = self._model(parent_model)
            if model["displayName"] != spec["displayName"]:
                pass  # Vertex keeps the parent's display name for versions; so do we
            version_id = str(max(int(v) for v in model["versions"]) + 1)
        else:
            model_id = call.body.get("modelId") or self.next_id()
            if model_id in self.models:
                raise ApiError(409, f"Model {self.parent}/models/{model_id} already exists.")
            model = {
                "id": model_id,
                "name": f"{self.parent}/models/{model_id}",
                "displayName": spec["displayName"],
                "versions": {},
                "createTime": now(),
            }
            self.models[model_id] = model
            version_id = "1"
        stamp = now()
        record = {
            **{k: v for k, v in spec.items() if k not in ("versionAliases", "name", "versionId")},
            "name": model["name"],
            "displayName": model["displayName"],
            "versionId": version_id,
            "versionAliases": [],
            "versionCreateTime": stamp,
            "versionUpdateTime": stamp,
            "createTime": model["createTime"],
            "updateTime": stamp,
            "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES", "SHARED_RESOURCES"],
            "etag": uuid.uuid4().hex,
        }
        model["versions"][version_id] = record
        if version_id == "1" and DEFAULT not in aliases:
            aliases.append(DEFAULT)  # a model's first version is always its default
        self._move_aliases(model, version_id, aliases)
        response = {"model": model["name"], "modelVersionId": version_id}
        return self.operation(model["name"], "UploadModel", response, f"{_TYPE}UploadModelResponse")

    @staticmethod
    def _move_aliases(model: Json, version_id: str, aliases: list[str]) -> None:
        """Give ``version_id`` these aliases, taking each from the version that held it."""
        for alias in aliases:
            for record in model["versions"].values():
                if alias in record["versionAliases"]:
                    record["versionAliases"].remove(alias)
            model["versions"][version_id]["versionAliases"].append(alias)

    def _merge_aliases(self, call: Call, model: str) -> Answer:
        record = self.version(model)
        found = self._model(model)
        changes = list(call.body.get("versionAliases") or [])
        added = [a for a in changes if not a.startswith("-")]
        removed = [a[1:] for a in changes if a.startswith("-")]
        check_aliases(added + removed)
        if DEFAULT in removed:
            raise ApiError(400, "the default alias cannot be removed; give it to another version")
        for alias in removed:
            if alias in record["versionAliases"]:
                record["versionAliases"].remove(alias)
        self._move_aliases(found, record["versionId"], added)
        return 200, record

    def _version_key(self, reference: str) -> str:
        """``ID@VERSION`` of a reference to a model version (evaluations belong to one version)."""
        return f"{self._model(reference)['id']}@{self.version(reference)['versionId']}"

    def _import_evaluation(self, call: Call, model: str) -> Answer:
        record = self.version(model)
        evaluation = dict(call.body.get("modelEvaluation") or {})
        if not evaluation.get("metricsSchemaUri") or "metrics" not in evaluation:
            raise ApiError(400, "model_evaluation.metrics_schema_uri and metrics are required")
        evaluation["name"] = f"{record['name']}/evaluations/{self.next_id()}"
        evaluation["createTime"] = now()
        self.evaluations.setdefault(self._version_key(model), []).append(evaluation)
        return 200, evaluation

    # ------------------------------------------------------------------ endpoints

    def _add_endpoint_routes(self) -> None:
        self.route("POST", "endpoints", self._create_endpoint)
        self.route(
            "GET", "endpoints", lambda call: self.page(call, list(self.endpoints.values()), "endpoints")
        )
        self.route("GET", "endpoints/{endpoint}", lambda call, endpoint: (200, self._endpoint(endpoint)))
        self.route("POST", "endpoints/{endpoint}:deployModel", self._deploy)
        self.route("POST", "endpoints/{endpoint}:undeployModel", self._undeploy)
        self.route("POST", "pipelineJobs", self._create_pipeline_job)
        self.route("GET", "pipelineJobs/{job}", self._get_pipeline_job)

    def _endpoint(self, endpoint_id: str) -> Json:
        found = self.endpoints.get(endpoint_id)
        if found is None:
            raise ApiError(404, f"Endpoint {self.parent}/endpoints/{endpoint_id} does not exist.")
        return found

    def _create_endpoint(self, call: Call) -> Answer:
        if not call.body.get("displayName"):
            raise ApiError(400, "endpoint.display_name is required")
        check_labels(call.body.get("labels") or {})
        endpoint_id = call.query.get("endpointId") or self.next_id()
        if endpoint_id in self.endpoints:
            raise ApiError(409, f"Endpoint {self.parent}/endpoints/{endpoint_id} already exists.")
        stamp = now()
        endpoint = {
            **call.body,
            "name": f"{self.parent}/endpoints/{endpoint_id}",
            "deployedModels": [],
            "trafficSplit": {},
            "createTime": stamp,
            "updateTime": stamp,
            "etag": uuid.uuid4().hex,
        }
        self.endpoints[endpoint_id] = endpoint
        return self.operation(endpoint["name"], "CreateEndpoint", endpoint, f"{_TYPE}Endpoint")

    def _deploy(self, call: Call, endpoint: str) -> Answer:
        found = self._endpoint(endpoint)
        spec = dict(call.body.get("deployedModel") or {})
        reference = spec.get("model") or ""
        if not reference:
            raise ApiError(400, "deployed_model.model is required")
        record = self.version(reference)
        if record.get("containerSpec") and not spec.get("dedicatedResources"):
            raise ApiError(400, "Model with a custom container requires dedicated_resources.")
        resources = spec.get("dedicatedResources") or {}
        if resources and not (resources.get("machineSpec") or {}).get("machineType"):
            raise ApiError(400, "dedicated_resources.machine_spec.machine_type is required")
        deployed_id = spec.get("id") or self.next_id()
        split = call.body.get("trafficSplit")
        ids = {d["id"] for d in found["deployedModels"]} | {deployed_id}
        if split:
            split = {deployed_id if k == "0" else k: int(v) for k, v in split.items()}
            check_split(split, ids)
        elif not found["deployedModels"]:
            split = {deployed_id: 100}  # the first model of an endpoint serves everything
        deployed = {
            **spec,
            "id": deployed_id,
            "model": record["name"],
            "modelVersionId": record["versionId"],
            "displayName": spec.get("displayName") or record["displayName"],
            "createTime": now(),
        }
        found["deployedModels"].append(deployed)
        if split is not None:
            found["trafficSplit"] = {k: v for k, v in split.items() if v}
        found["updateTime"] = now()
        return self.operation(
            found["name"], "DeployModel", {"deployedModel": deployed}, f"{_TYPE}DeployModelResponse"
        )

    def _undeploy(self, call: Call, endpoint: str) -> Answer:
        found = self._endpoint(endpoint)
        deployed_id = str(call.body.get("deployedModelId") or "")
        remaining = [d for d in found["deployedModels"] if d["id"] != deployed_id]
        if len(remaining) == len(found["deployedModels"]):
            raise ApiError(404, f"DeployedModel {deployed_id} does not exist on {found['name']}.")
        split = {k: int(v) for k, v in (call.body.get("trafficSplit") or found["trafficSplit"]).items()}
        if not remaining:
            split = {}
        elif split.get(deployed_id):
            raise ApiError(
                400,
                f"DeployedModel {deployed_id} still has {split[deployed_id]}% of the traffic of "
                f"{found['name']}; move it first.",
                "FAILED_PRECONDITION",
            )
        split = {k: v for k, v in split.items() if v}
        if remaining:
            check_split(split, {d["id"] for d in remaining}, allow_empty=True)
        found["deployedModels"] = remaining
        found["trafficSplit"] = split
        found["updateTime"] = now()
        return self.operation(found["name"], "UndeployModel", {}, f"{_TYPE}UndeployModelResponse")

    # ------------------------------------------------------------------ metadata (Experiments)

    def _add_metadata_routes(self) -> None:
        """What ``aiplatform.init(experiment=)``, ``start_run``, ``log_params``/``log_metrics`` call."""
        stores = "metadataStores"
        self.route("POST", stores, self._create_store)
        self.route("GET", stores + "/{store}", lambda call, store: (200, self._metadata(f"{stores}/{store}")))
        for kind in ("contexts", "executions", "artifacts"):
            collection = f"{stores}/{{store}}/{kind}"
            self.route("POST", collection, self._create_metadata(kind))
            self.route("GET", collection, self._list_metadata(kind))
            self.route("GET", collection + "/{item}", self._get_metadata(kind))
            self.route("PATCH", collection + "/{item}", self._patch_metadata(kind))
        contexts = f"{stores}/{{store}}/contexts/{{item}}"
        self.route("POST", contexts + ":addContextChildren", self._add_children)
        self.route("POST", contexts + ":addContextArtifactsAndExecutions", self._add_to_context)

    def _metadata(self, relative: str) -> Json:
        found = self.metadata.get(f"{self.parent}/{relative}")
        if found is None:
            raise ApiError(404, f"{self.parent}/{relative} does not exist.")
        return found

    def _create_store(self, call: Call) -> Answer:
        store_id = call.query.get("metadataStoreId") or "default"
        name = f"{self.parent}/metadataStores/{store_id}"
        if name in self.metadata:
            raise ApiError(409, f"MetadataStore {name} already exists.")
        self.metadata[name] = {**call.body, "name": name, "createTime": now(), "updateTime": now()}
        return self.operation(name, "CreateMetadataStore", self.metadata[name], f"{_TYPE}MetadataStore")

    def _create_metadata(self, kind: str) -> Handler:
        def create(call: Call, store: str) -> Answer:
            self._metadata(f"metadataStores/{store}")
            item = call.query.get(f"{kind[:-1]}Id") or self.next_id()
            name = f"{self.parent}/metadataStores/{store}/{kind}/{item}"
            if name in self.metadata:
                raise ApiError(409, f"{kind[:-1].capitalize()} {name} already exists.")
            if not call.body.get("schemaTitle"):
                raise ApiError(400, f"{kind[:-1]}.schema_title is required")
            stamp = now()
            record = {**call.body, "name": name, "createTime": stamp, "updateTime": stamp, "etag": "1"}
            record.setdefault("metadata", {})
            self.metadata[name] = record
            return 200, record

        return create

    def _list_metadata(self, kind: str) -> Handler:
        def list_(call: Call, store: str) -> Answer:
            prefix = f"{self.parent}/metadataStores/{store}/{kind}/"
            items = [r for n, r in self.metadata.items() if n.startswith(prefix)]
            return self.page(call, items, kind)

        return list_

    def _get_metadata(self, kind: str) -> Handler:
        return lambda call, store, item: (200, self._metadata(f"metadataStores/{store}/{kind}/{item}"))

    def _patch_metadata(self, kind: str) -> Handler:
        def patch(call: Call, store: str, item: str) -> Answer:
            name = f"{self.parent}/metadataStores/{store}/{kind}/{item}"
            if name not in self.metadata:
                if call.query.get("allowMissing") != "true":
                    raise ApiError(404, f"{name} does not exist.")
                self.metadata[name] = {"name": name, "metadata": {}, "createTime": now()}
            record = self.metadata[name]
            mask = [m for m in call.query.get("updateMask", "").split(",") if m]
            for key, value in call.body.items():
                if key == "name" or (mask and key not in mask and not any(m.startswith(key) for m in mask)):
                    continue
                record[key] = {**record.get(key, {}), **value} if key == "metadata" else value
            record["updateTime"] = now()
            return 200, record

        return patch

    def _add_children(self, call: Call, store: str, item: str) -> Answer:
        parent = self._metadata(f"metadataStores/{store}/contexts/{item}")
        for child in call.body.get("childContexts") or []:
            if child not in self.metadata:
                raise ApiError(404, f"Context {child} does not exist.")
            parents = self.metadata[child].setdefault("parentContexts", [])
            if parent["name"] not in parents:
                parents.append(parent["name"])
        return 200, {}

    def _add_to_context(self, call: Call, store: str, item: str) -> Answer:
        context = self._metadata(f"metadataStores/{store}/contexts/{item}")
        for key in ("artifacts", "executions"):
            for name in call.body.get(key) or []:
                if name not in self.metadata:
                    raise ApiError(404, f"{name} does not exist.")
                context.setdefault(f"_{key}", []).append(name)
        return 200, {}

    # ------------------------------------------------------------------ pipeline jobs

    def _create_pipeline_job(self, call: Call) -> Answer:
        job_id = call.query.get("pipelineJobId") or f"pipeline-job-{self.next_id()}"
        if job_id in self.pipeline_jobs:
            raise ApiError(409, f"PipelineJob {self.parent}/pipelineJobs/{job_id} already exists.")
        if not (call.body.get("pipelineSpec") or call.body.get("templateUri")):
            raise ApiError(400, "pipeline_job.pipeline_spec or template_uri is required")
        root = ((call.body.get("runtimeConfig") or {}).get("gcsOutputDirectory")) or ""
        if not root.startswith("gs://"):
            raise ApiError(400, f"runtime_config.gcs_output_directory must be gs://, got {root!r}")
        stamp = now()
        job = {
            **call.body,
            "name": f"{self.parent}/pipelineJobs/{job_id}",
            "state": "PIPELINE_STATE_PENDING",
            "createTime": stamp,
            "updateTime": stamp,
            "jobDetail": {"pipelineRunContext": self._pipeline_run_context(job_id, call.body)},
        }
        self.pipeline_jobs[job_id] = {"job": job, "polls": 0}
        return 200, job

    def _pipeline_run_context(self, job_id: str, job: Json) -> Json:
        """The ``system.PipelineRun`` context Vertex records for every run (Experiments link to it)."""
        store = f"{self.parent}/metadataStores/default"
        self.metadata.setdefault(store, {"name": store, "createTime": now(), "updateTime": now()})
        name = f"{store}/contexts/{job_id}"
        self.metadata[name] = {
            "name": name,
            "displayName": job_id,
            "schemaTitle": "system.PipelineRun",
            "schemaVersion": "0.0.1",
            "metadata": {"labels": job.get("labels") or {}},
            "createTime": now(),
            "updateTime": now(),
            "etag": "1",
        }
        return self.metadata[name]

    def _get_pipeline_job(self, call: Call, job: str) -> Answer:
        state = self.pipeline_jobs.get(job)
        if state is None:
            raise ApiError(404, f"PipelineJob {self.parent}/pipelineJobs/{job} does not exist.")
        state["polls"] += 1
        if state["polls"] >= self.pipeline_polls and state["job"]["state"] not in _PIPELINE_DONE:
            state["job"]["state"] = self.pipeline_outcome
            state["job"]["endTime"] = now()
            if self.pipeline_outcome != "PIPELINE_STATE_SUCCEEDED":
                state["job"]["error"] = {"code": 9, "message": "the pipeline failed (set by the test)"}
        return 200, state["job"]


# ---------------------------------------------------------------------------------------- rules


def default_version(model: Json) -> Json:
    (record,) = [r for r in model["versions"].values() if DEFAULT in r["versionAliases"]]
    return record


def check_labels(labels: dict[str, Any]) -> None:
    if len(labels) > 64:
        raise ApiError(400, f"at most 64 labels, got {len(labels)}")
    for key, value in labels.items():
        if not _LABEL_KEY_RE.match(key) or not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise ApiError(400, f"invalid label {key}={value!r}")


def check_aliases(aliases: list[str]) -> None:
    if len(set(aliases)) != len(aliases):
        raise ApiError(400, f"duplicate version aliases in {aliases}")
    for alias in aliases:
        if not _ALIAS_RE.match(alias) or alias.isdigit():
            raise ApiError(400, f"invalid version alias {alias!r}")


def check_split(split: dict[str, int], deployed: set[str], allow_empty: bool = False) -> None:
    unknown = sorted(set(split) - deployed)
    if unknown:
        raise ApiError(400, f"traffic_split names DeployedModel(s) {unknown} that are not deployed")
    if any(v < 0 or v > 100 for v in split.values()):
        raise ApiError(400, f"traffic_split values must be within 0-100, got {split}")
    total = sum(split.values())
    if not (allow_empty and total == 0) and total != 100:
        raise ApiError(400, f"traffic_split must sum to 100, got {total} ({split})")


def matches(text: str, item: Json) -> bool:
    """Whether ``item`` satisfies a list filter (the subset documented in the module docstring)."""
    if not text.strip():
        return True
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM_RE.match(term)
        if match is None:
            raise ApiError(400, f"Unsupported filter {text!r} (term {term!r})")
        name, operator, raw = match.groups()
        value = json.loads(raw) if raw.startswith('"') else raw
        if name.startswith("labels."):
            labels = item.get("labels") or {}
            key = name[len("labels.") :]
            if operator == ":" and value == "*":
                if key not in labels:
                    return False
            elif operator == "=":
                if labels.get(key) != value:
                    return False
            else:
                raise ApiError(400, f"Unsupported filter {text!r} (term {term!r})")
        elif name in _FIELD_NAMES and operator == "=":
            if item.get(_FIELD_NAMES[name]) != value:
                return False
        else:
            raise ApiError(400, f"Unsupported filter {text!r} (field {name!r})")
    return True


@contextmanager
def running_vertex_api(**settings: Any) -> Iterator[VertexApi]:
    """A started API on a free 127.0.0.1 port; stopped afterwards."""
    api = VertexApi(**settings).start()
    try:
        yield api
    finally:
        api.stop()


@contextmanager
def sdk_on_loopback(**settings: Any) -> Iterator[VertexApi]:
    """A running API with the real SDK initialised against it; the SDK's global state reset after.

    ``aiplatform.init`` and the Experiments tracker are process-wide: resetting them keeps one
    test's project, endpoint or active run out of the next.
    """
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.metadata import metadata

    with running_vertex_api(**settings) as api:
        api.init_sdk()
        try:
            yield api
        finally:
            metadata._experiment_tracker.reset()
            initializer.global_config.__init__()  # type: ignore[misc]
