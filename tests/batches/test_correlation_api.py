"""create_batch's `id_field` and `echo_fields` (contract §15): accepted, refused with their own
subcodes, shown on every batch object, held to the Idempotency-Key's body, inherited by a retry
and described by the schema."""

import functools

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given, settings
from hypothesis import strategies as st

from batches.models import Batch
from batches.validators import echo_fields_clean, id_field_clean
from tests.support.assertions import assert_error
from tests.support.batch_api import create_batch, uploaded_handler
from tests.support.inline_pipeline import run_batch

CONTENT = b'{"ref": "a-1", "description": {"n": 1}}\n{"ref": "a-2", "description": {"n": 2}}\n'


def created(caller, **body) -> dict:
    response = create_batch(caller, uploaded_handler(caller, CONTENT), **body)
    assert response.status_code == 201, response.content
    return response.json()


def test_create_then_get_shows_the_id_field_and_the_echoed_fields(caller):
    body = created(caller, id_field="ref", echo_fields=["description", "note"])
    assert (body["id_field"], body["echo_fields"]) == ("ref", ["description", "note"])
    fetched = caller.client.get(f"/batches/{body['batch']}").json()
    assert (fetched["id_field"], fetched["echo_fields"]) == ("ref", ["description", "note"])
    stored = Batch.objects.get(pk=body["batch"])
    assert (stored.id_field, stored.echo_fields) == ("ref", ["description", "note"])
    cancelled = caller.client.patch(f"/batches/{body['batch']}", {"status": "cancel"}, format="json").json()
    assert (cancelled["id_field"], cancelled["echo_fields"]) == ("ref", ["description", "note"])


@pytest.mark.parametrize(
    "given",
    [{}, {"id_field": None, "echo_fields": None}, {"id_field": "", "echo_fields": []}],
    ids=["absent", "null", "empty"],
)
def test_a_batch_without_them_shows_null_and_an_empty_list(caller, given):
    body = created(caller, **given)
    assert (body["id_field"], body["echo_fields"]) == (None, [])
    fetched = caller.client.get(f"/batches/{body['batch']}").json()
    assert (fetched["id_field"], fetched["echo_fields"]) == (None, [])


def test_the_limits_themselves_are_accepted(caller):
    names = [f"field_{n}" for n in range(20)]
    body = created(caller, id_field="i" * 128, echo_fields=["e" * 128, *names[1:]])
    assert body["id_field"] == "i" * 128 and len(body["echo_fields"]) == 20


@pytest.mark.parametrize(
    "value",
    [5, 1.5, True, {"name": "ref"}, ["ref"], "r" * 129],
    ids=["integer", "number", "boolean", "object", "list", "129 characters"],
)
def test_a_bad_id_field_is_400_invalid_id_field(caller, value):
    body = assert_error(
        create_batch(caller, uploaded_handler(caller), id_field=value), 400, "invalid_id_field"
    )
    assert "id_field" in body["description"]
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("description", "list"),
        (5, "list"),
        ({"description": True}, "list"),
        ([5], "5"),
        ([None], "None"),
        ([""], "non-empty"),
        (["e" * 129], "128"),
        ([f"field_{n}" for n in range(21)], "21"),
        (["note", "note"], "twice"),
    ],
    ids=[
        "string",
        "integer",
        "object",
        "integer item",
        "null item",
        "empty name",
        "129 characters",
        "21 fields",
        "duplicates",
    ],
)
def test_bad_echo_fields_are_400_invalid_echo_fields(caller, value, named):
    body = assert_error(
        create_batch(caller, uploaded_handler(caller), echo_fields=value), 400, "invalid_echo_fields"
    )
    assert named in body["description"]
    assert not Batch.objects.exists()


def test_the_same_idempotency_key_with_other_fields_is_409(caller):
    handler = uploaded_handler(caller, CONTENT)
    key = {"Idempotency-Key": "order-18"}
    first = create_batch(caller, handler, headers=key, id_field="ref", echo_fields=["description"])
    assert first.status_code == 201, first.content

    again = create_batch(caller, handler, headers=key, id_field="ref", echo_fields=["description"])
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["batch"] == first.json()["batch"] and again.json()["id_field"] == "ref"

    for changed in (
        {"id_field": "other", "echo_fields": ["description"]},
        {"echo_fields": ["description"]},
        {"id_field": "ref", "echo_fields": ["note"]},
        {"id_field": "ref"},
    ):
        assert_error(create_batch(caller, handler, headers=key, **changed), 409, "idempotency_key_reused")
    assert Batch.objects.count() == 1


def test_a_retry_keeps_the_id_field_and_the_echoed_fields(caller):
    body = created(caller, id_field="ref", echo_fields=["description"])
    caller.client.patch(f"/batches/{body['batch']}", {"status": "cancel"}, format="json")
    assert run_batch(Batch.objects.get(pk=body["batch"])).status == "cancelled"

    response = caller.client.post(f"/batches/{body['batch']}/retry")
    assert response.status_code == 201, response.content
    retry = response.json()
    assert retry["retry_of"] == body["batch"]
    assert (retry["id_field"], retry["echo_fields"]) == ("ref", ["description"])
    fetched = caller.client.get(f"/batches/{retry['batch']}").json()
    assert (fetched["id_field"], fetched["echo_fields"]) == ("ref", ["description"])


# The schema: what it admits is exactly what the API accepts.


@functools.cache
def create_schema(name: str) -> jsonschema.Draft202012Validator:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return jsonschema.Draft202012Validator(schema["components"]["schemas"]["BatchCreate"]["properties"][name])


def accepts(clean, value) -> bool:
    try:
        clean(value)
    except ValidationError:
        return False
    return True


names = st.one_of(
    st.text(max_size=3),
    st.sampled_from(["x" * 128, "x" * 129]),
    st.integers(),
    st.none(),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(names, st.lists(names, max_size=2), st.dictionaries(st.text(max_size=2), names, max_size=2)))
def test_the_schema_of_id_field_admits_exactly_what_the_api_accepts(value):
    assert create_schema("id_field").is_valid(value) == accepts(id_field_clean, value), value


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        names,
        st.lists(names, max_size=4),
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=4),
        st.lists(st.text(min_size=1, max_size=4), min_size=19, max_size=22),
    )
)
def test_the_schema_of_echo_fields_admits_exactly_what_the_api_accepts(value):
    assert create_schema("echo_fields").is_valid(value) == accepts(echo_fields_clean, value), value


def test_the_batch_object_in_the_schema_always_has_both():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    batch = schema["components"]["schemas"]["Batch"]
    assert {"id_field", "echo_fields"} <= set(batch["required"])
    assert batch["properties"]["id_field"]["type"] == ["string", "null"]
    assert batch["properties"]["echo_fields"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": batch["properties"]["echo_fields"]["description"],
    }
