"""Trusted Twin's own Python client, pointed at a live server, gets the answers its documented
examples show: the same status codes and the same fields.

The client returns `(status_code, text)` and retries any 5xx five times, two seconds apart, so a
server error here shows up as a slow failure; every expected status below is a 2xx or a 4xx.
"""

import json
import time
from dataclasses import dataclass

import pytest
from trustedtwin.tt_api import TTRESTService

from permissions import services

ROLE_FIELDS = {"uuid", "name", "account", "statement", "rules", "created_ts", "updated_ts"}
USER_FIELDS = {"uuid", "role", "account", "name", "description", "activity", "created_ts", "updated_ts"}
SECRET_FIELDS = {"account", "user", "validity_ts", "created_ts", "updated_ts", "fingerprint"}
ERROR_FIELDS = {"subcode", "description", "trace"}

TWIN_RULES = {"twin_rule": "TWIN.company == USER.company", "entry_rule": None, "identity_rule": None}


def answer(call) -> tuple[int, dict]:
    status, text = call
    return status, json.loads(text)


@dataclass
class Admin:
    account: str
    user: str
    role: str
    client: TTRESTService


@pytest.fixture
def admin(live_server) -> Admin:
    """The first user of a new account (as `create_account` makes it), driving the client."""
    created = services.account_bootstrap(name="Acme")
    return Admin(
        account=str(created.account.uuid),
        user=str(created.account_user.uuid),
        role=str(created.account_user.role_id),
        client=TTRESTService(tt_auth=created.secret, tt_base=live_server.url),
    )


def test_who_am_i(admin):
    status, body = answer(admin.client.who_am_i())
    assert status == 200
    assert body == {"account": admin.account, "user": admin.user, "role": admin.role}


def test_role_create_get_update_list_delete(admin):
    statement = {"effect": "allow", "actions": ["create_twin", "get_twin"]}
    status, role = answer(
        admin.client.create_user_role(body={"name": "role_1", "statement": statement, "rules": TWIN_RULES})
    )
    assert status == 201, role
    assert set(role) == ROLE_FIELDS
    assert role["name"] == "role_1"
    assert role["account"] == admin.account
    assert role["statement"] == statement
    assert role["rules"] == TWIN_RULES
    assert isinstance(role["created_ts"], float)

    status, fetched = answer(admin.client.get_user_role(role["uuid"]))
    assert status == 200
    assert fetched == role

    widened = {"effect": "allow", "actions": ["create_twin", "get_twin", "get_twin_identities"]}
    status, updated = answer(admin.client.update_user_role(role["uuid"], body={"statement": widened}))
    assert status == 201, updated
    assert set(updated) == ROLE_FIELDS
    assert updated["statement"] == widened
    assert updated["name"] == "role_1"
    assert updated["rules"] == TWIN_RULES
    assert updated["updated_ts"] >= role["updated_ts"]

    status, listed = answer(admin.client.get_user_roles())
    assert status == 200
    assert set(listed) == {"roles"}
    assert set(listed["roles"]) == {admin.role, role["uuid"]}
    assert listed["roles"][role["uuid"]] == {
        "name": "role_1",
        "created_ts": updated["created_ts"],
        "updated_ts": updated["updated_ts"],
    }

    status, deleted = answer(admin.client.delete_user_role(role["uuid"]))
    assert status == 200
    assert deleted == updated
    status, error = answer(admin.client.get_user_role(role["uuid"]))
    assert status == 404
    assert set(error) == ERROR_FIELDS


def test_rules_given_in_part_come_back_with_every_rule(admin):
    status, role = answer(
        admin.client.create_user_role(body={"name": "partial", "rules": {"twin_rule": None}})
    )
    assert status == 201, role
    assert role["rules"] == {"twin_rule": None, "entry_rule": None, "identity_rule": None}


