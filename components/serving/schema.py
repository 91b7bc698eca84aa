"""The endpoint's request contract, derived from a bundle's raw input schema: request validation.

One ``RequestSchema`` per loaded bundle decides what a valid request is, turns a valid one into
columns for the bundle's transformer and builds an example body. The per-value rules are in
``fields``, the refusals in ``errors``; ``openapi`` writes the OpenAPI description of exactly these
rules from the same ``RequestSchema``. Deriving both from one object is what keeps the spec honest:
schemathesis fuzzes the server from the spec, so a rule enforced here but missing from the spec (or
the other way round) shows up as a test failure.

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
  1700 and 2261 (``fields.DATE_MIN_YEAR`` to ``DATE_MAX_YEAR``, inside what pandas holds).
  Numbers are bounded by +-1e15 so that derived sums and the model stay finite.
- parameters: ``explain`` (bool), ``top_k`` (1..1000), ``use_calibration`` (bool).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from components.serving.errors import MAX_LISTED_ERRORS, RequestError, detail, json_type, request_error
from components.serving.fields import (
    EXPECTED,
    KINDS,
    FieldSpec,
    check_value,
    column_ok,
    fast_types,
    parse_date,
)

MAX_TOP_K = 1000


@dataclass(frozen=True)
class Parameters:
    explain: bool = False
    top_k: int = 5
    use_calibration: bool = True


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
        self._fast = {n: fast_types(f) for n, f in self.fields.items()}
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
                detail(f"parameters.{n}", f"unknown parameter (allowed: {allowed})") for n in unknown
            ]
        for name in ("explain", "use_calibration"):
            if name in raw and type(raw[name]) is not bool:
                problems.append(
                    detail(f"parameters.{name}", f"expected true or false, got {json_type(raw[name])}")
                )
        top_k = raw.get("top_k", 5)
        if type(top_k) is float and top_k.is_integer():
            top_k = int(top_k)
        if type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K:
            problems.append(
                detail("parameters.top_k", f"expected an integer from 1 to {MAX_TOP_K}, got {_shown(top_k)}")
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
            if column_ok(spec, values, self._fast[name], self.dayfirst):
                continue
            for index, value in enumerate(values):
                problem = check_value(spec, value, self.dayfirst)
                if problem:
                    problems.append(detail(name, problem, index))
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
                problems.append(detail("", f"expected an object, got {json_type(instance)}", index))
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
                problems.append(detail(name, "unknown field", index))
            if not required <= keys:
                for name in sorted(required - keys):
                    problems.append(detail(name, f"is required ({EXPECTED[self.fields[name].kind]})", index))
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


def _shown(value: Any) -> str:
    """A parameter value for a message (parameters are not personal data, but keep it short)."""
    text = (
        orjson.dumps(value).decode()
        if isinstance(value, bool | int | float | str | None)
        else json_type(value)
    )
    return text if len(text) <= 40 else text[:37] + "..."


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
