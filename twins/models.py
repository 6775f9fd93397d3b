import uuid

from django.db import models

from permissions.models import Account


class TwinStatus(models.TextChoices):
    ALIVE = "alive"
    TERMINATED = "terminated"


class Twin(models.Model):
    """A Trusted Twin twin. Its uuid is its `creation_certificate.uuid`; its owner and creator
    is the account."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="twins")
    status = models.CharField(max_length=16, choices=TwinStatus.choices, default=TwinStatus.ALIVE)
    description = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # scan_twins pages through one account's twins in uuid order.
        indexes = [models.Index(fields=["account", "uuid"], name="twin_account_uuid")]

    def __str__(self):
        return str(self.uuid)


class Identity(models.Model):
    """An identity (`RFID#…`) attached to a twin; resolvable within the twin's account."""

    twin = models.ForeignKey(Twin, on_delete=models.CASCADE, related_name="identities")
    identity = models.CharField(max_length=140)
    validity_at = models.DateTimeField(null=True, blank=True)
    # Trusted Twin's null rule (private) is not an empty rule.
    visibility = models.TextField(null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["twin", "identity"], name="identity_unique_per_twin")]
        # resolve_twin_identity looks an identity up across the account's twins.
        indexes = [models.Index(fields=["identity"], name="identity_lookup")]

    def __str__(self):
        return self.identity


class LedgerEntry(models.Model):
    """An entry of the twin owner's personal ledger on a twin."""

    twin = models.ForeignKey(Twin, on_delete=models.CASCADE, related_name="ledger_entries")
    key = models.CharField(max_length=128)
    value = models.JSONField(null=True)
    # Trusted Twin's null rule (private) is not an empty rule.
    visibility = models.TextField(null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    value_changed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [models.UniqueConstraint(fields=["twin", "key"], name="ledger_entry_unique_key")]

    def __str__(self):
        return f"{self.twin_id}/{self.key}"
