"""The fast validators give the serializers' verdicts: the same validated data, or the same
error (status, subcode, description)."""

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
