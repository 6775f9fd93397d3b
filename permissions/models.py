import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

from permissions.actions import ACTIONS


class Account(models.Model):
    """The tenant. Every action name is an object permission on it (see permissions.actions)."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ()
        permissions = [(action, action) for action in ACTIONS]
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.uuid})"


class Role(models.Model):
    """A named statement of allowed actions. Its `group` holds the statement, materialised as
    guardian object permissions on the account; members of the role are in the group."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="roles")
    name = models.CharField(max_length=200)
    statement = models.JSONField(null=True, blank=True)
    rules = models.JSONField(null=True, blank=True)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="role")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return self.name


class AccountUser(models.Model):
    """A user of an account (Trusted Twin's "user"), tied to one Django user and one role."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="users")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="users")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_user"
    )
    name = models.CharField(max_length=200)
    description = models.JSONField(null=True, blank=True)
    activity = models.JSONField(null=True, blank=True)
    # An expiry someone else (an administrator) set on this user's secret, and who: the user
    # may shorten it but neither lengthen nor remove it, and a secret they reissue keeps it.
    # Kept on the user, not the secret, so deleting the secret does not shed it.
    secret_expiry_cap = models.DateTimeField(null=True, blank=True)
    secret_expiry_set_by = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.name} ({self.uuid})"


class UserSecret(models.Model):
    """A user's API secret. Only its SHA-256 is kept: the secret has 256 random bits, so a
    fast hash is as safe as a slow one and lets each request find it by an index."""

    account_user = models.OneToOneField(AccountUser, on_delete=models.CASCADE, related_name="secret")
    digest = models.CharField(max_length=64, unique=True)
    fingerprint = models.CharField(max_length=4)
    validity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"…{self.fingerprint}"


class SecretPin(models.Model):
    """A one-time PIN that exchanges for a new secret (Trusted Twin's PIN flow)."""

    account_user = models.ForeignKey(AccountUser, on_delete=models.CASCADE, related_name="pins")
    digest = models.CharField(max_length=64, unique=True)
    secret_validity_at = models.DateTimeField(null=True, blank=True)
    # Who asked for the PIN: the account user's uuid, "staff:<pk>" for the admin site.
    requested_by = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"PIN for {self.account_user_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class WindowCounter(models.Model):
    """One throttle or lockout count (permissions.counters): hits since the window began,
    and when it ends, in seconds since the epoch by the database's clock."""

    key = models.CharField(max_length=255, primary_key=True)
    count = models.IntegerField()
    ends_at = models.FloatField(db_index=True)

    def __str__(self):
        return f"{self.key}: {self.count}"
