"""The endpoint's request rules: what is accepted, what is refused and how the refusal reads."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from components.serving.errors import MAX_LISTED_ERRORS, RequestError
from components.serving.fields import parse_date
from components.serving.openapi import instance_json_schema
from components.serving.schema import Parameters, RequestSchema

INPUT_SCHEMA = {
    "target": "Response",
    "id_columns": ["ID"],
    "features": [
        {"name": "Age", "type": "integer", "nullable": False},
        {"name": "Income", "type": "number", "nullable": True},
        {"name": "Education", "type": "string", "nullable": False, "categories": ["PhD", "Master"]},
        {"name": "Joined", "type": "date", "nullable": False},
        {"name": "Member", "type": "boolean", "nullable": True},
        {"name": "Constant", "type": "integer", "nullable": False},  # not read by the transformer
    ],
}
MODEL_COLUMNS = ["Age", "Income", "Education", "Joined", "Member"]
VALID = {
    "Age": 40,
    "Income": 52000.5,
    "Education": "PhD",
    "Joined": "2014-03-01",
    "Member": True,
    "Constant": 1,
}


def make_schema(
    dayfirst: bool = True, max_instances: int = 10, accept_unknown: bool = False
) -> RequestSchema:
    transformer = SimpleNamespace(
        input_columns=MODEL_COLUMNS,
        dayfirst=dayfirst,
        numeric_inputs=["Age", "Income"],
        date_inputs=["Joined"],
    )
    config = {"dataset": {"target": "Response", "drop_columns": ["Z_Revenue"]}}
    bundle = SimpleNamespace(transformer=transformer, input_schema=INPUT_SCHEMA, extra={"config": config})
    return RequestSchema.from_bundle(bundle, max_instances=max_instances, accept_unknown=accept_unknown)


def body(*instances: dict[str, Any], parameters: Any = None) -> bytes:
    payload: dict[str, Any] = {"instances": list(instances)}
    if parameters is not None:
        payload["parameters"] = parameters
    return orjson.dumps(payload)


def refusal(schema: RequestSchema, raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        schema.parse(raw)
    return caught.value


# --------------------------------------------------------------------------- accepted


def test_rows_of_the_training_file_are_accepted_and_its_other_columns_ignored() -> None:
    """The dropped columns and the target come with rows taken from the training file: accepted,
    named once in ``ignored``, left out of the instances (the prediction log keeps inputs only)."""
    schema = make_schema()
    row = {**VALID, "Z_Revenue": 11, "Response": 1}
    plain = schema.parse(body(VALID, VALID, VALID))
    parsed = schema.parse(body(row, VALID, row))
    assert parsed.ignored == ("Response", "Z_Revenue")
    assert parsed.columns == plain.columns
    assert parsed.instances == [VALID, VALID, VALID]
    assert plain.ignored == ()
    properties = instance_json_schema(schema)["properties"]
    assert {"Z_Revenue", "Response"} <= set(properties)
    assert instance_json_schema(schema)["additionalProperties"] is False


def test_unknown_fields_are_ignored_only_when_the_server_says_so() -> None:
    row = {**VALID, "Colour": "red"}
    assert "instances[0].Colour: unknown field" in str(refusal(make_schema(), body(row)))
    lenient = make_schema(accept_unknown=True)
    parsed = lenient.parse(body(row))
    assert parsed.ignored == ("Colour",) and parsed.instances == [VALID]
    assert instance_json_schema(lenient)["additionalProperties"] is True


def test_a_valid_request_gives_model_columns_in_transformer_order() -> None:
    parsed = make_schema().parse(body(VALID, {**VALID, "Age": 41, "ID": "c-2"}))
    assert list(parsed.columns) == MODEL_COLUMNS
    assert list(parsed.columns["Age"]) == [40, 41]
    assert parsed.parameters == Parameters()
    assert parsed.instances[1]["ID"] == "c-2"


def test_nullable_fields_may_be_null_or_absent_and_ids_are_optional() -> None:
    without = {k: v for k, v in VALID.items() if k != "Income"}
    parsed = make_schema().parse(body({**VALID, "Income": None, "Member": None}, without, {**VALID, "ID": 7}))
    assert list(parsed.columns["Income"]) == [None, None, VALID["Income"]]


def test_integral_floats_count_as_integers_and_unseen_categories_pass() -> None:
    parsed = make_schema().parse(body({**VALID, "Age": 40.0, "Education": "Astronaut"}))
    assert list(parsed.columns["Education"]) == ["Astronaut"]


@pytest.mark.parametrize(
    "text", ["2014-03-01", "2014-03-01T10:00:00Z", "2014-03-01 10:00", "01-03-2014", "1/3/2014", "01.03.2014"]
)
def test_accepted_date_shapes(text: str) -> None:
    make_schema().parse(body({**VALID, "Joined": text}))
    assert parse_date(text) is not None and parse_date(text).month == 3  # day first


def test_month_first_when_the_dataset_is_not_day_first() -> None:
    assert parse_date("03-01-2014", dayfirst=False).month == 3
    make_schema(dayfirst=False).parse(body({**VALID, "Joined": "12-31-2014"}))
    error = refusal(make_schema(dayfirst=True), body({**VALID, "Joined": "12-31-2014"}))
    assert "instances[0].Joined: not a valid date" in str(error)


def test_parameters_are_read_with_defaults() -> None:
    parsed = make_schema().parse(body(VALID, parameters={"explain": True, "top_k": 3.0}))
    assert parsed.parameters == Parameters(explain=True, top_k=3, use_calibration=True)
    assert make_schema().parse(body(VALID, parameters=None)).parameters == Parameters()


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Age": "40"}, "instances[1].Age: expected an integer, got string"),
        ({"Age": 40.5}, "instances[1].Age: expected an integer, got a number with a fraction"),
        ({"Age": True}, "instances[1].Age: expected an integer, got boolean"),
        ({"Age": None}, "instances[1].Age: must not be null"),
        ({"Age": 10**16}, "instances[1].Age: out of range"),
        ({"Income": "lots"}, "instances[1].Income: expected a number or null, got string"),
        ({"Income": -1e300}, "instances[1].Income: out of range"),
        ({"Education": 3}, "instances[1].Education: expected a string, got integer"),
        ({"Member": "yes"}, "instances[1].Member: expected true or false or null, got string"),
        ({"Joined": "2014-02-30"}, "instances[1].Joined: not a valid date"),
        ({"Joined": "1650-01-01"}, "instances[1].Joined: not a valid date"),
        ({"Joined": "01-01-1650"}, "instances[1].Joined: date out of range"),
        ({"Joined": 20140301}, "instances[1].Joined: expected a date string"),
        ({"ID": [1]}, "instances[1].ID: expected a string or an integer"),
        ({"Colour": "red"}, "instances[1].Colour: unknown field"),
        ({"Z_Revenu": 11}, "instances[1].Z_Revenu: unknown field"),  # a typo of a dropped column
    ],
)
def test_wrong_values_name_the_instance_and_field(change: dict[str, Any], message: str) -> None:
    error = refusal(make_schema(), body(VALID, {**VALID, **change}))
    assert error.status == 422
    assert message in str(error)
    assert error.details[0]["instance"] == 1


def test_missing_required_fields_are_listed_per_instance() -> None:
    partial = {k: v for k, v in VALID.items() if k not in ("Age", "Joined")}
    error = refusal(make_schema(), body(VALID, partial))
    assert "instances[1].Age: is required" in str(error) and "instances[1].Joined: is required" in str(error)


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b'{"instances": [', 400, "not valid JSON"),
        (b"[]", 422, "the body must be a JSON object, got array"),
        (b'{"parameters": {}}', 422, "instances: is required"),
        (b'{"instances": {}}', 422, "instances: expected a list of objects, got object"),
        (b'{"instances": []}', 422, "instances: is empty"),
        (b'{"instances": [1, {}]}', 422, "instances[0]: expected an object, got integer"),
        (b'{"instances": [{}], "extra": 1}', 422, "extra: unknown top-level field"),
    ],
)
def test_malformed_bodies(raw: bytes, status: int, message: str) -> None:
    error = refusal(make_schema(), raw)
    assert error.status == status and message in str(error)


def test_too_many_instances() -> None:
    error = refusal(make_schema(max_instances=3), body(*[VALID] * 4))
    assert "instances: has 4 instances; at most 3 per request" in str(error)


def test_every_bad_parameter_is_reported_at_once() -> None:
    error = refusal(
        make_schema(), body(VALID, parameters={"explain": 1, "top_k": 0, "use_calibration": "no", "x": 1})
    )
    text = str(error)
    for name in ("parameters.explain", "parameters.top_k", "parameters.use_calibration", "parameters.x"):
        assert name in text
    assert "top_k: expected an integer from 1 to 1000, got 0" in text


def test_many_errors_are_capped_in_the_message_but_counted() -> None:
    error = refusal(make_schema(max_instances=100), body(*[{**VALID, "Age": "x"}] * 30))
    assert len(error.details) == 30
    assert f"and {30 - MAX_LISTED_ERRORS} more" in str(error)
    assert len(error.to_body()["errors"]) == MAX_LISTED_ERRORS


def test_messages_do_not_echo_values() -> None:
    error = refusal(make_schema(), body({**VALID, "Education": ["Private Person Name"]}))
    assert "Private Person Name" not in str(error)


# --------------------------------------------------------------------------- model input and documents


def test_model_arrays_are_float_for_numbers_and_object_otherwise() -> None:
    schema = make_schema()
    parsed = schema.parse(body(VALID, {**VALID, "Income": None}))
    arrays = schema.model_arrays(parsed.columns)
    assert arrays["Income"].dtype == np.float64 and math.isnan(arrays["Income"][1])
    assert arrays["Age"].dtype == np.float64
    assert arrays["Education"].dtype == object and arrays["Joined"][0] == "2014-03-01"


def test_example_instance_is_the_first_valid_row_or_typical_values() -> None:
    schema = make_schema()
    rows = [{**VALID, "Age": "bad"}, {**VALID, "Age": np.int64(33), "Income": float("nan"), "ID": 5}]
    example = schema.example_instance(rows, {})
    assert example["Age"] == 33 and example["Income"] is None and example["ID"] == 5
    stats = {"Age": {"quantiles": {"p50": 41.2}}, "Joined": {"min": "2012-07-30 00:00:00"}}
    typical = schema.example_instance([], stats)
    assert typical["Age"] == 41 and typical["Joined"] == "2012-07-30"
    schema.validate_instances([typical])
