"""Writes for tenants: accounts, roles (and their guardian permissions), users, secrets."""

import hashlib
import secrets
import uuid
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


def ensure_not_outranked(*, acting_user, account: Account, target_actions: set[str], what: str) -> None:
    """No one acts on a principal (a user, their secret, a role) that holds an action the caller
    does not: otherwise a narrow role could take over, demote or delete a broader one."""
    if acting_user is None:
        return
    beyond = target_actions - actions_held(user=acting_user, account=account)
    if beyond:
        raise ApplicationError(
            f"The {what} holds actions your own role does not have: " + ", ".join(sorted(beyond)),
            subcode="principal_holds_more",
            status_code=403,
        )


def ensure_user_within(*, acting_user, account_user: AccountUser) -> None:
    ensure_not_outranked(
        acting_user=acting_user,
        account=account_user.account,
        target_actions=actions_held(user=account_user.user, account=account_user.account),
        what="user",
    )


def ensure_role_within(*, acting_user, role: Role) -> None:
    ensure_not_outranked(
        acting_user=acting_user,
        account=role.account,
        target_actions=granted_actions(role.statement),
        what="role",
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
    ensure_role_within(acting_user=acting_user, role=role)
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
def role_delete(*, role: Role, acting_user=None) -> None:
    ensure_role_within(acting_user=acting_user, role=role)
    # Every user has exactly one role (docs/contract.md, section 2), so a role in use (the caller's own
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
    ensure_user_within(acting_user=acting_user, account_user=account_user)
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
def user_delete(*, account_user: AccountUser, acting_user=None) -> None:
    ensure_user_within(acting_user=acting_user, account_user=account_user)
    django_user = account_user.user
    account_user.delete()
    django_user.delete()


@dataclass
class IssuedSecret:
    secret: UserSecret
    raw: str


def secret_issue(
    *, account_user: AccountUser, validity_at: datetime | None, acting_user=None
) -> IssuedSecret:
    """A new secret for the user, replacing any earlier one. The raw secret exists only in
    the return value."""
    if acting_user is not None:
        expiry_record(account_user=account_user, validity_at=validity_at, set_by=principal_label(acting_user))
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


def principal_label(acting_user) -> str:
    """Who acted, as stored: the account user's uuid, or `staff:<pk>` for the admin site."""
    if acting_user is None:
        return ""
    account_user = getattr(acting_user, "account_user", None)
    return str(account_user.uuid) if account_user is not None else f"staff:{acting_user.pk}"


def is_owner(*, acting_user, account_user: AccountUser) -> bool:
    return acting_user is not None and principal_label(acting_user) == str(account_user.uuid)


def bound_by_cap(*, acting_user, account_user: AccountUser) -> bool:
    """Whether the actor must stay within an expiry someone else set on this user: the user, and
    anyone who holds no action the user lacks (a peer the user may have made for the purpose).
    Only a principal above the user, or staff on the admin site, may lengthen or lift it."""
    if acting_user is None:
        return False
    if is_owner(acting_user=acting_user, account_user=account_user):
        return True
    if getattr(acting_user, "account_user", None) is None:
        return False
    account = account_user.account
    return actions_held(user=acting_user, account=account) <= actions_held(
        user=account_user.user, account=account
    )


def expiry_within_cap(*, account_user: AccountUser, validity_at: datetime | None) -> None:
    """A user acting on their own secret stays within an expiry someone else set."""
    cap = account_user.secret_expiry_cap
    if cap is not None and (validity_at is None or validity_at > cap):
        raise ApplicationError(
            f"An administrator set this secret to expire at {cap.isoformat()}; "
            "you may shorten that, not lengthen or remove it.",
            subcode="expiry_set_by_other",
            status_code=403,
        )


def expiry_record(*, account_user: AccountUser, validity_at: datetime | None, set_by: str) -> None:
    """Someone other than the owner set the expiry: that becomes the owner's cap (or, with no
    expiry, lifts it). The owner's own changes leave the cap as it is."""
    if set_by == str(account_user.uuid):
        return
    AccountUser.objects.filter(pk=account_user.pk).update(
        secret_expiry_cap=validity_at, secret_expiry_set_by=set_by if validity_at else ""
    )
    account_user.secret_expiry_cap = validity_at
    account_user.secret_expiry_set_by = set_by if validity_at else ""


@transaction.atomic
def secret_pin_create(
    *, account_user: AccountUser, secret_validity_at: datetime | None, acting_user=None
) -> str:
    """A PIN that exchanges for the user's new secret. Asking for one for a user who holds
    more than the caller is refused: the PIN is that user's identity."""
    ensure_user_within(acting_user=acting_user, account_user=account_user)
    if bound_by_cap(acting_user=acting_user, account_user=account_user):
        cap = account_user.secret_expiry_cap
        if cap is not None and secret_validity_at is None:
            # A reissued secret keeps the expiry an administrator set.
            secret_validity_at = cap
        expiry_within_cap(account_user=account_user, validity_at=secret_validity_at)
    if secret_validity_at is not None and secret_validity_at <= timezone.now():
        raise ApplicationError("validity_ts must be in the future.", subcode="invalid_validity_ts")
    pin = "".join(secrets.choice(PIN_ALPHABET) for _ in range(PIN_LENGTH))
    SecretPin.objects.create(
        account_user=account_user,
        digest=pin_digest(account_uuid=account_user.account_id, pin=pin),
        secret_validity_at=secret_validity_at,
        requested_by=principal_label(acting_user),
        expires_at=timezone.now() + timedelta(seconds=settings.SECRET_PIN_VALIDITY_SECONDS),
    )
    return pin


def requester_within(*, pin: SecretPin) -> None:
    """Checked again at the exchange: the user's grants may have grown, or the requester's
    shrunk, since the PIN was issued; the PIN must not carry more than its requester holds."""
    target = pin.account_user
    requester_uuid = _uuid_or_none(pin.requested_by)
    if requester_uuid is None or requester_uuid == target.pk:
        return  # the user's own PIN, or one from the admin site (staff)
    requester = AccountUser.objects.select_related("user", "account").filter(uuid=requester_uuid).first()
    if requester is None:
        raise ApplicationError(
            "The user who asked for this PIN no longer exists.",
            subcode="principal_holds_more",
            status_code=403,
        )
    ensure_user_within(acting_user=requester.user, account_user=target)


def pin_sets_cap(pin: SecretPin) -> bool:
    """Whether the secret a PIN gives binds its user to the PIN's expiry: when staff or someone
    above the user asked for it, not the user or a peer (see bound_by_cap)."""
    if not pin.requested_by:
        return False
    requester_uuid = _uuid_or_none(pin.requested_by)
    if requester_uuid is None:
        return True  # staff, on the admin site
    requester = AccountUser.objects.select_related("user").filter(uuid=requester_uuid).first()
    return requester is not None and not bound_by_cap(
        acting_user=requester.user, account_user=pin.account_user
    )


def _uuid_or_none(text: str):
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


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
    requester_within(pin=found)
    if pin_sets_cap(found):
        expiry_record(
            account_user=found.account_user, validity_at=found.secret_validity_at, set_by=found.requested_by
        )
    return secret_issue(account_user=found.account_user, validity_at=found.secret_validity_at)


def secret_pin_burn(*, account_uuid, pin: str) -> bool:
    """Deletes the PIN, if it is one: sent in a throttled exchange, it is spent, not delayed."""
    return SecretPin.objects.filter(digest=pin_digest(account_uuid=account_uuid, pin=pin)).delete()[0] > 0


@transaction.atomic
def secret_update(*, secret: UserSecret, validity_at: datetime | None, acting_user=None) -> UserSecret:
    account_user = secret.account_user
    ensure_user_within(acting_user=acting_user, account_user=account_user)
    if bound_by_cap(acting_user=acting_user, account_user=account_user):
        expiry_within_cap(account_user=account_user, validity_at=validity_at)
    elif acting_user is not None:
        expiry_record(account_user=account_user, validity_at=validity_at, set_by=principal_label(acting_user))
    secret.validity_at = validity_at
    secret.save(update_fields=["validity_at", "updated_at"])
    return secret


@transaction.atomic
def secret_delete(*, secret: UserSecret, acting_user=None) -> None:
    ensure_user_within(acting_user=acting_user, account_user=secret.account_user)
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


def user_password_reset(*, account_user: AccountUser) -> str:
    """A new password for the user's sign-in to the pages (/ui/login, user name: the user id),
    returned to be shown once. It gives the pages only: the API still takes the secret."""
    password = secrets.token_urlsafe(18)
    user = account_user.user
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


@transaction.atomic
def staff_grant(*, account_user: AccountUser) -> str:
    """Makes the user an operator of the whole service: the admin (as a superuser) and every
    account's batches on the pages. Returns a new password for signing in, shown once."""
    user = account_user.user
    user.is_staff = True
    user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user_password_reset(account_user=account_user)
