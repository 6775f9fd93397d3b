"""Trusted Twin's own Python client, unchanged, against a live server: every twin operation
answers with the documented status code and fields."""

import json

import pytest
from trustedtwin.tt_api import TTRESTService

pytestmark = pytest.mark.django_db(transaction=True)

RFID = "RFID#be744bdc-0f6d-4a00-8199-9f6a893c1bde"
NFC = "NFC#6c02a13e-cbac-473d-982c-807c2e7cfb7c"
TWIN_FIELDS = {"status", "owner", "updated_ts", "creation_certificate", "description"}
ENTRY_FIELDS = {"value", "visibility", "entry_created_ts", "entry_updated_ts", "value_changed_ts"}


def answer(call) -> tuple[int, dict]:
    status, text = call
    return status, json.loads(text)


def test_every_twin_operation_through_the_trustedtwin_client(live_server, caller):
    # A 5xx would be a bug; retries=1 makes it fail at once instead of after 10 s of retries.
    tt = TTRESTService(tt_auth=caller.secret, tt_base=live_server.url)
    account = str(caller.account.uuid)

    status, twin = answer(
        tt.create_twin(body={"description": {"key1": "123", "key2": "some string"}}, retries=1)
    )
    assert status == 201 and set(twin) == TWIN_FIELDS
    assert twin["owner"] == twin["creation_certificate"]["creator"] == account
    uuid = twin["creation_certificate"]["uuid"]

    status, body = answer(tt.get_twin(uuid, retries=1))
    assert status == 200 and body["description"] == {"key1": "123", "key2": "some string"}

    status, body = answer(tt.update_twin(uuid, body={"description": {"key1": None, "key3": 3}}, retries=1))
    assert status == 200 and body["description"] == {"key2": "some string", "key3": 3}

    status, body = answer(tt.scan_twins(params={"count": 10}, retries=1))
    assert status == 200 and body == {"twins": [uuid], "cursor": None}

    identities = {RFID: {"validity_ts": 4102444800.123, "visibility": "USER.x == 1"}, NFC: {}}
    status, body = answer(tt.create_twin_identity(uuid, body={"identities": identities}, retries=1))
    assert status == 201 and set(body["identities"]) == {RFID, NFC}
    assert body["identities"][RFID]["validity_ts"] == 4102444800.123

    status, body = answer(tt.get_twin_identities(uuid, retries=1))
    assert status == 200
    assert set(body["identities"][RFID]) == {"validity_ts", "created_ts", "updated_ts"}

    status, body = answer(tt.resolve_twin_identity(RFID, retries=1))
    assert status == 200 and body == {"twins": [uuid]}

    status, body = answer(tt.delete_twin_identity(uuid, NFC, retries=1))
    assert status == 200 and body["creation_certificate"] == {
        "created_ts": body["created_ts"],
        "creator": account,
        "identity": NFC,
    }

    entries = {"entry1": {"value": 123}, "entry2": {"value": {"a": [1]}, "visibility": "USER.x == 1"}}
    status, body = answer(tt.add_twin_ledger_entry(uuid, body={"entries": entries}, retries=1))
    assert status == 201 and set(body["entries"]["entry1"]) == ENTRY_FIELDS

    status, body = answer(
        tt.update_twin_ledger_entry(uuid, account, body={"entries": {"entry1": {"value": 456}}}, retries=1)
    )
    assert status == 200 and body["entries"]["entry1"]["value"] == 456

    status, body = answer(tt.get_twin_ledger_entry(uuid, params={"entries": "entry1,entry2"}, retries=1))
    assert status == 200 and set(body["entries"]) == {"entry1", "entry2"}

    status, body = answer(tt.delete_twin_ledger_entry(uuid, params={"entries": "entry2"}, retries=1))
    assert status == 200 and body["entries"]["entry2"]["value"] == {"a": [1]}

    status, body = answer(tt.terminate_twin(uuid, retries=1))
    assert status == 200 and body["status"] == "terminated"
    assert body["termination_certificate"]["issuer"] == account

    status, body = answer(tt.terminate_twin(uuid, retries=1))
    assert status == 400 and body["subcode"] == "idempotency_violation"
    status, body = answer(tt.get_twin(uuid, params={"show_terminated": True}, retries=1))
    assert status == 200 and body["status"] == "terminated"
    status, body = answer(tt.get_twin(uuid, retries=1))
    assert status == 404 and set(body) == {"subcode", "description", "trace"}