def test_user_create_get_update_list_delete(admin):
    _, reader = answer(
        admin.client.create_user_role(
            body={"name": "Read only", "statement": {"effect": "allow", "actions": ["who_am_i"]}}
        )
    )
    body = {
        "name": "first_user",
        "role": admin.role,
        "description": {"custom_field": "custom_value"},
        "activity": None,
    }
    status, user = answer(admin.client.create_user(body=body))
    assert status == 201, user
    assert set(user) == USER_FIELDS
    assert user["role"] == admin.role
    assert user["account"] == admin.account
    assert user["description"] == {"custom_field": "custom_value"}
    assert user["activity"] is None

    status, fetched = answer(admin.client.get_user(user["uuid"]))
    assert status == 200
    assert fetched == user

    change = {
        "name": "Updated_user_name",
        "role": reader["uuid"],
        "description": {"custom_field": "updated_value"},
    }
    status, updated = answer(admin.client.update_user(user["uuid"], body=change))
    assert status == 200, updated
    assert {key: updated[key] for key in [*change, "activity"]} == {**change, "activity": None}

    status, listed = answer(admin.client.get_users())
    assert status == 200
    assert set(listed) == {"users"}
    assert set(listed["users"]) == {admin.user, user["uuid"]}
    assert listed["users"][user["uuid"]] == {
        "name": "Updated_user_name",
        "role": reader["uuid"],
        "created_ts": updated["created_ts"],
        "updated_ts": updated["updated_ts"],
    }

    status, deleted = answer(admin.client.delete_user(user["uuid"]))
    assert status == 200
    assert deleted == updated
    assert answer(admin.client.get_user(user["uuid"]))[0] == 404


def test_pin_flow_then_get_update_delete_the_secret(admin, live_server):
    _, user = answer(admin.client.create_user(body={"name": "robot", "role": admin.role}))
    validity = round(time.time() + 86400, 3)

    status, pin = answer(admin.client.create_user_secret_pin(user["uuid"], body={"validity_ts": validity}))
    assert status == 201, pin
    assert set(pin) == {"pin"}
    assert len(pin["pin"]) == 6
    assert pin["pin"].isalnum() and pin["pin"].isupper()

    # No secret: the PIN is the credential. The client's own example sends the PIN in lower case.
    anonymous = TTRESTService(tt_base=live_server.url)
    status, issued = answer(anonymous.create_user_secret(admin.account, pin["pin"].lower()))
    assert status == 201, issued
    assert set(issued) == {"account", "user", "secret", "validity_ts", "created_ts", "updated_ts"}
    assert issued["account"] == admin.account
    assert issued["user"] == user["uuid"]
    assert issued["validity_ts"] == validity
    assert len(issued["secret"]) == 64
    status, used_again = answer(anonymous.create_user_secret(admin.account, pin["pin"]))
    assert status == 404
    assert set(used_again) == ERROR_FIELDS

    robot = TTRESTService(tt_auth=issued["secret"], tt_base=live_server.url)
    status, me = answer(robot.who_am_i())
    assert status == 200
    assert me == {"account": admin.account, "user": user["uuid"], "role": admin.role}

    status, secret = answer(admin.client.get_user_secret(user["uuid"]))
    assert status == 200
    assert set(secret) == SECRET_FIELDS
    assert secret["fingerprint"] == issued["secret"][-4:]
    assert secret["validity_ts"] == validity
    assert (secret["account"], secret["user"]) == (admin.account, user["uuid"])

    later = round(time.time() + 2 * 86400, 3)
    status, updated = answer(admin.client.update_user_secret(user["uuid"], body={"validity_ts": later}))
    assert status == 201, updated
    assert set(updated) == SECRET_FIELDS
    assert updated["validity_ts"] == later
    status, never_expires = answer(admin.client.update_user_secret(user["uuid"]))
    assert status == 201, never_expires
    assert never_expires["validity_ts"] is None

    status, deleted = answer(admin.client.delete_user_secret(user["uuid"]))
    assert status == 200
    assert set(deleted) == SECRET_FIELDS
    assert deleted["fingerprint"] == issued["secret"][-4:]

    status, refused = answer(robot.who_am_i())
    assert status == 401
    assert set(refused) == ERROR_FIELDS
    assert answer(admin.client.get_user_secret(user["uuid"]))[0] == 404


def test_refusals_carry_the_error_body(admin, live_server):
    status, body = answer(TTRESTService(tt_base=live_server.url).who_am_i())
    assert status == 401
    assert set(body) == ERROR_FIELDS

    status, body = answer(
        admin.client.create_user_role(body={"name": "bad", "statement": {"effect": "maybe"}})
    )
    assert status == 400
    assert set(body) == ERROR_FIELDS

    status, body = answer(admin.client.delete_user_role(admin.role))
    assert (status, body["subcode"]) == (409, "role_in_use")
