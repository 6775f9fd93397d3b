import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.support.assertions import assert_error

READ_ONLY = {
    "effect": "allow",
    "actions": ["who_am_i", "get_user_roles", "create_user_role", "update_user_role"],
}


def create_role(client, **body):
    return client.post("/roles", body, format="json")


def test_whoami_names_account_user_and_role(caller):
    body = caller.client.get("/whoami").json()
    assert body == {
        "account": str(caller.account.uuid),
        "user": str(caller.account_user.uuid),
        "role": str(caller.role.uuid),
    }


def test_role_lifecycle(caller):
    statement = {"effect": "allow", "actions": ["get_twin", "create_twin"]}
    response = create_role(caller.client, name="Twin writers", statement=statement)
    assert response.status_code == 201, response.content
    role = response.json()
    assert set(role) == {"uuid", "name", "account", "statement", "rules", "created_ts", "updated_ts"}
    assert role["statement"] == statement
    assert role["account"] == str(caller.account.uuid)
    assert isinstance(role["created_ts"], float)

    listed = caller.client.get("/roles").json()["roles"]
    assert listed[role["uuid"]]["name"] == "Twin writers"
    assert set(listed[role["uuid"]]) == {"name", "created_ts", "updated_ts"}

    patched = caller.client.patch(f"/roles/{role['uuid']}", {"name": "Writers"}, format="json")
    assert patched.status_code == 201
    assert patched.json()["name"] == "Writers"
    assert patched.json()["statement"] == statement

    assert caller.client.get(f"/roles/{role['uuid']}").json()["name"] == "Writers"
    deleted = caller.client.delete(f"/roles/{role['uuid']}")
    assert deleted.status_code == 200
    assert deleted.json()["uuid"] == role["uuid"]
    assert_error(caller.client.get(f"/roles/{role['uuid']}"), 404, "not_found")


def test_role_defaults_to_everything_when_no_statement(caller):
    role = create_role(caller.client, name="Everything").json()
    assert role["statement"] is None
    assert role["name"] == "Everything"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "ok name", "statement": {"effect": "maybe", "actions": []}},
        {"name": "ok name", "statement": {"effect": "allow", "actions": "get_twin"}},
        {"name": "ok name", "statement": "allow"},
    ],
)
def test_bad_role_bodies_are_400(caller, body):
    assert_error(create_role(caller.client, **body), 400)


def test_role_in_use_cannot_be_deleted(caller):
    assert_error(caller.client.delete(f"/roles/{caller.role.uuid}"), 409, "role_in_use")


def test_escalation_is_refused_on_create_and_update(make_caller):
    limited = make_caller(statement=READ_ONLY)
    assert_error(create_role(limited.client, name="Admins", statement=None), 403, "role_escalation")
    assert_error(
        create_role(limited.client, name="Twins", statement={"effect": "allow", "actions": ["create_twin"]}),
        403,
        "role_escalation",
    )
    smaller = create_role(
        limited.client, name="Smaller", statement={"effect": "allow", "actions": ["who_am_i"]}
    )
    assert smaller.status_code == 201
    widened = limited.client.patch(
        f"/roles/{smaller.json()['uuid']}",
        {"statement": {"effect": "deny", "actions": ["delete_batch"]}},
        format="json",
    )
    assert_error(widened, 403, "role_escalation")


def test_user_cannot_be_given_a_role_beyond_the_callers(make_caller, caller):
    limited = make_caller(account=caller.account, statement={"effect": "allow", "actions": ["create_user"]})
    response = limited.client.post("/users", {"name": "Helper", "role": str(caller.role.uuid)}, format="json")
    assert_error(response, 403, "role_escalation")


def test_action_not_in_role_is_403(make_caller):
    limited = make_caller(statement={"effect": "deny", "actions": ["get_user_roles"]})
    assert_error(limited.client.get("/roles"), 403, "action_not_allowed")
    assert limited.client.get("/whoami").status_code == 200


