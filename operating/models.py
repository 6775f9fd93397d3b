"""Usage counters and per-account quotas (docs/contract.md, section 12).

Counters are rows keyed by account, user and UTC hour, incremented by upserts
(`INSERT … ON CONFLICT … DO UPDATE SET n = n + k`), never read-modify-write. They reference
accounts without a database constraint: a counter written by a worker or a flush after its
account was deleted is harmless, and the account's deletion still cascades to them."""

import uuid
from datetime import UTC, datetime

from django.db import models

from permissions.models import Account

# The user of counts that belong to no user (an upload made without one).
NO_USER = uuid.UUID(int=0)
USAGE_COUNTERS = ("batches_created", "batch_lines", "batch_lines_failed", "upload_bytes", "api_calls")


def hour_of(moment: datetime) -> datetime:
    """The UTC hour a moment is counted in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class UsageHour(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    # An AccountUser's uuid, kept when the user is deleted: the account's usage stays whole.
    user = models.UUIDField(default=NO_USER)
    hour = models.DateTimeField()
    batches_created = models.BigIntegerField(default=0)
    batch_lines = models.BigIntegerField(default=0)
    batch_lines_failed = models.BigIntegerField(default=0)
    upload_bytes = models.BigIntegerField(default=0)
    api_calls = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "user", "hour"], name="usage_account_user_hour")
        ]
        indexes = [models.Index(fields=["account", "hour"], name="usage_account_hour")]

    def __str__(self):
        return f"{self.account_id} {self.user} {self.hour:%Y-%m-%d-%H}"


class LinesMinute(models.Model):
    """Lines run per account and UTC minute, for the staff dashboard's chart (which sums the
    accounts). Per account, because a chunk adds to it in its commit: a row shared by every
    account made each account's commits wait for a worker frozen inside any one of them."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    minute = models.DateTimeField()
    lines = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "account"], name="lines_minute_account")]

    def __str__(self):
        return f"{self.account_id} {self.minute:%Y-%m-%d %H:%M} {self.lines}"


class QuotaRefusalHour(models.Model):
    """Refusals by a quota (or the throttle) per account and UTC hour."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, db_constraint=False, related_name="+")
    quota = models.CharField(max_length=64)
    hour = models.DateTimeField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "quota", "hour"], name="refusal_account_quota_hour")
        ]
        indexes = [models.Index(fields=["hour"], name="refusal_hour")]

    def __str__(self):
        return f"{self.account_id} {self.quota} {self.hour:%Y-%m-%d-%H}"


class AccountQuota(models.Model):
    """An account's own limits; an empty field takes the default from settings. The row is
    also the lock that makes two batch creates take turns at the last free place."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, primary_key=True, related_name="quota")
    max_active_batches = models.PositiveIntegerField(
        null=True, blank=True, help_text="Batches not yet finished. Empty: QUOTA_MAX_ACTIVE_BATCHES."
    )
    max_batch_lines_per_day = models.BigIntegerField(
        null=True, blank=True, help_text="Lines run per UTC day. Empty: QUOTA_MAX_BATCH_LINES_PER_DAY."
    )
    max_upload_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="Largest upload, in bytes. Empty: QUOTA_MAX_UPLOAD_BYTES."
    )

    def __str__(self):
        return f"quotas of {self.account_id}"


class WorkerHeartbeat(models.Model):
    """A Celery worker node's last sign of life, written by the node every
    WORKER_HEARTBEAT_SECONDS in the database's time and deleted when it stops: the workers seen
    alive are read here, whichever broker carries the work."""

    node = models.CharField(max_length=200, primary_key=True)
    # The queues the node consumes, comma-separated.
    queues = models.CharField(max_length=500)
    seen_at = models.DateTimeField()

    def __str__(self):
        return self.node
