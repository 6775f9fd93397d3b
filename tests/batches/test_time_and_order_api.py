"""create_batch's and update_batch's time-and-order fields (contract §14): accepted, shown on the
batch object, refused with a subcode naming the field (never a 500), held to the Idempotency-Key's
body, parents checked like GET /batches/{batch}, and described by the schema."""

import functools
import time
import uuid

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given, settings
from hypothesis import strategies as st

from batches.models import Batch, BatchDependency
from batches.models import BatchStatus as S
from batches.validators import after_clean, priority_clean
from tests.support.assertions import assert_error
from tests.support.batch_api import create_batch, uploaded_handler
from tests.support.factories import BatchFactory


def created(caller, **body) -> dict:
    response = create_batch(caller, uploaded_handler(caller), **body)
    assert response.status_code == 201, response.content
    return response.json()


def test_a_batch_without_them_shows_priority_5_and_nothing_else(caller):
    body = created(caller)
    assert body["priority"] == 5
    assert not {"not_before", "deadline_ts", "after"} & set(body)
    stored = Batch.objects.get(uuid=body["batch"])
    assert (stored.not_before, stored.deadline_at, stored.priority) == (None, None, 5)
    assert not stored.requirements.exists()


def test_create_stores_and_shows_every_field(caller):
    completed = BatchFactory(caller=caller, status=S.COMPLETED)
    running = BatchFactory(caller=caller, status=S.PROCESSING)
    not_before, deadline = round(time.time() + 3600, 3), round(time.time() + 7200, 3)
    after = [{"batch": str(completed.uuid), "require": "no_failures"}, {"batch": str(running.uuid).upper()}]
    body = created(caller, not_before=not_before, deadline_ts=deadline, priority=9, after=after)

    expected_after = [
        {"batch": str(completed.uuid), "require": "no_failures"},
        {"batch": str(running.uuid), "require": "completed"},
    ]
    assert (body["not_before"], body["deadline_ts"], body["priority"]) == (not_before, deadline, 9)
    assert body["after"] == expected_after
    fetched = caller.client.get(f"/batches/{body['batch']}").json()
    assert {key: fetched[key] for key in ("not_before", "deadline_ts", "priority", "after")} == {
        "not_before": not_before,
        "deadline_ts": deadline,
        "priority": 9,
        "after": expected_after,
    }
    rows = BatchDependency.objects.filter(batch__uuid=body["batch"]).order_by("pk")
    assert [(row.parent_id, row.parent_uuid, row.require) for row in rows] == [
        (completed.pk, completed.uuid, "no_failures"),
        (running.pk, running.uuid, "completed"),
    ]


def test_complete_within_is_a_deadline_that_many_seconds_from_now(caller):
    before = time.time()
    body = created(caller, complete_within=600)
    assert before + 600 - 5 <= body["deadline_ts"] <= time.time() + 600 + 5
    assert "complete_within" not in body


def test_a_past_not_before_is_accepted(caller):
    assert created(caller, not_before=1.5)["not_before"] == 1.5


def test_nulls_are_the_same_as_absent(caller):
    body = created(caller, not_before=None, deadline_ts=None, complete_within=None, priority=None, after=None)
    assert body["priority"] == 5 and not {"not_before", "deadline_ts", "after"} & set(body)


def test_an_integral_number_is_an_integer_priority(caller):
    assert created(caller, priority=7.0)["priority"] == 7


def test_the_limits_themselves_are_accepted(caller):
    parents = [BatchFactory(caller=caller, status=S.COMPLETED) for _ in range(20)]
    body = created(caller, priority=1, after=[{"batch": str(parent.uuid)} for parent in parents])
    assert body["priority"] == 1 and len(body["after"]) == 20


