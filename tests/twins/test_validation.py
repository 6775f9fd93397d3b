"""The fast validators give the serializers' verdicts: the same validated data, or the same
error (status, subcode, description)."""

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from batchsite.errors import describe_exception
from twins.registry import OPERATIONS

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
plausible = st.sampled_from(
    [
        "0b0f5b8e-3a43-4c8e-9d1e-2a1b7a2f6c11",
        "0b0f5b8e3a434c8e9d1e2a1b7a2f6c11",
        "personal",
        "RFID#abc",
        "bad#",
        "a,b",
        "a,,b",
        "true",
        "1",
        "7",
        "MGIwZjViOGUtM2E0My00YzhlLTlkMWUtMmExYjdhMmY2YzEx",
        "",
    ]
)
entry_maps = st.dictionaries(
    st.sampled_from(["a", "b_1", "B", "_", "1a"]),
    st.dictionaries(st.sampled_from(["value", "visibility", "history"]), json_values | plausible, max_size=2)
    | json_scalars,
    max_size=3,
)
identity_maps = st.dictionaries(
    st.sampled_from(["RFID#abc", "NFC#1", "bad", "TOOLONGXX#1"]),
    st.dictionaries(
        st.sampled_from(["validity_ts", "visibility", "other"]),
        st.none() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=3) | st.booleans(),
        max_size=2,
    )
    | json_scalars,
    max_size=3,
)
field_values = json_values | plausible | entry_maps | identity_maps | st.lists(plausible, max_size=3)
field_names = st.sampled_from(
    [
        "twin",
        "ledger",
        "entries",
        "description",
        "identities",
        "identity",
        "show_terminated",
        "cursor",
        "count",
    ]
)
lines = st.dictionaries(field_names, field_values, max_size=4) | json_scalars


def verdict(check, data):
    try:
        return "valid", check(data)
    except ValidationError as error:
        info = describe_exception(error)
        return "invalid", (info.status_code, info.subcode, info.description)


def by_serializer(operation):
    def check(data):
        serializer = operation.input_serializer(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    return check


def lines_for(operation):
    """Lines with exactly the operation's fields, so that many of them are valid."""
    names = list(operation.input_serializer._declared_fields)
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, field_values)) | lines


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data())
def test_fast_validator_agrees_with_the_serializer(name, draw):
    operation = OPERATIONS[name]
    data = draw.draw(lines_for(operation))
    assert verdict(operation.fast_validator, data) == verdict(by_serializer(operation), data)


# Hostile values: what a JSON body cannot carry, handed to the validators directly (a CSV
# cell, a future caller). Both validators refuse them alike, with 400, and raise nothing else.


def nested(depth: int):
    value = []
    for _ in range(depth):
        value = [value]
    return value


hostile_scalars = st.sampled_from(
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        10**5000,
        -(10**4500),
        1e308,
        "\ud800",
        "a\udfffb",
        "\U0001f600",
        "\x00",
    ]
)
hostile_values = (
    hostile_scalars
    | st.builds(nested, st.sampled_from([63, 64, 65, 200, 5000]))
    | st.dictionaries(st.sampled_from(["a", "\ud800"]), hostile_scalars, min_size=1, max_size=2)
    | st.lists(hostile_scalars, min_size=1, max_size=2)
)
hostile_fields = hostile_values | entry_maps | identity_maps | field_values
hostile_entries = st.dictionaries(
    st.sampled_from(["a", "b_1"]),
    st.fixed_dictionaries({"value": hostile_values}, optional={"visibility": hostile_scalars}),
    min_size=1,
    max_size=2,
)
hostile_identities = st.dictionaries(
    st.sampled_from(["RFID#abc", "NFC#\ud800"]),
    st.fixed_dictionaries({}, optional={"visibility": hostile_scalars, "validity_ts": hostile_scalars}),
    min_size=1,
    max_size=2,
)


def hostile_lines_for(operation):
    names = list(operation.input_serializer._declared_fields)
    special = {"entries": hostile_entries, "identities": hostile_identities, "description": hostile_values}
    optional = {name: special.get(name, hostile_fields) | hostile_fields for name in names}
    return st.fixed_dictionaries({}, optional=optional)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data())
def test_hostile_values_get_the_same_400_from_both_validators(name, draw):
    operation = OPERATIONS[name]
    data = draw.draw(hostile_lines_for(operation))
    fast = verdict(operation.fast_validator, data)
    assert fast == verdict(by_serializer(operation), data)
    assert verdict(operation.validate_input, data) == fast
    if fast[0] == "invalid":
        assert fast[1][0] == 400
    else:
        # Whatever passes can be stored and answered: it is JSON, UTF-8 included.
        json.dumps(fast[1], default=str, allow_nan=False, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 10**5000, "\ud800", {"k": "\udc00"}, nested(65), nested(5000)],
    ids=["nan", "inf", "huge-int", "surrogate", "surrogate-in-object", "65-deep", "5000-deep"],
)
def test_values_no_body_can_carry_are_malformed_body(value):
    for name, data in [
        ("create_twin", {"description": {"a": value}}),
        ("add_twin_ledger_entry", {"twin": str(uuid.uuid4()), "entries": {"k": {"value": value}}}),
    ]:
        status, subcode, _ = verdict(OPERATIONS[name].validate_input, data)[1]
        assert (status, subcode) == (400, "malformed_body"), name


def test_a_lone_surrogate_in_a_visibility_rule_is_malformed_body():
    data = {"twin": str(uuid.uuid4()), "identities": {"RFID#a": {"visibility": "x\ud800"}}}
    assert verdict(OPERATIONS["create_twin_identity"].validate_input, data)[1][:2] == (400, "malformed_body")
