"""The endpoint's request contract, derived from a bundle's raw input schema.

One ``RequestSchema`` per loaded bundle decides what a valid request is, turns a valid one into
columns for the bundle's transformer, writes the OpenAPI description of exactly those rules and
builds an example body. Keeping the three together is what keeps the spec honest: schemathesis
fuzzes the server from the spec, so a rule enforced here but missing from the spec (or the other
way round) shows up as a test failure.

Rules (each violation is a ``RequestError`` whose message names the instance index and field):

- body: a JSON object with ``instances`` (1 to ``max_instances`` objects) and optional
  ``parameters``; nothing else. Invalid JSON is 400, a body over the size limit 413 (decided by the
  server, which reads the body), every other violation 422.
- instance fields: the bundle's raw input columns and id columns. Other columns of the training file
  (the ones the dataset spec drops, and the target) are accepted and ignored, so rows taken straight
  from that file can be posted; the response names them in ``X-Ignored-Fields``. Any other field
  is refused as unknown (a typo), unless the server accepts unknown fields (``accept_unknown``).
  A field is required unless training saw nulls in it (``nullable``); nullable fields may be
  null or left out (both mean missing, imputed as in training). Id columns, and schema columns
  the transformer does not read (e.g. dropped as constant), are optional.
- types: number = JSON number, integer = JSON number with an integral value, string = JSON
  string (unseen categories accepted: the encoder maps them), boolean = true/false, date = an ISO
  8601 date or date-time, or dd-mm-yyyy (mm-dd-yyyy when the dataset is not day-first), between
  1678 and 2261 (the range pandas can represent). Numbers are bounded by +-1e15 so that derived
  sums and the model stay finite.
- parameters: ``explain`` (bool), ``top_k`` (1..1000), ``use_calibration`` (bool).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson

MAX_ABS_NUMBER = 1e15
MAX_TOP_K = 1000
MAX_LISTED_ERRORS = 20
DATE_MIN_YEAR, DATE_MAX_YEAR = 1700, 2261  # inside what pandas' datetime64[ns] can hold
KINDS = ("number", "integer", "string", "boolean", "date", "id")
# Accepted date shapes, written once and used both to validate and as the OpenAPI ``pattern``
# (Python and ECMA regex alike). Calendar validity (no 30 February) is checked on top.
_YEAR = r"(?:1[7-9]\d\d|20\d\d|21\d\d|22[0-5]\d|226[01])"
_MONTH, _DAY = r"(?:0[1-9]|1[0-2])", r"(?:0[1-9]|[12]\d|3[01])"
_TIME = r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?"
_ISO = rf"{_YEAR}-{_MONTH}-{_DAY}{_TIME}"
_DMY = r"(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.]" + _YEAR
_MDY = r"(?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.]" + _YEAR


def date_pattern(dayfirst: bool) -> str:
    return f"^(?:{_ISO}|{_DMY if dayfirst else _MDY})$"


_ISO_DATE = re.compile(f"^{_ISO}$")
_NUMERIC_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")
_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


class RequestError(ValueError):
    """A request the server refuses: HTTP status, one readable message and per-field details."""

    def __init__(self, status: int, details: list[dict[str, Any]]) -> None:
        self.status = status
        self.details = details
        shown = [_detail_text(d) for d in details[:MAX_LISTED_ERRORS]]
        more = len(details) - len(shown)
        super().__init__("; ".join(shown) + (f"; and {more} more" if more > 0 else ""))

    @property
    def message(self) -> str:
        return str(self)

    def to_body(self) -> dict[str, Any]:
        return {"error": self.message, "errors": self.details[:MAX_LISTED_ERRORS]}


def request_error(status: int, field: str, message: str, instance: int | None = None) -> RequestError:
    return RequestError(status, [_detail(field, message, instance)])


def _detail(field: str, message: str, instance: int | None = None) -> dict[str, Any]:
    return {"instance": instance, "field": field, "message": message}


def _detail_text(detail: dict[str, Any]) -> str:
    where = detail["field"]
    if detail.get("instance") is not None:
        where = f"instances[{detail['instance']}].{where}" if where else f"instances[{detail['instance']}]"
    return f"{where}: {detail['message']}" if where else detail["message"]


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages (never the value: it may be personal)."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- fields


@dataclass(frozen=True)
class FieldSpec:
    """One instance field: its kind, whether it may be null/absent, and known categories."""

    name: str
    kind: str
    nullable: bool
    used: bool = True  # read by the transformer (False: accepted and logged, not a model input)
    categories: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return not self.nullable


@dataclass(frozen=True)
class Parameters:
    explain: bool = False
    top_k: int = 5
    use_calibration: bool = True


_BASE_TYPES: dict[str, frozenset[type]] = {
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
    "date": frozenset({str}),
    "id": frozenset({str, int}),
}
_EXPECTED: dict[str, str] = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "date": "a date string (YYYY-MM-DD, ISO date-time or DD-MM-YYYY)",
    "id": "a string or an integer",
}


def _fast_types(spec: FieldSpec) -> frozenset[type]:
    """Python types a column may hold to pass without a per-value look (the common, fast path)."""
    base = _BASE_TYPES[spec.kind]
    return base | {type(None)} if spec.nullable else base


def _column_ok(spec: FieldSpec, values: tuple[Any, ...], fast: frozenset[type], dayfirst: bool) -> bool:
    """Whether a whole column passes: its value types (one C-level pass), number ranges (one
    min/max) and dates (cached parse); a column that fails is then checked value by value."""
    if not set(map(type, values)) <= fast:
        return False
    if spec.kind in ("number", "integer"):
        present = [v for v in values if v is not None] if spec.nullable else values
        return not present or (max(present) <= MAX_ABS_NUMBER and min(present) >= -MAX_ABS_NUMBER)
    if spec.kind == "date":
        return not any(_date_problem(v, dayfirst) for v in values if v is not None)
    return True


def _check_value(spec: FieldSpec, value: Any, dayfirst: bool) -> str | None:
    """Why ``value`` is not valid for ``spec`` (None when it is). Called off the fast path only."""
    expected = _EXPECTED[spec.kind] + (" or null" if spec.nullable else "")
    if value is None:
        return None if spec.nullable else f"must not be null (expected {_EXPECTED[spec.kind]})"
    kind, kind_type = spec.kind, type(value)
    if kind in ("number", "integer"):
        if kind_type not in (int, float):
            return f"expected {expected}, got {json_type(value)}"
        if kind == "integer" and kind_type is float and not value.is_integer():
            return f"expected {expected}, got a number with a fraction"
        if abs(value) > MAX_ABS_NUMBER:
            return f"out of range (|value| must be <= {MAX_ABS_NUMBER:g})"
        return None
    if kind == "id":
        if kind_type is str or kind_type is int:
            return None
        if kind_type is float and value.is_integer():
            return None
        return f"expected {expected}, got {json_type(value)}"
    if kind == "date":
        if kind_type is not str:
            return f"expected {expected}, got {json_type(value)}"
        return _date_problem(value, dayfirst)
    if kind_type not in _BASE_TYPES[kind]:
        return f"expected {expected}, got {json_type(value)}"
    return None


def parse_date(text: str, dayfirst: bool = True) -> date | None:
    """The calendar date of an accepted date string, or None when it is not one."""
    if _ISO_DATE.match(text):
        try:
            return datetime.fromisoformat(text.replace(" ", "T")).date()
        except ValueError:
            return None
    match = _NUMERIC_DATE.match(text)
    if not match:
        return None
    first, second, year = (int(g) for g in match.groups())
    day, month = (first, second) if dayfirst else (second, first)
    try:
        return date(year, month, day)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)  # dates repeat a lot across requests; parsing them does not
def _date_problem(text: str, dayfirst: bool) -> str | None:
    parsed = parse_date(text, dayfirst)
    if parsed is None:
        order = "DD-MM-YYYY" if dayfirst else "MM-DD-YYYY"
        return f"not a valid date (expected YYYY-MM-DD, an ISO date-time or {order})"
    if not DATE_MIN_YEAR <= parsed.year <= DATE_MAX_YEAR:
        return f"date out of range (years {DATE_MIN_YEAR} to {DATE_MAX_YEAR})"
    return None


# --------------------------------------------------------------------------- the schema


@dataclass
class ParsedRequest:
    instances: list[dict[str, Any]]  # as sent, less the ignored fields
    columns: dict[str, Sequence[Any]]  # model input column -> one value per instance
    parameters: Parameters
    ignored: tuple[str, ...] = ()  # fields accepted and ignored (training-only columns), sorted


@dataclass
class RequestSchema:
    """Validation rules for one bundle; built once at load time, used for every request."""

    fields: dict[str, FieldSpec]
    model_columns: list[str]  # what the transformer reads, in its order
    id_columns: list[str] = field(default_factory=list)
    max_instances: int = 1000
    dayfirst: bool = True
    ignorable: frozenset[str] = frozenset()  # training-file columns that are not inputs: ignored
    accept_unknown: bool = False  # ignore every unknown field instead of refusing it

    def __post_init__(self) -> None:
        self.allowed = frozenset(self.fields)
        self.required = frozenset(n for n, f in self.fields.items() if f.required)
        self._fast = {n: _fast_types(f) for n, f in self.fields.items()}
        self._names = tuple(self.fields)
        self._position = {n: i for i, n in enumerate(self._names)}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_bundle(
        cls, bundle: Any, max_instances: int = 1000, accept_unknown: bool = False
    ) -> RequestSchema:
        """Fields from ``bundle.input_schema``; transformer inputs missing from it get a kind from
        the transformer (numeric/categorical/date) and are nullable (imputed), so old bundles work.
        """
        transformer = bundle.transformer
        used = set(transformer.input_columns)
        schema = bundle.input_schema or {}
        fields: dict[str, FieldSpec] = {}
        for entry in schema.get("features") or []:
            name = str(entry["name"])
            kind = entry.get("type", "string")
            kind = kind if kind in KINDS else "string"
            fields[name] = FieldSpec(
                name=name,
                kind=kind,
                nullable=bool(entry.get("nullable", True)) or name not in used,  # unused: optional
                used=name in used,
                categories=tuple(str(c) for c in entry.get("categories") or ()),
            )
        for name in transformer.input_columns:
            if name not in fields:
                fields[name] = FieldSpec(name, _transformer_kind(transformer, name), nullable=True)
        id_columns = [str(c) for c in schema.get("id_columns") or [] if str(c) not in fields]
        for name in id_columns:
            fields[name] = FieldSpec(name, "id", nullable=True, used=False)
        return cls(
            fields=fields,
            model_columns=list(transformer.input_columns),
            id_columns=id_columns,
            max_instances=max_instances,
            dayfirst=bool(getattr(transformer, "dayfirst", True)),
            ignorable=_training_only_columns(schema, bundle.extra.get("config") or {}) - set(fields),
            accept_unknown=accept_unknown,
        )

    # ------------------------------------------------------------------ parsing

    def parse(self, body: bytes) -> ParsedRequest:
        """Body bytes -> instances, model columns and parameters, or a ``RequestError``."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise request_error(400, "", f"the body is not valid JSON: {exc}") from None
        if type(payload) is not dict:
            raise request_error(422, "", f"the body must be a JSON object, got {json_type(payload)}")
        unknown = payload.keys() - {"instances", "parameters"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise request_error(422, names, "unknown top-level field (allowed: instances, parameters)")
        parameters = self.parse_parameters(payload.get("parameters"))
        instances = payload.get("instances")
        columns, ignored = self._validate(instances)
        if ignored:  # rare: strip them so that the prediction log keeps inputs only
            instances = [{k: v for k, v in instance.items() if k not in ignored} for instance in instances]
        return ParsedRequest(instances, columns, parameters, tuple(sorted(ignored)))

    @staticmethod
    def parse_parameters(raw: Any) -> Parameters:
        if raw is None:
            return Parameters()
        if type(raw) is not dict:
            raise request_error(422, "parameters", f"expected an object, got {json_type(raw)}")
        problems = []
        unknown = sorted(raw.keys() - {"explain", "top_k", "use_calibration"})
        if unknown:
            allowed = "explain, top_k, use_calibration"
            problems += [
                _detail(f"parameters.{n}", f"unknown parameter (allowed: {allowed})") for n in unknown
            ]
        for name in ("explain", "use_calibration"):
            if name in raw and type(raw[name]) is not bool:
                problems.append(
                    _detail(f"parameters.{name}", f"expected true or false, got {json_type(raw[name])}")
                )
        top_k = raw.get("top_k", 5)
        if type(top_k) is float and top_k.is_integer():
            top_k = int(top_k)
        if type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K:
            problems.append(
                _detail("parameters.top_k", f"expected an integer from 1 to {MAX_TOP_K}, got {_shown(top_k)}")
            )
        if problems:
            raise RequestError(422, problems)
        return Parameters(
            explain=raw.get("explain", False),
            top_k=top_k,
            use_calibration=raw.get("use_calibration", True),
        )

    def validate_instances(self, instances: Any) -> dict[str, Sequence[Any]]:
        """Check every instance; return the model input columns (one list per column)."""
        return self._validate(instances)[0]

    def _validate(self, instances: Any) -> tuple[dict[str, Sequence[Any]], set[str]]:
        """``validate_instances``, plus the names of the fields accepted and ignored.

        Structure first (objects, unknown and missing fields), then types column by column: a set
        lookup of each value's type (and one min/max for numbers) covers the common case; only a
        column that fails it, and date columns, get a per-value check that names the culprit.
        """
        if instances is None:
            raise request_error(422, "instances", "is required: a list of 1 or more instance objects")
        if type(instances) is not list:
            raise request_error(422, "instances", f"expected a list of objects, got {json_type(instances)}")
        if not instances:
            raise request_error(422, "instances", "is empty: send at least one instance")
        if len(instances) > self.max_instances:
            raise request_error(
                422, "instances", f"has {len(instances)} instances; at most {self.max_instances} per request"
            )
        problems, ignored = self._structure_problems(instances)
        if problems:
            raise RequestError(422, problems)
        rows = [tuple(map(instance.get, self._names)) for instance in instances]  # absent == null
        columns = list(zip(*rows, strict=True))
        problems = []
        for name, values in zip(self._names, columns, strict=True):
            spec = self.fields[name]
            if _column_ok(spec, values, self._fast[name], self.dayfirst):
                continue
            for index, value in enumerate(values):
                problem = _check_value(spec, value, self.dayfirst)
                if problem:
                    problems.append(_detail(name, problem, index))
        if problems:
            problems.sort(key=lambda d: (d["instance"], d["field"]))
            raise RequestError(422, problems)
        return {name: columns[self._position[name]] for name in self.model_columns}, ignored

    def _structure_problems(self, instances: list[Any]) -> tuple[list[dict[str, Any]], set[str]]:
        """Problems (not objects, unknown or missing fields) and the ignored field names."""
        problems: list[dict[str, Any]] = []
        ignored: set[str] = set()
        allowed, required = self.allowed, self.required
        valid_keys = None  # the key set of an instance already found valid (batches repeat it)
        for index, instance in enumerate(instances):
            if type(instance) is not dict:
                problems.append(_detail("", f"expected an object, got {json_type(instance)}", index))
                continue
            keys = instance.keys()
            if valid_keys is not None and keys == valid_keys:
                continue
            extra = keys - allowed
            unknown = set() if self.accept_unknown else extra - self.ignorable
            if not unknown and required <= keys:
                valid_keys = keys
                ignored |= extra
                continue
            for name in sorted(unknown):
                problems.append(_detail(name, "unknown field", index))
            if not required <= keys:
                for name in sorted(required - keys):
                    problems.append(
                        _detail(name, f"is required ({_EXPECTED[self.fields[name].kind]})", index)
                    )
            if len(problems) > MAX_LISTED_ERRORS * 5:
                break
        return problems, ignored

    # ------------------------------------------------------------------ model input

    def model_arrays(self, columns: dict[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """Model columns as numpy arrays of the dtype the transformer reads fastest.

        Numbers become float64 (null -> NaN), everything else an object array (strings, bools,
        date strings are parsed by the transformer itself: one date parser for training and
        serving). This is conversion only; every feature is computed by the transformer.
        """
        arrays: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            kind = self.fields[name].kind
            if kind in ("number", "integer"):
                arrays[name] = np.array(
                    [math.nan if v is None else v for v in values] if None in values else values,
                    dtype=np.float64,
                )
            else:
                arrays[name] = np.array(values, dtype=object)
        return arrays

    # ------------------------------------------------------------------ documents

    def instance_json_schema(self) -> dict[str, Any]:
        """JSON Schema of one instance (OpenAPI 3.1 dialect), exactly the rules above."""
        return {
            "type": "object",
            "properties": {
                **{n: _property_schema(spec, self.dayfirst) for n, spec in self.fields.items()},
                **{n: {"description": IGNORED_DESCRIPTION} for n in sorted(self.ignorable)},
            },
            "required": sorted(self.required),
            "additionalProperties": self.accept_unknown,
        }

    def request_json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": self.max_instances,
                    "items": {"$ref": "#/components/schemas/Instance"},
                },
                "parameters": {"$ref": "#/components/schemas/Parameters"},
            },
            "required": ["instances"],
            "additionalProperties": False,
        }

    def describe_fields(self) -> list[dict[str, Any]]:
        """The input schema as /model_info shows it."""
        return [
            {
                "name": spec.name,
                "type": spec.kind,
                "nullable": spec.nullable,
                "required": spec.required,
                "model_input": spec.used,
                **({"categories": list(spec.categories)} if spec.categories else {}),
            }
            for spec in self.fields.values()
        ]

    def example_instance(self, rows: Iterable[dict[str, Any]], stats: dict[str, Any]) -> dict[str, Any]:
        """A valid instance: the first candidate row that passes validation, else typical values."""
        for row in rows:
            instance = {n: to_json_value(row[n]) for n in self.fields if n in row}
            instance = {n: v for n, v in instance.items() if v is not None or self.fields[n].nullable}
            try:
                self.validate_instances([instance])
            except RequestError:
                continue
            return instance
        return {
            n: _typical_value(spec, stats.get(n) or {}) for n, spec in self.fields.items() if spec.required
        }


