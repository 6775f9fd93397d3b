"""Reads for tenants, always scoped to the caller's account; another account's object is 404."""

from django.http import Http404
from guardian.core import ObjectPermissionChecker

from permissions.actions import ACTIONS
from permissions.models import Account, AccountUser, Role, UserSecret


def account_of(user) -> Account | None:
    """The account a Django user acts for, or None for a user of no account (plain staff)."""
    account_user = getattr(user, "account_user", None) if user is not None else None
    return account_user.account if account_user is not None else None


def may(user, action: str, account: Account) -> bool:
    """`user.has_perm(action, account)`, with the user's actions read from guardian once per
    user object, as Django's ModelBackend keeps its own permissions on it: POST /batches asks
    for create_batch and then for the batch's operation, each two queries otherwise."""
    checker = user.__dict__.get("_action_checker")
    if checker is None:
        checker = user._action_checker = ObjectPermissionChecker(user)
    return checker.has_perm(action, account)


def actions_held(*, user, account: Account) -> set[str]:
    """Every action the user may take on the account, as guardian answers it."""
    if user.is_superuser:
        return set(ACTIONS)
    return set(ObjectPermissionChecker(user).get_perms(account))


def role_list(*, account: Account):
    return Role.objects.filter(account=account)


def role_get(*, account: Account, role_uuid) -> Role:
    role = Role.objects.filter(account=account, uuid=role_uuid).first()
    if role is None:
        raise Http404("No such role.")
    return role


def user_list(*, account: Account):
    return AccountUser.objects.filter(account=account)


def user_get(*, account: Account, user_uuid) -> AccountUser:
    account_user = (
        AccountUser.objects.select_related("user", "role").filter(account=account, uuid=user_uuid).first()
    )
    if account_user is None:
        raise Http404("No such user.")
    return account_user


def secret_get(*, account_user: AccountUser) -> UserSecret:
    secret = UserSecret.objects.filter(account_user=account_user).first()
    if secret is None:
        raise Http404("The user has no secret.")
    return secret
