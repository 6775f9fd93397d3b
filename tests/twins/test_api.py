"""Every twin operation through its REST route: success, bad input, state errors, another
account's twin (404) and a role without the action (403)."""

from urllib.parse import quote

import pytest

from tests.support.assertions import assert_error
from twins.registry import OPERATIONS

pytestmark = pytest.mark.django_db

RFID = "RFID#be744bdc-0f6d-4a00"
NFC = "NFC#6c02a13e"
MISSING = "00000000-0000-4000-8000-000000000000"


def ident(identity: str) -> str:
    return quote(identity, safe="")


def test_create_twin_answers_trusted_twins_shape(caller):
    response = caller.client.post(
        "/twins", {"description": {"key1": "123", "nested": {"a": [1]}}}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "alive"
    assert body["owner"] == str(caller.account.uuid)
    assert body["description"] == {"key1": "123", "nested": {"a": [1]}}
    certificate = body["creation_certificate"]
    assert set(certificate) == {"uuid", "created_ts", "creator"}
    assert certificate["creator"] == str(caller.account.uuid)
    assert round(certificate["created_ts"], 3) == certificate["created_ts"]
    assert "termination_certificate" not in body


def test_create_twin_without_body_has_no_description(caller):
    response = caller.client.post("/twins")
    assert response.status_code == 201
    assert "description" not in response.json()


@pytest.mark.parametrize(
    "description, subcode, named",
    [
        ({"Bad-Key": 1}, "invalid_key", "Bad-Key"),
        ({"k" * 65: 1}, "invalid_key", "k" * 65),
        ({"big": "x" * 70_000}, "quota_violation", "description"),
        ([1, 2], "invalid_input", "description"),
    ],
)
def test_create_twin_refuses_bad_descriptions(caller, description, subcode, named):
    body = assert_error(
        caller.client.post("/twins", {"description": description}, format="json"), 400, subcode
    )
    assert named in body["description"]


def test_create_twin_refuses_a_body_that_is_not_an_object(caller):
    assert_error(caller.client.post("/twins", [1], format="json"), 400, "malformed_body")


def test_get_twin(caller, make_twin):
    twin = make_twin(description={"a": 1})
    response = caller.client.get(f"/twins/{twin}")
    assert response.status_code == 200
    assert response.json()["description"] == {"a": 1}


def test_get_terminated_twin_needs_show_terminated(caller, make_twin):
    twin = make_twin()
    caller.client.delete(f"/twins/{twin}")
    assert_error(caller.client.get(f"/twins/{twin}"), 404, "not_found")
    response = caller.client.get(f"/twins/{twin}?show_terminated=True")
    assert response.status_code == 200
    assert response.json()["status"] == "terminated"
    assert_error(caller.client.get(f"/twins/{twin}?show_terminated=maybe"), 400, "invalid_input")


def test_update_twin_sets_and_removes_keys(caller, make_twin):
    twin = make_twin(description={"keep": 1, "drop": 2})
    response = caller.client.patch(
        f"/twins/{twin}", {"description": {"drop": None, "new": "x"}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["description"] == {"keep": 1, "new": "x"}


def test_update_twin_errors(caller, make_twin):
    twin = make_twin(description={"big": "x" * 40_000})
    assert_error(caller.client.patch(f"/twins/{twin}", {}, format="json"), 400, "invalid_input")
    assert_error(
        caller.client.patch(f"/twins/{twin}", {"description": {"A": 1}}, format="json"), 400, "invalid_key"
    )
    body = assert_error(
        caller.client.patch(f"/twins/{twin}", {"description": {"more": "y" * 40_000}}, format="json"),
        400,
        "quota_violation",
    )
    assert "description" in body["description"]
    caller.client.delete(f"/twins/{twin}")
    assert_error(
        caller.client.patch(f"/twins/{twin}", {"description": {"a": 1}}, format="json"),
        400,
        "twin_terminated",
    )


def test_terminate_twin_once(caller, make_twin):
    twin = make_twin()
    response = caller.client.delete(f"/twins/{twin}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "terminated"
    assert body["termination_certificate"]["issuer"] == str(caller.account.uuid)
    assert isinstance(body["termination_certificate"]["terminated_ts"], float)
    assert_error(caller.client.delete(f"/twins/{twin}"), 400, "idempotency_violation")


def test_scan_twins_pages_through_alive_twins(caller, make_twin, stranger):
    twins = sorted(make_twin() for _ in range(5))
    make_twin(owner=stranger)
    caller.client.delete(f"/twins/{twins[0]}")
    first = caller.client.get("/twins?count=3").json()
    assert first["twins"] == twins[1:4]
    second = caller.client.get(f"/twins?count=3&cursor={first['cursor']}").json()
    assert second == {"twins": twins[4:], "cursor": None}
    assert_error(caller.client.get("/twins?count=0"), 400, "invalid_input")
    assert_error(caller.client.get("/twins?cursor=nonsense"), 400, "invalid_input")


def test_create_and_get_identities(caller, make_twin):
    twin = make_twin()
    response = caller.client.post(
        f"/twins/{twin}/identities",
        {"identities": {RFID: {"validity_ts": 4102444800.5, "visibility": "USER.x == 1"}, NFC: {}}},
        format="json",
    )
    assert response.status_code == 201
    created = response.json()["identities"]
    assert created[RFID]["validity_ts"] == 4102444800.5
    assert created[RFID]["visibility"] == "USER.x == 1"
    assert created[NFC]["creation_certificate"] == {
        "created_ts": created[NFC]["created_ts"],
        "creator": str(caller.account.uuid),
        "identity": NFC,
    }
    listed = caller.client.get(f"/twins/{twin}/identities").json()["identities"]
    assert set(listed) == {RFID, NFC}
    assert set(listed[NFC]) == {"validity_ts", "created_ts", "updated_ts"}


@pytest.mark.parametrize(
    "identities",
    [{}, {"no-hash": {}}, {"TOOLONGPREFIX#1": {}}, {RFID: {"validity_ts": "soon"}}, {RFID: {"colour": 1}}],
)
def test_create_identity_refuses_bad_input(caller, make_twin, identities):
    twin = make_twin()
    assert_error(
        caller.client.post(f"/twins/{twin}/identities", {"identities": identities}, format="json"), 400
    )


def test_create_identity_state_errors(caller, make_twin):
    twin = make_twin()
    caller.client.post(f"/twins/{twin}/identities", {"identities": {RFID: {}}}, format="json")
    body = assert_error(
        caller.client.post(f"/twins/{twin}/identities", {"identities": {NFC: {}, RFID: {}}}, format="json"),
        400,
        "identity_exists",
    )
    assert RFID in body["description"]
    assert set(caller.client.get(f"/twins/{twin}/identities").json()["identities"]) == {RFID}
    caller.client.delete(f"/twins/{twin}")
    assert_error(
        caller.client.post(f"/twins/{twin}/identities", {"identities": {NFC: {}}}, format="json"),
        400,
        "twin_terminated",
    )


def test_delete_identity(caller, make_twin):
    twin = make_twin()
    caller.client.post(f"/twins/{twin}/identities", {"identities": {RFID: {}}}, format="json")
    response = caller.client.delete(f"/twins/{twin}/identities/{ident(RFID)}")
    assert response.status_code == 200
    assert response.json()["creation_certificate"]["identity"] == RFID
    assert_error(caller.client.delete(f"/twins/{twin}/identities/{ident(RFID)}"), 404, "not_found")
    assert_error(caller.client.delete(f"/twins/{twin}/identities/bad"), 400, "invalid_input")


def test_resolve_identity_within_the_account(caller, make_twin, stranger):
    mine = sorted([make_twin(), make_twin()])
    theirs = make_twin(owner=stranger)
    for twin in mine:
        caller.client.post(f"/twins/{twin}/identities", {"identities": {RFID: {}}}, format="json")
    stranger.client.post(f"/twins/{theirs}/identities", {"identities": {RFID: {}}}, format="json")
    caller.client.post(
        f"/twins/{mine[0]}/identities", {"identities": {NFC: {"validity_ts": 1000.0}}}, format="json"
    )
    assert caller.client.get(f"/resolve/{ident(RFID)}").json() == {"twins": mine}
    assert_error(caller.client.get(f"/resolve/{ident(NFC)}"), 404, "not_found")
    assert_error(caller.client.get("/resolve/nohash"), 400, "invalid_input")


def test_ledger_entries_lifecycle(caller, make_twin):
    twin = make_twin()
    response = caller.client.post(
        f"/twins/{twin}/ledgers/personal",
        {"entries": {"temp": {"value": 21.5}, "tags": {"value": ["a"], "visibility": "true"}}},
        format="json",
    )
    assert response.status_code == 201
    entry = response.json()["entries"]["temp"]
    assert set(entry) == {"value", "visibility", "entry_created_ts", "entry_updated_ts", "value_changed_ts"}
    assert entry["value"] == 21.5 and entry["visibility"] is None

    response = caller.client.patch(
        f"/twins/{twin}/ledgers/{caller.account.uuid}",
        {"entries": {"tags": {"visibility": None}}},
        format="json",
    )
    assert response.status_code == 200
    tags = response.json()["entries"]["tags"]
    assert tags["value"] == ["a"] and tags["visibility"] is None
    assert tags["value_changed_ts"] == tags["entry_created_ts"]

    everything = caller.client.get(f"/twins/{twin}/ledgers/personal").json()["entries"]
    assert set(everything) == {"temp", "tags"}
    some = caller.client.get(f"/twins/{twin}/ledgers/personal?entries=temp,absent").json()["entries"]
    assert set(some) == {"temp"}

    response = caller.client.delete(f"/twins/{twin}/ledgers/personal?entries=temp")
    assert response.status_code == 200
    assert response.json()["entries"]["temp"]["value"] == 21.5
    assert set(caller.client.get(f"/twins/{twin}/ledgers/personal").json()["entries"]) == {"tags"}


@pytest.mark.parametrize(
    "entries, subcode",
    [
        ({}, "invalid_input"),
        ({"Bad": {"value": 1}}, "invalid_key"),
        ({"k": {"visibility": "x"}}, "invalid_input"),
        ({"k": {"value": "x" * 20_000}}, "quota_violation"),
        ({"k": {"value": 1, "history": "3M"}}, "invalid_input"),
    ],
)
def test_add_entry_refuses_bad_input(caller, make_twin, entries, subcode):
    twin = make_twin()
    response = caller.client.post(f"/twins/{twin}/ledgers/personal", {"entries": entries}, format="json")
    assert_error(response, 400, subcode)


def test_ledger_state_errors(caller, make_twin, stranger):
    twin = make_twin()
    url = f"/twins/{twin}/ledgers/personal"
    caller.client.post(url, {"entries": {"a": {"value": 1}}}, format="json")
    body = assert_error(
        caller.client.post(url, {"entries": {"b": {"value": 2}, "a": {"value": 3}}}, format="json"),
        400,
        "entry_exists",
    )
    assert "'a'" in body["description"]
    assert set(caller.client.get(url).json()["entries"]) == {"a"}
    assert_error(
        caller.client.patch(url, {"entries": {"zz": {"value": 1}}}, format="json"), 400, "entry_not_found"
    )
    assert_error(caller.client.delete(f"{url}?entries=a,zz"), 400, "entry_not_found")
    assert_error(caller.client.delete(url), 400, "invalid_input")
    assert_error(caller.client.get(f"/twins/{twin}/ledgers/{stranger.account.uuid}"), 404, "not_found")
    assert_error(caller.client.get(f"/twins/{twin}/ledgers/someone"), 400, "invalid_input")
    caller.client.delete(f"/twins/{twin}")
    assert_error(
        caller.client.post(url, {"entries": {"c": {"value": 1}}}, format="json"), 400, "twin_terminated"
    )
    assert_error(
        caller.client.patch(url, {"entries": {"a": {"value": 2}}}, format="json"), 400, "twin_terminated"
    )
    assert_error(caller.client.delete(f"{url}?entries=a"), 400, "twin_terminated")


# One request per operation on an existing twin; {twin} is filled in.
REQUESTS = {
    "get_twin": ("get", "/twins/{twin}", None),
    "update_twin": ("patch", "/twins/{twin}", {"description": {"a": 1}}),
    "terminate_twin": ("delete", "/twins/{twin}", None),
    "create_twin_identity": ("post", "/twins/{twin}/identities", {"identities": {NFC: {}}}),
    "get_twin_identities": ("get", "/twins/{twin}/identities", None),
    "delete_twin_identity": ("delete", "/twins/{twin}/identities/" + ident(RFID), None),
    "add_twin_ledger_entry": ("post", "/twins/{twin}/ledgers/personal", {"entries": {"b": {"value": 1}}}),
    "get_twin_ledger_entry": ("get", "/twins/{twin}/ledgers/personal", None),
    "update_twin_ledger_entry": ("patch", "/twins/{twin}/ledgers/personal", {"entries": {"a": {"value": 2}}}),
    "delete_twin_ledger_entry": ("delete", "/twins/{twin}/ledgers/personal?entries=a", None),
}


def call(client, operation: str, twin: str):
    method, url, body = REQUESTS[operation]
    return getattr(client, method)(url.format(twin=twin), body, format="json")


@pytest.fixture
def furnished_twin(caller, make_twin):
    twin = make_twin()
    caller.client.post(f"/twins/{twin}/identities", {"identities": {RFID: {}}}, format="json")
    caller.client.post(f"/twins/{twin}/ledgers/personal", {"entries": {"a": {"value": 1}}}, format="json")
    return twin


def test_every_twin_route_is_covered():
    assert set(REQUESTS) | {"create_twin", "scan_twins", "resolve_twin_identity"} == set(OPERATIONS)


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_another_accounts_twin_is_not_found(operation, furnished_twin, stranger):
    assert_error(call(stranger.client, operation, furnished_twin), 404, "not_found")


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_a_missing_twin_is_not_found(operation, caller):
    assert_error(call(caller.client, operation, MISSING), 404, "not_found")


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_each_operation_succeeds_on_a_furnished_twin(operation, furnished_twin, caller):
    assert call(caller.client, operation, furnished_twin).status_code == OPERATIONS[operation].success_status


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_role_without_the_action_is_forbidden(operation, furnished_twin, caller, make_caller):
    denied = make_caller(account=caller.account, statement={"effect": "deny", "actions": [operation]})
    assert_error(call(denied.client, operation, furnished_twin), 403, "action_not_allowed")
    others = [name for name in REQUESTS if name != operation]
    assert call(denied.client, others[0], furnished_twin).status_code < 400


def test_role_without_create_scan_or_resolve_is_forbidden(caller, make_caller):
    denied = make_caller(account=caller.account, statement={"effect": "allow", "actions": ["get_twin"]})
    assert_error(denied.client.post("/twins", {}, format="json"), 403, "action_not_allowed")
    assert_error(denied.client.get("/twins"), 403, "action_not_allowed")
    assert_error(denied.client.get(f"/resolve/{ident(RFID)}"), 403, "action_not_allowed")


def test_no_secret_is_unauthorized(client):
    assert_error(client.get("/twins"), 401)
