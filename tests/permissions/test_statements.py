"""Statement semantics, checked through guardian (`has_perm(action, account)`)."""

import pytest

from permissions import services
from permissions.actions import ACTIONS
from permissions.statements import granted_actions
from tests.support.factories import AccountFactory, AccountUserFactory, RoleFactory


def held(user, account):
    return {action for action in ACTIONS if user.has_perm(action, account)}


@pytest.fixture
def account(db):
    return AccountFactory()


def user_with(account, statement):
    return AccountUserFactory(account=account, role=RoleFactory(account=account, statement=statement)).user


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"effect": "allow", "actions": ["get_twin", "create_twin"]}, {"get_twin", "create_twin"}),
        ({"effect": "deny", "actions": ["get_twin"]}, set(ACTIONS) - {"get_twin"}),
        ({"effect": "allow", "actions": None}, set()),
        ({"effect": "deny", "actions": None}, set(ACTIONS)),
        (None, set(ACTIONS)),
        ({"effect": "allow", "actions": ["get_twin", "not_an_action"]}, {"get_twin"}),
    ],
    ids=["allow-list", "deny-list", "allow-null", "deny-null", "missing", "unknown-ignored"],
)
def test_statement_grants_exactly_these_actions(account, statement, expected):
    assert granted_actions(statement) == expected
    assert held(user_with(account, statement), account) == expected


def test_deny_of_one_action_refuses_only_that_action(account):
    user = user_with(account, {"effect": "deny", "actions": ["delete_batch"]})
    assert not user.has_perm("delete_batch", account)
    assert user.has_perm("create_batch", account)
    assert user.has_perm("get_batch", account)


def test_permissions_hold_only_on_the_users_own_account(account):
    user = user_with(account, None)
    other = AccountFactory()
    assert user.has_perm("get_twin", account)
    assert not user.has_perm("get_twin", other)


def test_changing_the_statement_changes_the_guardian_permissions(account):
    role = RoleFactory(account=account, statement={"effect": "allow", "actions": ["get_twin"]})
    user = AccountUserFactory(account=account, role=role).user
    assert held(user, account) == {"get_twin"}

    services.role_update(role=role, statement={"effect": "allow", "actions": ["scan_twins"]})
    user = type(user).objects.get(pk=user.pk)  # a fresh instance: Django caches perms per object
    assert held(user, account) == {"scan_twins"}


def test_moving_a_user_to_another_role_swaps_the_permissions(account):
    reader = RoleFactory(account=account, statement={"effect": "allow", "actions": ["get_twin"]})
    writer = RoleFactory(account=account, statement={"effect": "allow", "actions": ["create_twin"]})
    account_user = AccountUserFactory(account=account, role=reader)
    services.user_update(account_user=account_user, role=writer)
    user = type(account_user.user).objects.get(pk=account_user.user.pk)
    assert held(user, account) == {"create_twin"}
