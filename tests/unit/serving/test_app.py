"""The endpoint's HTTP details that need no model: response headers built from client input."""

from __future__ import annotations

from components.serving.app import IGNORED_HEADER_LIMIT, ignored_fields_header


def test_the_ignored_fields_header_is_safe_for_any_client_key() -> None:
    assert ignored_fields_header(["Response", "Z_Revenue"]) == b"Response,Z_Revenue"
    assert ignored_fields_header(["a,b", "x\ny", "café"]) == b"a%2Cb,x%0Ay,caf%C3%A9"
    many = ignored_fields_header([f"field_{i:04d}" for i in range(500)])
    assert len(many) <= IGNORED_HEADER_LIMIT + 20 and many.endswith(b"-more")
