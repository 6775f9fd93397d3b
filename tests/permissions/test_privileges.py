"""No one acts on a principal who holds more than they do (issue 12).

Every tenant-administration route, called by a user whose role allows only that route's
action, against a target that holds more (a full-access user, their secret, their role): the
writes are refused with 403 `principal_holds_more` (or `role_escalation` for a new state beyond
the caller's) and the target is unchanged; the same call against a target holding nothing goes
through, so the refusal is about the target, not the route.
"""

import time
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from permissions import services
from permissions.models import AccountUser, Role, UserSecret
from tests.support.assertions import assert_error
from tests.support.factories import RoleFactory


def allow(*actions):
    return {"effect": "allow", "actions": list(actions)}


@dataclass
class Scene:
    admin: object  # Caller with full access
    caller: object  # Caller holding only the action under test
    weak_user: AccountUser  # holds nothing
    weak_role: Role  # grants nothing, no users
    broad_role: Role  # grants everything, no users


@pytest.fixture
def scene_for(make_caller):
    def make(action: str) -> Scene:
        admin = make_caller()
        caller = make_caller(account=admin.account, statement=allow(action))
        weak_role = RoleFactory(account=admin.account, statement=allow())
        weak_user = services.user_create(account=admin.account, role=weak_role, name="weak")
        services.secret_issue(account_user=weak_user, validity_at=None)
        return Scene(
            admin=admin,
            caller=caller,
            weak_user=weak_user,
            weak_role=RoleFactory(account=admin.account, statement=allow()),
            broad_role=RoleFactory(account=admin.account, statement=None),
        )

    return make


def later(days=1):
    return round(time.time() + days * 86400, 3)


# (action, method, path given the target user/role, body, refusal subcode, allowed status).
# {user} is the target user, {role} the target role: the admin and a full-access role, or a
# user and a role holding nothing.
WRITES = [
    ("create_user_secret_pin", "post", "/users/{user}/secrets", {}, "principal_holds_more", 201),
    ("get_user_secret", "get", "/users/{user}/secrets", None, "principal_holds_more", 200),
    ("update_user_secret", "patch", "/users/{user}/secrets", {"validity_ts": 0}, "principal_holds_more", 201),
    ("delete_user_secret", "delete", "/users/{user}/secrets", None, "principal_holds_more", 200),
    ("update_user", "patch", "/users/{user}", {"name": "renamed"}, "principal_holds_more", 200),
    ("delete_user", "delete", "/users/{user}", None, "principal_holds_more", 200),
    ("update_user_role", "patch", "/roles/{role}", {"name": "renamed"}, "principal_holds_more", 201),
    ("delete_user_role", "delete", "/roles/{role}", None, "principal_holds_more", 200),
    (
        "create_user_role",
        "post",
        "/roles",
        {"name": "mine", "statement": "{statement}"},
        "role_escalation",
        201,
    ),
    ("create_user", "post", "/users", {"name": "new", "role": "{role}"}, "role_escalation", 201),
]
READS = [
    ("who_am_i", "/whoami"),
    ("get_user_roles", "/roles"),
    ("get_user_role", "/roles/{role}"),
    ("get_users", "/users"),
    ("get_user", "/users/{user}"),
]


def fill(template, *, user, role, statement):
    """The row's path or body for one target; "{statement}" is the target role's statement."""
    if isinstance(template, dict):
        return {
            key: fill(value, user=user, role=role, statement=statement) for key, value in template.items()
        }
    if template == "{statement}":
        return statement
    if isinstance(template, str):
        return template.format(user=user, role=role)
    return template


def call(client, method, path, body):
    if body is not None and "validity_ts" in body:
        body = {"validity_ts": later()}
    return (
        getattr(client, method)(path, body, format="json")
        if body is not None
        else getattr(client, method)(path)
    )


def snapshot(scene: Scene):
    admin = AccountUser.objects.get(pk=scene.admin.account_user.pk)
    secret = UserSecret.objects.get(account_user=admin)
    broad = Role.objects.get(pk=scene.broad_role.pk)
    return (admin.name, admin.role_id, secret.digest, secret.validity_at, broad.name, broad.statement)


