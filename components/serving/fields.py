"""The rules for one instance field: its kind, the values each kind accepts, and why one is refused.

``RequestSchema`` (``schema``, whose docstring lists the rules) applies them column by column, on a
fast path (a set of value types, one min/max) with a per-value check only for a column that fails
it. The OpenAPI document (``openapi``) states them with the same constants and the same date
pattern, so that the spec and the validator cannot drift apart.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from components.serving.errors import json_type

MAX_ABS_NUMBER = 1e15
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


_BASE_TYPES: dict[str, frozenset[type]] = {
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
    "date": frozenset({str}),
    "id": frozenset({str, int}),
}
EXPECTED: dict[str, str] = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "date": "a date string (YYYY-MM-DD, ISO date-time or DD-MM-YYYY)",
    "id": "a string or an integer",
}


def fast_types(spec: FieldSpec) -> frozenset[type]:
    """Python types a column may hold to pass without a per-value look (the common, fast path)."""
    base = _BASE_TYPES[spec.kind]
    return base | {type(None)} if spec.nullable else base


def column_ok(spec: FieldSpec, values: tuple[Any, ...], fast: frozenset[type], dayfirst: bool) -> bool:
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


def check_value(spec: FieldSpec, value: Any, dayfirst: bool) -> str | None:
    """Why ``value`` is not valid for ``spec`` (None when it is). Called off the fast path only."""
    expected = EXPECTED[spec.kind] + (" or null" if spec.nullable else "")
    if value is None:
        return None if spec.nullable else f"must not be null (expected {EXPECTED[spec.kind]})"
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
