"""How the endpoint refuses a request: ``RequestError`` (HTTP status, per-field details, one message).

Shared by request validation (``schema``, ``fields``) and the app (an oversized body, too many
instances to explain). Messages name the instance index, the field and the expected type, never
the value sent: it may be personal data.
"""

from __future__ import annotations

from typing import Any

MAX_LISTED_ERRORS = 20
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
    return RequestError(status, [detail(field, message, instance)])


def detail(field: str, message: str, instance: int | None = None) -> dict[str, Any]:
    return {"instance": instance, "field": field, "message": message}


def _detail_text(detail: dict[str, Any]) -> str:
    where = detail["field"]
    if detail.get("instance") is not None:
        where = f"instances[{detail['instance']}].{where}" if where else f"instances[{detail['instance']}]"
    return f"{where}: {detail['message']}" if where else detail["message"]


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages (never the value: it may be personal)."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
