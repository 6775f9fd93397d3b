"""Reads, always scoped to the acting account: another account's twin does not exist."""

import uuid
from collections.abc import Iterable

from django.db.models import Q
from django.utils import timezone

from permissions.models import Account
from twins.models import Identity, LedgerEntry, Twin, TwinStatus


def twins_by_uuid(*, account: Account, uuids: Iterable[uuid.UUID], for_update: bool = False) -> dict:
    """The account's twins among `uuids`, in one query; locked (in uuid order, so concurrent
    chunks cannot deadlock) when they are about to change."""
    twins = Twin.objects.filter(account=account, uuid__in=set(uuids))
    if for_update:
        twins = twins.select_for_update().order_by("uuid")
    return {twin.uuid: twin for twin in twins}


def twin_scan(*, account: Account, after: uuid.UUID | None, count: int) -> list[uuid.UUID]:
    twins = Twin.objects.filter(account=account, status=TwinStatus.ALIVE)
    if after is not None:
        twins = twins.filter(uuid__gt=after)
    return list(twins.order_by("uuid").values_list("uuid", flat=True)[:count])


def identities_by_twin(*, twins: Iterable[Twin]) -> dict[uuid.UUID, list[Identity]]:
    found: dict[uuid.UUID, list[Identity]] = {}
    for identity in Identity.objects.filter(twin__in=list(twins)).order_by("identity"):
        found.setdefault(identity.twin_id, []).append(identity)
    return found


def identity_resolve(*, account: Account, identity: str) -> list[uuid.UUID]:
    """The account's alive twins holding `identity`, expired identities left out."""
    return list(
        Identity.objects.filter(identity=identity, twin__account=account, twin__status=TwinStatus.ALIVE)
        .filter(Q(validity_at__isnull=True) | Q(validity_at__gt=timezone.now()))
        .order_by("twin_id")
        .values_list("twin_id", flat=True)
    )


def ledger_entries_by_twin(
    *, twins: Iterable[Twin], keys: Iterable[str] | None = None
) -> dict[uuid.UUID, dict[str, LedgerEntry]]:
    """Entries of the twins, by twin and key; only `keys` when given."""
    entries = LedgerEntry.objects.filter(twin__in=list(twins)).order_by("key")
    if keys is not None:
        entries = entries.filter(key__in=set(keys))
    found: dict[uuid.UUID, dict[str, LedgerEntry]] = {}
    for entry in entries:
        found.setdefault(entry.twin_id, {})[entry.key] = entry
    return found
