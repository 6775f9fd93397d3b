"""The privilege rules of test_privileges.py, through Trusted Twin's own client against a live
server: a narrow user gets 403 with the error body, and the admin is unchanged."""

import json
import time

import pytest
from trustedtwin.tt_api import TTRESTService

from permissions import services
from tests.support.factories import RoleFactory


def answer(call) -> tuple[int, dict]:
    status, text = call
    return status, json.loads(text)


def narrow_client(live_server, account, *actions) -> tuple[TTRESTService, str]:
    role = RoleFactory(account=account, statement={"effect": "allow", "actions": list(actions)})
    user = services.user_create(account=account, role=role, name="narrow")
    secret = services.secret_issue(account_user=user, validity_at=None).raw
    return TTRESTService(tt_auth=secret, tt_base=live_server.url), str(user.uuid)


@pytest.fixture
def acme(live_server):
    created = services.account_bootstrap(name="Acme")
    admin = TTRESTService(tt_auth=created.secret, tt_base=live_server.url)
    return created, admin


CALLS = [
    ("create_user_secret_pin", lambda c, user, role: c.create_user_secret_pin(user, body={})),
    ("get_user_secret", lambda c, user, role: c.get_user_secret(user)),
    (
        "update_user_secret",
        lambda c, user, role: c.update_user_secret(user, body={"validity_ts": time.time() + 5}),
    ),
    ("delete_user_secret", lambda c, user, role: c.delete_user_secret(user)),
    ("update_user", lambda c, user, role: c.update_user(user, body={"name": "demoted"})),
    ("delete_user", lambda c, user, role: c.delete_user(user)),
    (
        "update_user_role",
        lambda c, user, role: c.update_user_role(
            role, body={"statement": {"effect": "allow", "actions": []}}
        ),
    ),
    ("delete_user_role", lambda c, user, role: c.delete_user_role(role)),
]


@pytest.mark.parametrize("action,request_", CALLS, ids=[row[0] for row in CALLS])
def test_narrow_user_cannot_act_on_the_admin(acme, live_server, action, request_):
    created, admin = acme
    narrow, _ = narrow_client(live_server, created.account, action)
    status, body = answer(request_(narrow, str(created.account_user.uuid), str(created.account_user.role_id)))
    assert status == 403, body
    assert body["subcode"] == "principal_holds_more"
    status, me = answer(admin.who_am_i())
    assert status == 200 and me["role"] == str(created.account_user.role_id)
    assert answer(admin.get_user_secret(str(created.account_user.uuid)))[1]["validity_ts"] is None


def test_pin_takeover_and_two_step_escalation_are_refused(acme, live_server):
    created, admin = acme
    admin_user, admin_role = str(created.account_user.uuid), str(created.account_user.role_id)
    thief, _ = narrow_client(live_server, created.account, "create_user_secret_pin", "get_users")
    status, body = answer(thief.create_user_secret_pin(admin_user, body={}))
    assert (status, body["subcode"]) == (403, "principal_holds_more")

    mine = ["update_user_role", "update_user", "who_am_i"]
    climber, climber_uuid = narrow_client(live_server, created.account, *mine)
    status, body = answer(
        climber.update_user_role(admin_role, body={"statement": {"effect": "allow", "actions": mine}})
    )
    assert (status, body["subcode"]) == (403, "principal_holds_more")
    status, body = answer(climber.update_user(climber_uuid, body={"role": admin_role}))
    assert (status, body["subcode"]) == (403, "role_escalation")
    assert answer(admin.create_user_role(body={"name": "still admin"}))[0] == 201


def test_owner_cannot_lift_an_expiry_the_admin_set(acme, live_server):
    created, admin = acme
    owner, owner_uuid = narrow_client(live_server, created.account, "update_user_secret")
    deadline = round(time.time() + 86400, 3)
    assert answer(admin.update_user_secret(owner_uuid, body={"validity_ts": deadline}))[0] == 201
    status, body = answer(owner.update_user_secret(owner_uuid))
    assert (status, body["subcode"]) == (403, "expiry_set_by_other")
