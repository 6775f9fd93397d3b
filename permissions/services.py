"""Writes for tenants: accounts, roles (and their guardian permissions), users, secrets."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone
from guardian.models import GroupObjectPermission

from batchsite.errors import ApplicationError, Conflict
from permissions.models import Account, AccountUser, Role, SecretPin, UserSecret
from permissions.selectors import actions_held
from permissions.statements import granted_actions

# Trusted Twin's PINs are six upper-case letters and digits; the exchange is throttled.
PIN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PIN_LENGTH = 6
UNSET = object()


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@transaction.atomic
def account_create(*, name: str) -> Account:
    return Account.objects.create(name=name)


def ensure_no_escalation(*, acting_user, account: Account, statement: dict | None) -> None:
    """A user may not give a role (nor a user) more than their own role holds."""
    if acting_user is None:
        return
    beyond = granted_actions(statement) - actions_held(user=acting_user, account=account)
    if beyond:
        raise ApplicationError(
            "The role would grant actions your own role does not have: " + ", ".join(sorted(beyond)),
            subcode="role_escalation",
            status_code=403,
        )


def role_sync_permissions(*, role: Role) -> None:
    """Materialise the statement as the object permissions the role's group holds on its
    account: add what it grants, remove what it no longer does."""
    content_type = ContentType.objects.get_for_model(Account)
    wanted = set(
        Permission.objects.filter(
            content_type=content_type, codename__in=granted_actions(role.statement)
        ).values_list("pk", flat=True)
    )
    held = GroupObjectPermission.objects.filter(
        group=role.group, content_type=content_type, object_pk=str(role.account_id)
    )
    held.exclude(permission_id__in=wanted).delete()
    present = set(held.values_list("permission_id", flat=True))
    GroupObjectPermission.objects.bulk_create(
        GroupObjectPermission(
            group=role.group,
            permission_id=permission_id,
            content_type=content_type,
            object_pk=str(role.account_id),
        )
        for permission_id in wanted - present
    )


@transaction.atomic
def role_create(
    *, account: Account, name: str, statement: dict | None, rules: dict | None, acting_user=None
) -> Role:
    ensure_no_escalation(acting_user=acting_user, account=account, statement=statement)
    group = Group.objects.create(name=f"role:{account.pk}:{secrets.token_hex(8)}")
    role = Role.objects.create(account=account, name=name, statement=statement, rules=rules, group=group)
    role_sync_permissions(role=role)
    return role


@transaction.atomic
def role_update(*, role: Role, acting_user=None, name=UNSET, statement=UNSET, rules=UNSET) -> Role:
    role = Role.objects.select_for_update().get(pk=role.pk)
    if statement is not UNSET:
        ensure_no_escalation(acting_user=acting_user, account=role.account, statement=statement)
        role.statement = statement
    if name is not UNSET:
        role.name = name
    if rules is not UNSET:
        role.rules = rules
    role.save()
    role_sync_permissions(role=role)
    return role


@transaction.atomic
def role_delete(*, role: Role) -> None:
    # Every user has exactly one role (SPEC section 2), so a role in use (the caller's own
    # included) stays until its users have another one.
    if role.users.exists():
        raise Conflict("The role still has users; give them another role first.", subcode="role_in_use")
    group = role.group
    role.delete()
    GroupObjectPermission.objects.filter(group=group).delete()
    group.delete()


def user_assign_role(*, account_user: AccountUser, role: Role) -> None:
    django_user = account_user.user
    if account_user.role_id:
        django_user.groups.remove(account_user.role.group)
    django_user.groups.add(role.group)
    account_user.role = role


@transaction.atomic
def user_create(
    *,
    account: Account,
    role: Role,
    name: str,
    description: dict | None = None,
    activity: dict | None = None,
    acting_user=None,
) -> AccountUser:
    ensure_no_escalation(acting_user=acting_user, account=account, statement=role.statement)
    account_user = AccountUser(account=account, name=name, description=description, activity=activity)
    account_user.user = get_user_model().objects.create_user(username=str(account_user.uuid))
    account_user.user.groups.add(role.group)
    account_user.role = role
    account_user.save()
    return account_user


@transaction.atomic
def user_update(
    *,
    account_user: AccountUser,
    acting_user=None,
    name=UNSET,
    role=UNSET,
    description=UNSET,
    activity=UNSET,
) -> AccountUser:
    account_user = AccountUser.objects.select_for_update().get(pk=account_user.pk)
    if role is not UNSET and role.pk != account_user.role_id:
        ensure_no_escalation(acting_user=acting_user, account=account_user.account, statement=role.statement)
        user_assign_role(account_user=account_user, role=role)
    if name is not UNSET:
        account_user.name = name
    if description is not UNSET:
        account_user.description = description
    if activity is not UNSET:
        account_user.activity = activity
    account_user.save()
    return account_user


@transaction.atomic
def user_delete(*, account_user: AccountUser) -> None:
    django_user = account_user.user
    account_user.delete()
    django_user.delete()


@dataclass
class IssuedSecret:
    secret: UserSecret
    raw: str


def secret_issue(*, account_user: AccountUser, validity_at: datetime | None) -> IssuedSecret:
    """A new secret for the user, replacing any earlier one. The raw secret exists only in
    the return value."""
    raw = secrets.token_urlsafe(48)
    UserSecret.objects.filter(account_user=account_user).delete()
    secret = UserSecret.objects.create(
        account_user=account_user,
        digest=digest_of(raw),
        fingerprint=raw[-4:],
        validity_at=validity_at,
    )
    return IssuedSecret(secret=secret, raw=raw)


def pin_digest(*, account_uuid, pin: str) -> str:
    return digest_of(f"{account_uuid}:{pin.upper()}")


@transaction.atomic
def secret_pin_create(*, account_user: AccountUser, secret_validity_at: datetime | None) -> str:
    if secret_validity_at is not None and secret_validity_at <= timezone.now():
        raise ApplicationError("validity_ts must be in the future.", subcode="invalid_validity_ts")
    pin = "".join(secrets.choice(PIN_ALPHABET) for _ in range(PIN_LENGTH))
    SecretPin.objects.create(
        account_user=account_user,
        digest=pin_digest(account_uuid=account_user.account_id, pin=pin),
        secret_validity_at=secret_validity_at,
        expires_at=timezone.now() + timedelta(seconds=settings.SECRET_PIN_VALIDITY_SECONDS),
    )
    return pin


@transaction.atomic
def secret_create_from_pin(*, account_uuid, pin: str) -> IssuedSecret:
    """Exchanges a PIN (once, before it expires) for the user's new secret."""
    found = (
        SecretPin.objects.select_for_update()
        .select_related("account_user")
        .filter(digest=pin_digest(account_uuid=account_uuid, pin=pin))
        .first()
    )
    if found is None or found.expires_at <= timezone.now():
        raise ApplicationError("The PIN is unknown, used or expired.", subcode="invalid_pin", status_code=404)
    found.delete()
    return secret_issue(account_user=found.account_user, validity_at=found.secret_validity_at)