HOSTILE_TIMES = [
    "1764325200",
    "2026-12-07T00:00:00Z",
    True,
    -1,
    -0.001,
    253402300800,
    10**30,
    1e308,
    [1764325200],
    {"ts": 1764325200},
]
HOSTILE_TIME_IDS = [
    "string",
    "iso string",
    "boolean",
    "negative",
    "negative fraction",
    "past year 9999",
    "huge integer",
    "huge float",
    "list",
    "object",
]


@pytest.mark.parametrize("value", HOSTILE_TIMES, ids=HOSTILE_TIME_IDS)
def test_a_bad_not_before_is_400_invalid_not_before(caller, value):
    body = assert_error(
        create_batch(caller, uploaded_handler(caller), not_before=value), 400, "invalid_not_before"
    )
    assert "not_before" in body["description"]
    assert not Batch.objects.exists()


@pytest.mark.parametrize("value", HOSTILE_TIMES, ids=HOSTILE_TIME_IDS)
def test_a_bad_deadline_ts_is_400_invalid_deadline(caller, value):
    assert_error(create_batch(caller, uploaded_handler(caller), deadline_ts=value), 400, "invalid_deadline")
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "value",
    [0, -5, "60", True, 10**30, 1e308, [60], {"s": 60}],
    ids=["zero", "negative", "string", "boolean", "huge integer", "huge float", "list", "object"],
)
def test_a_bad_complete_within_is_400_invalid_deadline(caller, value):
    assert_error(
        create_batch(caller, uploaded_handler(caller), complete_within=value), 400, "invalid_deadline"
    )
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"deadline_ts": 1.0},
        {"deadline_ts": time.time() + 3600, "complete_within": 60},
        {"not_before": time.time() + 7200, "deadline_ts": time.time() + 3600},
    ],
    ids=["already past", "both", "before not_before"],
)
def test_an_impossible_deadline_is_400_invalid_deadline(caller, body):
    assert_error(create_batch(caller, uploaded_handler(caller), **body), 400, "invalid_deadline")
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "value",
    [0, 10, -1, 5.5, "5", True, False, [5], {"p": 5}, 10**30, 1e308],
    ids=[
        "0",
        "10",
        "negative",
        "fraction",
        "string",
        "true",
        "false",
        "list",
        "object",
        "huge",
        "huge float",
    ],
)
def test_a_bad_priority_is_400_invalid_priority(caller, value):
    body = assert_error(
        create_batch(caller, uploaded_handler(caller), priority=value), 400, "invalid_priority"
    )
    assert "priority" in body["description"]
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "value",
    [
        "not-a-list",
        {"batch": "x"},
        ["6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11"],
        [{"batch": "not-a-uuid"}],
        [{"batch": 5}],
        [{"batch": ["6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11"]}],
        [{"require": "completed"}],
        [{"batch": "6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11", "require": "succeeded"}],
        [{"batch": "6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11", "require": ["completed"]}],
        [{"batch": "6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11", "when": "now"}],
        [{"batch": str(uuid.UUID(int=n))} for n in range(21)],
        [
            {"batch": "6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11"},
            {"batch": "6F1D3C7E-8A48-4A59-9BD2-5B1FBD0E7A11"},
        ],
    ],
    ids=[
        "string",
        "object",
        "list of strings",
        "not a uuid",
        "number",
        "nested list",
        "no batch",
        "unknown require",
        "require list",
        "unknown key",
        "21 parents",
        "a parent twice",
    ],
)
def test_a_bad_after_is_400_invalid_after(caller, value):
    body = assert_error(create_batch(caller, uploaded_handler(caller), after=value), 400, "invalid_after")
    assert "after" in body["description"]
    assert not Batch.objects.exists()


def test_an_unknown_or_another_accounts_parent_is_404_as_get_answers(caller, stranger):
    theirs = BatchFactory(caller=stranger)
    mine = BatchFactory(caller=caller)
    unknown = str(uuid.uuid4())
    as_get = assert_error(caller.client.get(f"/batches/{unknown}"), 404, "not_found")
    for parent in (unknown, str(theirs.uuid)):
        after = [{"batch": str(mine.uuid)}, {"batch": parent}]
        body = assert_error(create_batch(caller, uploaded_handler(caller), after=after), 404, "not_found")
        assert body["description"] == as_get["description"]
    assert Batch.objects.count() == 2 and not BatchDependency.objects.exists()