def test_user_lifecycle(caller):
    response = caller.client.post(
        "/users",
        {"name": "Second user", "role": str(caller.role.uuid), "description": {"team": "ops"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    user = response.json()
    assert {"uuid", "role", "account", "name", "description", "created_ts", "updated_ts"} <= set(user)
    assert user["description"] == {"team": "ops"}

    listed = caller.client.get("/users").json()["users"]
    assert listed[user["uuid"]]["role"] == str(caller.role.uuid)
    assert set(listed[user["uuid"]]) == {"name", "role", "created_ts", "updated_ts"}

    patched = caller.client.patch(f"/users/{user['uuid']}", {"name": "Renamed"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["name"] == "Renamed"
    assert patched.json()["description"] == {"team": "ops"}

    assert caller.client.delete(f"/users/{user['uuid']}").json()["uuid"] == user["uuid"]
    assert_error(caller.client.get(f"/users/{user['uuid']}"), 404)


def test_user_without_description_omits_it(caller):
    user = caller.client.post(
        "/users", {"name": "Plain", "role": str(caller.role.uuid)}, format="json"
    ).json()
    assert "description" not in user


def test_other_accounts_roles_and_users_are_404(caller, stranger):
    assert_error(caller.client.get(f"/roles/{stranger.role.uuid}"), 404)
    assert_error(caller.client.patch(f"/roles/{stranger.role.uuid}", {"name": "Mine"}, format="json"), 404)
    assert_error(caller.client.delete(f"/roles/{stranger.role.uuid}"), 404)
    assert_error(caller.client.get(f"/users/{stranger.account_user.uuid}"), 404)
    assert_error(caller.client.delete(f"/users/{stranger.account_user.uuid}"), 404)
    assert_error(caller.client.get(f"/users/{stranger.account_user.uuid}/secrets"), 404)
    assert_error(caller.client.post(f"/users/{stranger.account_user.uuid}/secrets"), 404)
    response = caller.client.post("/users", {"name": "Spy", "role": str(stranger.role.uuid)}, format="json")
    assert_error(response, 404)
    assert str(stranger.role.uuid) not in caller.client.get("/roles").json()["roles"]
    assert_error(caller.client.get(f"/users/{uuid.uuid4()}"), 404)


def test_pin_flow_issues_a_working_secret_once(caller):
    user_uuid = str(caller.account_user.uuid)
    validity = round((timezone.now() + timedelta(days=1)).timestamp(), 3)
    pin_response = caller.client.post(f"/users/{user_uuid}/secrets", {"validity_ts": validity}, format="json")
    assert pin_response.status_code == 201
    pin = pin_response.json()["pin"]
    assert len(pin) == 6

    anonymous = APIClient()
    issued = anonymous.post(f"/secrets/{caller.account.uuid}/{pin}")
    assert issued.status_code == 201, issued.content
    body = issued.json()
    assert set(body) == {"account", "user", "secret", "validity_ts", "created_ts", "updated_ts"}
    assert body["user"] == user_uuid
    assert body["validity_ts"] == validity

    assert_error(anonymous.post(f"/secrets/{caller.account.uuid}/{pin}"), 404, "invalid_pin")

    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=body["secret"])
    assert fresh.get("/whoami").json()["user"] == user_uuid
    assert_error(caller.client.get("/whoami"), 401)


def test_pin_of_another_account_does_not_work(caller, stranger):
    pin = caller.client.post(f"/users/{caller.account_user.uuid}/secrets").json()["pin"]
    assert_error(APIClient().post(f"/secrets/{stranger.account.uuid}/{pin}"), 404, "invalid_pin")


def test_secret_get_update_delete(caller, make_caller):
    other = make_caller(account=caller.account)
    path = f"/users/{other.account_user.uuid}/secrets"
    secret = caller.client.get(path).json()
    assert set(secret) == {"account", "user", "validity_ts", "created_ts", "updated_ts", "fingerprint"}
    assert secret["fingerprint"] == other.secret[-4:]
    assert secret["validity_ts"] is None

    future = round((timezone.now() + timedelta(hours=1)).timestamp(), 3)
    updated = caller.client.patch(path, {"validity_ts": future}, format="json")
    assert updated.status_code == 201
    assert updated.json()["validity_ts"] == future

    past = round((timezone.now() - timedelta(hours=1)).timestamp(), 3)
    caller.client.patch(path, {"validity_ts": past}, format="json")
    assert_error(other.client.get("/whoami"), 401)

    assert caller.client.delete(path).status_code == 200
    assert_error(caller.client.get(path), 404)


def test_malformed_json_is_400(caller):
    response = caller.client.generic("POST", "/roles", "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_body")


NO_RULES = {"twin_rule": None, "entry_rule": None, "identity_rule": None}


def test_a_role_created_without_rules_comes_back_with_all_three(caller):
    role = create_role(caller.client, name="No rules").json()
    assert role["rules"] == NO_RULES
    assert caller.client.get(f"/roles/{role['uuid']}").json()["rules"] == NO_RULES
    cleared = caller.client.patch(f"/roles/{role['uuid']}", {"rules": None}, format="json").json()
    assert cleared["rules"] == NO_RULES


@pytest.mark.parametrize(
    "rules", [{"twin_rule": 5}, {"entry_rule": True}, {"identity_rule": ["x"]}, ["twin_rule"], "x"]
)
def test_wrongly_typed_rules_are_refused(caller, rules):
    response = create_role(caller.client, name="Typed", rules=rules)
    assert_error(response, 400)
