"""The OpenAPI 3.1 document of the endpoint for one bundle (``GET /openapi.json``).

Written from the bundle's ``RequestSchema`` with the validator's own constants and date pattern,
so that it states exactly the rules the server enforces: schemathesis fuzzes the server from this
document, and any disagreement between the two is a test failure.
"""

from __future__ import annotations

from typing import Any

from components.serving.fields import MAX_ABS_NUMBER, FieldSpec, date_pattern
from components.serving.schema import MAX_TOP_K, RequestSchema

IGNORED_DESCRIPTION = "a training-file column that is not a model input: accepted and ignored"


def instance_json_schema(schema: RequestSchema) -> dict[str, Any]:
    """JSON Schema of one instance (OpenAPI 3.1 dialect), exactly the rules of ``schema``."""
    return {
        "type": "object",
        "properties": {
            **{n: _property_schema(spec, schema.dayfirst) for n, spec in schema.fields.items()},
            **{n: {"description": IGNORED_DESCRIPTION} for n in sorted(schema.ignorable)},
        },
        "required": sorted(schema.required),
        "additionalProperties": schema.accept_unknown,
    }


def request_json_schema(schema: RequestSchema) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": schema.max_instances,
                "items": {"$ref": "#/components/schemas/Instance"},
            },
            "parameters": {"$ref": "#/components/schemas/Parameters"},
        },
        "required": ["instances"],
        "additionalProperties": False,
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
                "Instance": instance_json_schema(schema),
                "Parameters": parameters_json_schema(),
                "PredictRequest": request_json_schema(schema),
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