def test_the_same_idempotency_key_with_other_schedule_is_409(caller):
    parent = BatchFactory(caller=caller)
    handler = uploaded_handler(caller)
    key = {"Idempotency-Key": "order-28"}
    body = {"priority": 7, "complete_within": 600, "after": [{"batch": str(parent.uuid)}]}
    first = create_batch(caller, handler, headers=key, **body)
    assert first.status_code == 201, first.content
    again = create_batch(caller, handler, headers=key, **body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["batch"] == first.json()["batch"]
    for changed in ({"priority": 8}, {"complete_within": 601}, {"after": None}):
        assert_error(
            create_batch(caller, handler, headers=key, **{**body, **changed}), 409, "idempotency_key_reused"
        )


def test_the_default_priority_given_digests_as_absent(caller):
    handler = uploaded_handler(caller)
    key = {"Idempotency-Key": "order-28-default"}
    assert create_batch(caller, handler, headers=key).status_code == 201
    assert create_batch(caller, handler, headers=key, priority=5).headers["Idempotent-Replayed"] == "true"


# update_batch


def patch(caller, batch, body):
    return caller.client.patch(f"/batches/{batch.uuid}", body, format="json")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": "paused", "operation": "x"},
        {"status": "cancel", "priority": 3},
        {"status": "completed"},
        {"status": ["paused"]},
        {"after": []},
        ["paused"],
    ],
    ids=["empty", "unknown key", "cancel and more", "other status", "status list", "after", "list"],
)
def test_patch_refuses_what_it_cannot_change(caller, body):
    batch = BatchFactory(caller=caller)
    assert_error(patch(caller, batch, body), 400, "unsupported_change")
    assert Batch.objects.get(pk=batch.pk).status == S.NEW


@pytest.mark.parametrize(
    ("body", "subcode"),
    [
        ({"not_before": "soon"}, "invalid_not_before"),
        ({"deadline_ts": -1}, "invalid_deadline"),
        ({"deadline_ts": 1.0}, "invalid_deadline"),
        ({"complete_within": 0}, "invalid_deadline"),
        ({"complete_within": None}, "invalid_deadline"),
        ({"deadline_ts": time.time() + 60, "complete_within": 60}, "invalid_deadline"),
        ({"priority": None}, "invalid_priority"),
        ({"priority": True}, "invalid_priority"),
        ({"priority": 10}, "invalid_priority"),
    ],
)
def test_patch_refuses_bad_values_with_the_fields_subcode(caller, body, subcode):
    batch = BatchFactory(caller=caller)
    assert_error(patch(caller, batch, body), 400, subcode)
    stored = Batch.objects.get(pk=batch.pk)
    assert (stored.not_before, stored.deadline_at, stored.priority) == (None, None, 5)


def test_patch_still_cancels(caller):
    batch = BatchFactory(caller=caller)
    response = patch(caller, batch, {"status": "cancel"})
    assert response.status_code == 200 and response.json()["status"] == "cancel"


needs_pause = pytest.mark.skipif(
    not all(
        hasattr(__import__("batches.services").services, name) for name in ("batch_pause", "batch_resume")
    ),
    reason="batches.services.batch_pause/batch_resume are not in the tree yet",
)
needs_reschedule = pytest.mark.skipif(
    not hasattr(__import__("batches.services").services, "batch_reschedule"),
    reason="batches.services.batch_reschedule is not in the tree yet",
)