@transaction.atomic
def secret_update(*, secret: UserSecret, validity_at: datetime | None) -> UserSecret:
    secret.validity_at = validity_at
    secret.save(update_fields=["validity_at", "updated_at"])
    return secret


@transaction.atomic
def secret_delete(*, secret: UserSecret) -> None:
    secret.delete()


@dataclass
class BootstrappedAccount:
    account: Account
    account_user: AccountUser
    secret: str


@transaction.atomic
def account_bootstrap(*, name: str, user_name: str = "admin") -> BootstrappedAccount:
    """A new account with a full-access role, its first user and that user's secret."""
    account = account_create(name=name)
    role = role_create(account=account, name="full access", statement=None, rules=None)
    account_user = user_create(account=account, role=role, name=user_name)
    issued = secret_issue(account_user=account_user, validity_at=None)
    return BootstrappedAccount(account=account, account_user=account_user, secret=issued.raw)


@transaction.atomic
def staff_grant(*, account_user: AccountUser) -> str:
    """Makes the user an operator of the whole service: the admin (as a superuser) and every
    account's batches on the pages. Returns a new password for signing in, shown once."""
    password = secrets.token_urlsafe(18)
    user = account_user.user
    user.is_staff = True
    user.is_superuser = True
    user.set_password(password)
    user.save(update_fields=["is_staff", "is_superuser", "password"])
    return password