@pytest.mark.parametrize("action,method,path,body,subcode,ok", WRITES, ids=[row[0] for row in WRITES])
def test_acting_on_a_principal_holding_more_is_refused(scene_for, action, method, path, body, subcode, ok):
    scene = scene_for(action)
    before = snapshot(scene)
    target = {"user": scene.admin.account_user.uuid, "role": scene.broad_role.uuid, "statement": None}
    response = call(scene.caller.client, method, fill(path, **target), fill(body, **target))
    assert_error(response, 403, subcode)
    assert snapshot(scene) == before
    # The admin still is who they were.
    assert scene.admin.client.get("/whoami").json()["role"] == str(scene.admin.role.uuid)


@pytest.mark.parametrize("action,method,path,body,subcode,ok", WRITES, ids=[row[0] for row in WRITES])
def test_acting_on_a_principal_holding_less_goes_through(scene_for, action, method, path, body, subcode, ok):
    scene = scene_for(action)
    target = {"user": scene.weak_user.uuid, "role": scene.weak_role.uuid, "statement": allow()}
    response = call(scene.caller.client, method, fill(path, **target), fill(body, **target))
    assert response.status_code == ok, response.content


@pytest.mark.parametrize("action,path", READS, ids=[row[0] for row in READS])
def test_reads_of_broader_principals_are_allowed(scene_for, action, path):
    scene = scene_for(action)
    target = {"user": scene.admin.account_user.uuid, "role": scene.broad_role.uuid, "statement": None}
    assert scene.caller.client.get(fill(path, **target)).status_code == 200


def test_the_table_covers_every_tenant_action():
    from permissions.actions import TENANT_ACTIONS

    assert {row[0] for row in WRITES} | {row[0] for row in READS} == set(TENANT_ACTIONS)


def test_pin_takeover_chain_is_refused(make_caller):
    admin = make_caller()
    attacker = make_caller(account=admin.account, statement=allow("create_user_secret_pin", "get_users"))
    users = attacker.client.get("/users").json()["users"]
    assert str(admin.account_user.uuid) in users
    response = attacker.client.post(f"/users/{admin.account_user.uuid}/secrets", {}, format="json")
    assert_error(response, 403, "principal_holds_more")
    # Nothing to exchange, and the admin's secret still works.
    assert not admin.account_user.pins.exists()
    assert admin.client.get("/whoami").status_code == 200
    assert_error(attacker.client.post("/roles", {"name": "mine"}, format="json"), 403, "action_not_allowed")


def test_two_step_escalation_is_refused(make_caller):
    """Shrink a broad role to a subset of yours, move yourself in, and wait for it to be
    restored: the first step is refused, and so is the second on its own."""
    mine = allow("update_user_role", "update_user", "who_am_i", "get_user_role")
    admin = make_caller()
    climber = make_caller(account=admin.account, statement=mine)
    broad = admin.role

    step_one = climber.client.patch(f"/roles/{broad.uuid}", {"statement": mine}, format="json")
    assert_error(step_one, 403, "principal_holds_more")
    assert Role.objects.get(pk=broad.pk).statement is None

    step_two = climber.client.patch(
        f"/users/{climber.account_user.uuid}", {"role": str(broad.uuid)}, format="json"
    )
    assert_error(step_two, 403, "role_escalation")
    assert climber.client.get("/whoami").json()["role"] == str(climber.role.uuid)
    # The admin kept everything.
    assert admin.client.post("/roles", {"name": "still admin"}, format="json").status_code == 201


def test_an_expiry_set_by_someone_else_cannot_be_lengthened_or_removed(make_caller):
    admin = make_caller()
    user = make_caller(account=admin.account, statement=allow("update_user_secret", "who_am_i"))
    path = f"/users/{user.account_user.uuid}/secrets"
    deadline = later(1)
    assert admin.client.patch(path, {"validity_ts": deadline}, format="json").status_code == 201

    assert_error(
        user.client.patch(path, {"validity_ts": later(2)}, format="json"), 403, "expiry_set_by_other"
    )
    assert_error(user.client.patch(path, {"validity_ts": None}, format="json"), 403, "expiry_set_by_other")
    assert_error(user.client.patch(path, {}, format="json"), 403, "expiry_set_by_other")
    sooner = round(deadline - 3600, 3)
    shortened = user.client.patch(path, {"validity_ts": sooner}, format="json")
    assert shortened.status_code == 201 and shortened.json()["validity_ts"] == sooner
    # Shortening does not raise the cap back: the earlier expiry is still the one set by the admin.
    assert_error(
        user.client.patch(path, {"validity_ts": deadline + 10}, format="json"), 403, "expiry_set_by_other"
    )
    # The admin may lift it; then the user is free again.
    assert admin.client.patch(path, {"validity_ts": None}, format="json").status_code == 201
    assert user.client.patch(path, {"validity_ts": later(3)}, format="json").status_code == 201