@needs_reschedule
def test_patch_reschedules(caller):
    batch = BatchFactory(caller=caller)
    not_before, deadline = round(time.time() + 3600, 3), round(time.time() + 7200, 3)
    response = patch(caller, batch, {"not_before": not_before, "deadline_ts": deadline, "priority": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["not_before"], body["deadline_ts"], body["priority"]) == (not_before, deadline, 2)
    stored = Batch.objects.get(pk=batch.pk)
    assert (stored.not_before.timestamp(), stored.deadline_at.timestamp(), stored.priority) == (
        not_before,
        deadline,
        2,
    )

    before = time.time()
    body = patch(caller, batch, {"complete_within": 60, "not_before": None}).json()
    assert before + 55 <= body["deadline_ts"] <= time.time() + 65 and "not_before" not in body


@needs_reschedule
def test_patch_of_an_ended_batch_is_409(caller):
    batch = BatchFactory(caller=caller, status=S.COMPLETED)
    assert_error(patch(caller, batch, {"priority": 2}), 409, "batch_ended")


@needs_pause
def test_patch_pauses_and_resumes(caller):
    batch = BatchFactory(caller=caller, status=S.PROCESSING)
    paused = patch(caller, batch, {"status": "paused"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert Batch.objects.get(pk=batch.pk).status == S.PAUSED
    resumed = patch(caller, batch, {"status": "processing"})
    assert resumed.status_code == 200 and resumed.json()["status"] == "processing"


@needs_pause
def test_pausing_a_new_batch_is_409(caller):
    batch = BatchFactory(caller=caller)
    assert_error(patch(caller, batch, {"status": "paused"}), 409, "batch_not_pausable")


# The schema: what it admits is what the API accepts.


@functools.cache
def schema_of(component: str, name: str) -> jsonschema.Draft202012Validator:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return jsonschema.Draft202012Validator(schema["components"]["schemas"][component]["properties"][name])


def accepts(clean, value) -> bool:
    try:
        clean(value)
    except ValidationError:
        return False
    return True


values = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 12), st.floats(allow_nan=False), st.text(max_size=3)
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_the_schema_of_priority_admits_exactly_what_update_accepts(value):
    assert schema_of("BatchUpdate", "priority").is_valid(value) == accepts(priority_clean, value), value


parent_ids = st.sampled_from(
    ["6f1d3c7e-8a48-4a59-9bd2-5b1fbd0e7a11", "c0ffee00-0000-4000-8000-000000000001", "x"]
)
requirements = st.one_of(st.sampled_from(["completed", "no_failures", "terminal", "done"]), values)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        values,
        st.lists(
            st.one_of(
                values,
                st.fixed_dictionaries(
                    {"batch": parent_ids}, optional={"require": requirements, "more": values}
                ),
            ),
            max_size=3,
        ),
    )
)
def test_the_schema_of_after_admits_what_create_accepts(value):
    # The schema cannot say "no batch twice" (nor check a uuid's form): it admits, the API refuses.
    assert schema_of("BatchCreate", "after").is_valid(value) or not accepts(after_clean, value), value


def test_the_batch_object_in_the_schema_has_them():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    batch = schema["components"]["schemas"]["Batch"]
    assert {"not_before", "deadline_ts", "priority", "after"} <= set(batch["properties"])
    assert "priority" in batch["required"] and not {"not_before", "deadline_ts", "after"} & set(
        batch["required"]
    )
    update = schema["components"]["schemas"]["BatchUpdate"]
    assert set(update["properties"]) == {"status", "not_before", "deadline_ts", "complete_within", "priority"}
    assert update["additionalProperties"] is False
    statuses = schema["components"]["schemas"]["BatchUpdateStatusEnum"]["enum"]
    assert statuses == ["cancel", "paused", "processing"]


@pytest.mark.parametrize("field", ["not_before", "deadline_ts", "complete_within", "priority"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000])
def test_numbers_json_cannot_hold_are_400(caller, field, literal):
    handler = uploaded_handler(caller)
    raw = f'{{"handler": "{handler}", "operation": "create_twin", "{field}": {literal}}}'
    response = caller.client.post("/batches", raw, content_type="application/json")
    assert_error(response, 400)
    assert not Batch.objects.exists()
