"""Reads, always scoped to the acting account: another account's twin does not exist."""

import uuid
from collections.abc import Iterable
from typing import NamedTuple

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from batchsite import fastjson
from permissions.models import Account
from twins.models import Identity, LedgerEntry, Twin, TwinStatus


def among(queryset: QuerySet, column: str, values: Iterable, *, array_type: str) -> QuerySet:
    """`queryset` filtered on `column` being one of `values`. On PostgreSQL the values go as
    one array parameter (a JSON text, so any value is quoted right): a chunk's thousand-item
    IN list costs psycopg more time splitting and binding the statement than the database
    spends running it."""
    values = set(values)
    if connection.vendor != "postgresql":
        return queryset.filter(**{f"{column}__in": values})
    table = queryset.model._meta.db_table
    field = queryset.model._meta.get_field(column).column
    # A semi-join on the values rather than `= ANY(array)`: each value is one probe of the
    # column's index whatever the table's statistics say, where with none (a fresh table, a
    # first import) the planner read every row of the account's twins for each lookup.
    return queryset.extra(
        where=[f'"{table}"."{field}" IN (SELECT jsonb_array_elements_text(%s::jsonb)::{array_type})'],
        params=[fastjson.dumps([str(value) for value in values])],
    )


def twins_by_uuid(*, account: Account, uuids: Iterable[uuid.UUID], for_update: bool = False) -> dict:
    """The account's twins among `uuids`, in one query; locked (in uuid order, so concurrent
    chunks cannot deadlock) when they are about to change."""
    twins = among(Twin.objects.filter(account=account), "uuid", uuids, array_type="uuid")
    if for_update:
        twins = twins.select_for_update().order_by("uuid")
    return {twin.uuid: twin for twin in twins}


class TwinState(NamedTuple):
    """What a ledger write needs of a twin: which one, and whether it is alive."""

    uuid: uuid.UUID
    status: str

    @property
    def pk(self) -> uuid.UUID:
        return self.uuid


def twin_states_locked(*, account: Account, uuids: Iterable[uuid.UUID]) -> dict[uuid.UUID, TwinState]:
    """The account's twins among `uuids`, locked in uuid order as twins_by_uuid locks them,
    read as (uuid, status) only: a ledger write needs no more, and a chunk reads a thousand.

    On PostgreSQL each uuid is one probe of the primary key (a lateral subquery per value, in
    uuid order). As a join, the planner chose by the table's statistics: while a batch creates
    twins faster than they are analysed, it hashed the account's every twin for each lookup,
    a cost that grew with the account (0.5 ms to 4 ms a lookup over 33,000 new twins)."""
    if connection.vendor != "postgresql":
        twins = among(Twin.objects.filter(account=account), "uuid", uuids, array_type="uuid")
        rows = twins.select_for_update().order_by("uuid").values_list("uuid", "status")
        return {twin_uuid: TwinState(twin_uuid, status) for twin_uuid, status in rows}
    wanted = sorted({str(twin_uuid) for twin_uuid in uuids})
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT twin.uuid, twin.status FROM jsonb_array_elements_text(%s::jsonb) WITH ORDINALITY"
            " AS wanted(value, position) CROSS JOIN LATERAL ("
            f"SELECT uuid, status FROM {Twin._meta.db_table}"
            " WHERE uuid = wanted.value::uuid AND account_id = %s FOR UPDATE"
            ") AS twin ORDER BY wanted.position",
            [fastjson.dumps(wanted), account.pk],
        )
        return {twin_uuid: TwinState(twin_uuid, status) for twin_uuid, status in cursor.fetchall()}


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
    """The account's alive twins holding `identity`, expired identities left out. Two
    lookups, the identity's first: in one join both PostgreSQL and SQLite chose to walk every
    twin of the account and probe each (11-24 ms at 10,000 twins, growing with the account)."""
    holders = list(
        Identity.objects.filter(identity=identity)
        .filter(Q(validity_at__isnull=True) | Q(validity_at__gt=timezone.now()))
        .values_list("twin_id", flat=True)
    )
    if not holders:
        return []
    alive = Twin.objects.filter(uuid__in=holders, account=account, status=TwinStatus.ALIVE)
    return list(alive.order_by("uuid").values_list("uuid", flat=True))


def pairs_taken(model, column: str, pairs: Iterable[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
    """Which of the (twin, value) pairs a row of `model` (twin, `column`) holds. On PostgreSQL,
    one probe of the pair's unique index per pair (a lateral subquery per pair: as a join, the
    planner hashed the whole table when its statistics lagged behind a batch's inserts), the
    pairs sent as one JSON parameter."""
    pairs = set(pairs)
    if not pairs:
        return set()
    if connection.vendor != "postgresql":
        rows = model.objects.filter(
            twin_id__in={twin for twin, _ in pairs}, **{f"{column}__in": {value for _, value in pairs}}
        )
        return set(rows.values_list("twin_id", column)) & pairs
    table = model._meta.db_table
    field = model._meta.get_field(column).column
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT held.twin_id, held.value FROM jsonb_array_elements(%s::jsonb) AS pair"
            f" CROSS JOIN LATERAL (SELECT twin_id, {field} AS value FROM {table}"
            f" WHERE twin_id = (pair->>0)::uuid AND {field} = pair->>1) AS held",
            [fastjson.dumps([[str(twin), value] for twin, value in pairs])],
        )
        return {(twin, value) for twin, value in cursor.fetchall()}


def ledger_keys_taken(*, pairs: Iterable[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
    """Which of the (twin, key) pairs name an existing entry."""
    return pairs_taken(LedgerEntry, "key", pairs)


def identities_taken(*, pairs: Iterable[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
    """Which of the (twin, identity) pairs a twin holds already."""
    return pairs_taken(Identity, "identity", pairs)


def ledger_entries_by_twin(
    *, twins: Iterable[Twin], keys: Iterable[str] | None = None
) -> dict[uuid.UUID, dict[str, LedgerEntry]]:
    """Entries of the twins, by twin and key; only `keys` when given."""
    entries = LedgerEntry.objects.filter(twin_id__in=[twin.pk for twin in twins]).order_by("key")
    if keys is not None:
        entries = entries.filter(key__in=set(keys))
    found: dict[uuid.UUID, dict[str, LedgerEntry]] = {}
    for entry in entries:
        found.setdefault(entry.twin_id, {})[entry.key] = entry
    return found