def test_a_peer_of_the_user_cannot_lift_an_expiry_set_from_above(make_caller):
    """The user makes (or has) a puppet with the same rights: it is bound as the user is."""
    statement = allow("update_user_secret", "create_user_secret_pin", "get_user_secret", "who_am_i")
    admin = make_caller()
    user = make_caller(account=admin.account, statement=statement)
    puppet = make_caller(account=admin.account, statement=statement)
    path = f"/users/{user.account_user.uuid}/secrets"
    deadline = later(1)
    assert admin.client.patch(path, {"validity_ts": deadline}, format="json").status_code == 201

    assert_error(puppet.client.patch(path, {"validity_ts": None}, format="json"), 403, "expiry_set_by_other")
    assert_error(
        puppet.client.patch(path, {"validity_ts": later(2)}, format="json"), 403, "expiry_set_by_other"
    )
    assert_error(
        puppet.client.post(path, {"validity_ts": later(5)}, format="json"), 403, "expiry_set_by_other"
    )
    pin = puppet.client.post(path, {}, format="json").json()["pin"]
    issued = APIClient().post(f"/secrets/{user.account.uuid}/{pin}")
    assert issued.status_code == 201, issued.content
    assert issued.json()["validity_ts"] == deadline
    # The user, with the secret the PIN gave, is still bound; the admin, above both, may lift it.
    user.client.credentials(HTTP_AUTHORIZATION=issued.json()["secret"])
    assert_error(user.client.patch(path, {"validity_ts": None}, format="json"), 403, "expiry_set_by_other")
    assert admin.client.patch(path, {"validity_ts": None}, format="json").status_code == 201


def test_reissuing_your_own_secret_keeps_the_expiry_an_administrator_set(make_caller):
    admin = make_caller()
    user = make_caller(account=admin.account, statement=allow("create_user_secret_pin", "get_user_secret"))
    path = f"/users/{user.account_user.uuid}/secrets"
    deadline = later(1)
    assert admin.client.patch(path, {"validity_ts": deadline}, format="json").status_code == 201

    assert_error(user.client.post(path, {"validity_ts": later(5)}, format="json"), 403, "expiry_set_by_other")
    pin = user.client.post(path, {}, format="json").json()["pin"]
    issued = APIClient().post(f"/secrets/{user.account.uuid}/{pin}")
    assert issued.status_code == 201, issued.content
    assert issued.json()["validity_ts"] == deadline

    reissued = APIClient()
    reissued.credentials(HTTP_AUTHORIZATION=issued.json()["secret"])
    assert reissued.get(path).json()["validity_ts"] == deadline

    # Deleting the secret does not shed the cap: it is kept on the user, not the secret.
    owner = user.account_user
    services.secret_delete(secret=owner.secret, acting_user=owner.user)
    owner.refresh_from_db()
    pin = services.secret_pin_create(account_user=owner, secret_validity_at=None, acting_user=owner.user)
    again = services.secret_create_from_pin(account_uuid=owner.account_id, pin=pin)
    assert again.secret.validity_at.timestamp() == pytest.approx(deadline)


def test_a_pin_carries_no_more_than_its_requester_holds_at_the_exchange(make_caller):
    """Issued for a user holding nothing, then that user's role is broadened: the exchange is
    refused, and so is one whose requester is gone."""
    admin = make_caller()
    issuer = make_caller(account=admin.account, statement=allow("create_user_secret_pin"))
    weak_role = RoleFactory(account=admin.account, statement=allow())
    weak = services.user_create(account=admin.account, role=weak_role, name="weak")
    pin = issuer.client.post(f"/users/{weak.uuid}/secrets", {}, format="json").json()["pin"]

    services.role_update(role=weak_role, statement=None)
    assert_error(APIClient().post(f"/secrets/{admin.account.uuid}/{pin}"), 403, "principal_holds_more")
    services.role_update(role=weak_role, statement=allow())
    services.user_delete(account_user=issuer.account_user)
    assert_error(APIClient().post(f"/secrets/{admin.account.uuid}/{pin}"), 403, "principal_holds_more")
