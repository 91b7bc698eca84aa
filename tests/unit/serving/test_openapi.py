"""The endpoint's OpenAPI document states exactly the rules the validator enforces."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from components.serving.errors import RequestError
from components.serving.fields import date_pattern, parse_date
from components.serving.openapi import build_openapi, request_json_schema
from components.serving.schema import RequestSchema
from tests.unit.serving.test_schema import VALID, make_schema


def openapi(schema: RequestSchema, token: bool = False) -> dict[str, Any]:
    return build_openapi(
        schema,
        title="t",
        version="v0001",
        routes=("/health", "/predict"),
        example={"instances": [VALID]},
        max_explain_instances=5,
        token_required=token,
    )


def test_openapi_states_the_same_rules() -> None:
    spec = openapi(make_schema(max_instances=7))
    schemas = spec["components"]["schemas"]
    instance = schemas["Instance"]
    assert set(instance["required"]) == {"Age", "Education", "Joined"}  # Constant: not a model input
    assert instance["additionalProperties"] is False
    assert instance["properties"]["Income"]["type"] == ["number", "null"]
    assert instance["properties"]["ID"]["type"] == ["string", "integer", "null"]
    instances = schemas["PredictRequest"]["properties"]["instances"]
    assert (instances["minItems"], instances["maxItems"]) == (1, 7)
    assert schemas["Parameters"]["additionalProperties"] is False
    assert "security" not in spec and "bearer" in openapi(make_schema(), token=True)["security"][0]
    assert spec["paths"]["/health"]["get"]["security"] == []


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2014-03-01", True),
        ("2014-03-01T10:00:00.5+05:30", True),
        ("1-3-2014", True),
        ("2014-13-01", False),
        ("2014-3-1", False),
        ("1699-12-31", False),
        ("01-03-14", False),
    ],
)
def test_date_pattern_matches_what_validation_accepts(text: str, valid: bool) -> None:
    matches = re.match(date_pattern(True), text) is not None
    assert matches == valid
    assert (parse_date(text) is not None and 1700 <= parse_date(text).year <= 2261) == valid


def test_request_json_schema_agrees_with_the_validator() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # comes with schemathesis (dev extra)
    schema = make_schema()
    document = {**request_json_schema(schema), "$defs": {}}
    spec = openapi(schema)
    rendered = orjson.dumps(document).decode().replace("#/components/schemas/", "#/$defs/")
    validator = jsonschema_rs.validator_for(
        {**orjson.loads(rendered), "$defs": spec["components"]["schemas"]}
    )
    cases = [
        ({"instances": [VALID]}, True),
        ({"instances": [{**VALID, "Income": None, "ID": "a"}], "parameters": {"top_k": 2}}, True),
        ({"instances": []}, False),
        ({"instances": [{**VALID, "Age": "1"}]}, False),
        ({"instances": [{**VALID, "Colour": 1}]}, False),
        ({"instances": [{k: v for k, v in VALID.items() if k != "Age"}]}, False),
        ({"instances": [VALID], "parameters": {"top_k": 0}}, False),
        ({"instances": [{**VALID, "Joined": "2014/03/01"}]}, False),
    ]
    for payload, valid in cases:
        assert validator.is_valid(payload) == valid, payload
        try:
            schema.parse(orjson.dumps(payload))
            accepted = True
        except RequestError:
            accepted = False
        assert accepted == valid, payload