def parameters_json_schema() -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "properties": {
            "explain": {"type": "boolean", "default": False},
            "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 5},
            "use_calibration": {"type": "boolean", "default": True},
        },
        "additionalProperties": False,
    }


def _property_schema(spec: FieldSpec, dayfirst: bool) -> dict[str, Any]:
    if spec.kind == "id":
        schema: dict[str, Any] = {"type": ["string", "integer"]}
    elif spec.kind in ("number", "integer"):
        schema = {"type": spec.kind, "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER}
    elif spec.kind == "date":
        schema = {"type": "string", "pattern": date_pattern(dayfirst), "examples": ["2014-03-01"]}
    else:
        schema = {"type": spec.kind}
    if spec.categories:
        schema["examples"] = list(spec.categories[:10])
        schema["description"] = "known categories: " + ", ".join(spec.categories) + " (others accepted)"
    if spec.nullable:
        schema["type"] = [*_as_list(schema["type"]), "null"]
    return schema


def _as_list(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def _shown(value: Any) -> str:
    """A parameter value for a message (parameters are not personal data, but keep it short)."""
    text = (
        orjson.dumps(value).decode()
        if isinstance(value, bool | int | float | str | None)
        else json_type(value)
    )
    return text if len(text) <= 40 else text[:37] + "..."


IGNORED_DESCRIPTION = "a training-file column that is not a model input: accepted and ignored"


def _training_only_columns(schema: dict[str, Any], config: dict[str, Any]) -> frozenset[str]:
    """Columns of the training file that are not model inputs: the dropped ones and the target."""
    dataset = config.get("dataset") or {}
    target = schema.get("target") or dataset.get("target")
    columns = {str(c) for c in dataset.get("drop_columns") or []}
    return frozenset(columns | {str(target)} if target else columns)


def _transformer_kind(transformer: Any, name: str) -> str:
    if name in getattr(transformer, "date_inputs", []):
        return "date"
    if name in getattr(transformer, "numeric_inputs", []):
        return "number"
    return "string"


def to_json_value(value: Any) -> Any:
    """A reference-frame cell as the JSON value a client would send (NaN/NaT -> null)."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        try:
            return None if value != value else value.isoformat()[:10]  # NaT != NaT
        except (TypeError, ValueError):
            return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _typical_value(spec: FieldSpec, stats: dict[str, Any]) -> Any:
    """A plausible value for a field from the bundle's reference statistics."""
    median = (stats.get("quantiles") or {}).get("p50")
    if spec.kind == "integer":
        return round(median) if isinstance(median, int | float) else 0
    if spec.kind == "number":
        return float(median) if isinstance(median, int | float) else 0.0
    if spec.kind == "boolean":
        return False
    if spec.kind == "date":
        low = str(stats.get("min") or "2014-01-01")[:10]
        return low if parse_date(low) else "2014-01-01"
    if spec.kind == "id":
        return "customer-1"
    top = list((stats.get("top_values") or {}).keys())
    return spec.categories[0] if spec.categories else (top[0] if top else "unknown")


# --------------------------------------------------------------------------- OpenAPI


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_openapi(
    schema: RequestSchema,
    *,
    title: str,
    version: str,
    routes: tuple[str, str],
    example: dict[str, Any],
    max_explain_instances: int,
    token_required: bool,
) -> dict[str, Any]:
    """OpenAPI 3.1 of the server for one bundle; the request schema is the validator's own."""
    health_route, predict_route = routes
    error = _json_body({"$ref": "#/components/schemas/Error"}, "refused: the message names field and index")
    any_object = {"type": "object"}
    errors = {"401": error} if token_required else {}
    predict_errors = {
        "400": _json_body({"$ref": "#/components/schemas/Error"}, "the body is not valid JSON"),
        "413": _json_body({"$ref": "#/components/schemas/Error"}, "the body is over the size limit"),
        "422": error,
        "503": _json_body({"$ref": "#/components/schemas/Error"}, "no model loaded yet"),
        **errors,
    }
    get_doc = {"get": {"responses": {"200": _json_body(any_object, "ok"), **errors}}}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Propensity scores for raw customer rows. Fields are the training file's columns; "
                "nullable ones may be null or left out. Dates must also be real calendar dates. "
                f"With parameters.explain at most {max_explain_instances} instances."
            ),
        },
        "paths": {
            predict_route: {
                "post": {
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PredictRequest"},
                                "example": example,
                            }
                        },
                    },
                    "responses": {
                        "200": _json_body({"$ref": "#/components/schemas/PredictResponse"}, "predictions"),
                        **predict_errors,
                    },
                }
            },
            health_route: {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        "200": _json_body(any_object, "a verified model is loaded"),
                        "503": _json_body(any_object, "no model loaded yet"),
                    },
                }
            },
            "/model_info": get_doc,
            "/example_request": get_doc,
            "/openapi.json": get_doc,
        },
        "components": {
            "schemas": {
                "Instance": schema.instance_json_schema(),
                "Parameters": parameters_json_schema(),
                "PredictRequest": schema.request_json_schema(),
                "PredictResponse": _response_schema(),
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "errors": {"type": "array"}},
                    "required": ["error"],
                },
            }
        },
    }
    if token_required:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    return spec


def _response_schema() -> dict[str, Any]:
    number = {"type": "number"}
    prediction = {
        "type": "object",
        "properties": {
            "probability": number,
            "calibrated_probability": {"type": ["number", "null"]},
            "label": {"type": "integer", "enum": [0, 1]},
            "threshold": number,
            "model_version": {"type": "string"},
            "explanation": {
                "type": "object",
                "properties": {
                    "base_value": number,
                    "contributions": {"type": "object", "additionalProperties": number},
                },
                "required": ["base_value", "contributions"],
            },
        },
        "required": ["probability", "calibrated_probability", "label", "threshold", "model_version"],
    }
    return {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": prediction}},
        "required": ["predictions"],
    }
