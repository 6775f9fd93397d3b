"""Writes to twins, identities and ledgers.

The operations that batches run in bulk take a list of requests and return, in order, what
each request produced or the exception that refused it, so one code path serves a single
call (a list of one) and a chunk of a batch: the same checks in the same order, the same
outcome. A refused request changes nothing; the others are written with set-based queries.
"""

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models.base import ModelState
from django.http import Http404
from django.utils import timezone

from batchsite import fastjson
from batchsite.errors import ApplicationError
from batchsite.timestamps import to_ts
from permissions.models import Account
from twins import selectors
from twins.models import Identity, LedgerEntry, Twin, TwinStatus
from twins.validation import DESCRIPTION_MAX_BYTES, PERSONAL_LEDGER, encoded_size


class LedgerRequest(NamedTuple):
    twin: uuid.UUID
    ledger: str
    entries: dict


class IdentitiesRequest(NamedTuple):
    twin: uuid.UUID
    identities: dict


def twin_found(*, twins: dict, twin_uuid: uuid.UUID) -> Twin:
    twin = twins.get(twin_uuid)
    if twin is None:
        raise Http404("No such twin.")
    return twin


def twin_require_alive(twin: Twin) -> None:
    if twin.status == TwinStatus.TERMINATED:
        raise ApplicationError("The twin is terminated and accepts no changes.", subcode="twin_terminated")


def ledger_require_own(*, account: Account, ledger: str) -> None:
    """Only the caller's own ledger exists here: `personal` or the account's uuid."""
    if ledger not in (PERSONAL_LEDGER, str(account.uuid)):
        raise Http404("No such ledger.")


def twins_create(*, account: Account, descriptions: Sequence[dict | None]) -> list[Twin]:
    now = timezone.now()
    new_uuids = uuids_v4(len(descriptions))
    if connection.vendor != "postgresql":
        twins = [
            Twin(uuid=twin_uuid, account=account, description=description, created_at=now, updated_at=now)
            for twin_uuid, description in zip(new_uuids, descriptions, strict=True)
        ]
        Twin.objects.bulk_create(twins)
        return twins
    twins = [
        _as_saved(
            Twin,
            {"account": account},
            uuid=twin_uuid,
            account_id=account.pk,
            status=TwinStatus.ALIVE,
            description=description,
            created_at=now,
            updated_at=now,
            terminated_at=None,
        )
        for twin_uuid, description in zip(new_uuids, descriptions, strict=True)
    ]
    twins_copy(twins)
    return twins


# uuid.UUID(version=4) clears the version and variant bits and sets them to 4 and RFC 4122.
UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
UUID4_SET = (0x8000 << 48) | (4 << 76)


def uuids_v4(count: int) -> list[uuid.UUID]:
    """`count` random UUIDs, each what uuid.uuid4() gives, from one read of the system's random
    source and built without UUID.__init__, whose checks cost a chunk of a thousand new twins
    more than the rest of making them."""
    random_bytes = os.urandom(16 * count)
    made = []
    for start in range(0, 16 * count, 16):
        value = uuid.UUID.__new__(uuid.UUID)
        object.__setattr__(
            value, "int", int.from_bytes(random_bytes[start : start + 16]) & UUID4_CLEAR | UUID4_SET
        )
        object.__setattr__(value, "is_safe", uuid.SafeUUID.unknown)
        made.append(value)
    return made


def _as_saved(model, related: dict, **values):
    """An instance of a row the caller writes itself (by COPY), as a query would have loaded
    it, built without Model.__init__: a chunk makes a thousand, and __init__'s signals and
    per-field descriptors cost more than writing the rows. `values` names every field."""
    instance = model.__new__(model)
    instance._state = ModelState()
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    instance._state.fields_cache.update(related)
    instance.__dict__.update(values)
    return instance


TWIN_COPY_FIELDS = ("uuid", "account", "status", "description", "created_at", "updated_at")


@contextmanager
def copy_from_stdin(model, fields: Sequence[str]) -> Iterator:
    """PostgreSQL's COPY into `model`'s `fields`, inside the caller's transaction. psycopg's
    own cursor is used, so its errors are wrapped into Django's here: a statement cancel or a
    dropped connection during COPY is the OperationalError the pipeline retries, like any
    other query's, and not an unknown exception that fails the chunk's lines."""
    columns = ", ".join(model._meta.get_field(name).column for name in fields)
    statement = f"COPY {model._meta.db_table} ({columns}) FROM STDIN"
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(statement) as copy,
    ):
        yield copy


def twins_copy(twins: Sequence[Twin]) -> None:
    """Inserts new twins with PostgreSQL's COPY, inside the caller's transaction: a batch
    chunk creates a thousand at a time, where the ORM's INSERT spends more time building and
    binding the statement than the database spends on the rows."""
    with copy_from_stdin(Twin, TWIN_COPY_FIELDS) as copy:
        for twin in twins:
            description = None if twin.description is None else fastjson.dumps(twin.description)
            copy.write_row(
                (twin.uuid, twin.account_id, twin.status, description, twin.created_at, twin.updated_at)
            )


def twins_create_rendered(*, account: Account, descriptions: Sequence[str | None]) -> list[str]:
    """twins_create for a batch chunk on PostgreSQL, the set path: each description given as
    its JSON text (fastjson's, as validation wrote it) and each new twin returned as the JSON
    text of its body, byte for byte what twin_body's dict gives through fastjson (JSON text
    is compositional, and tests/twins/test_set_execution.py compares the two paths). The rows
    go in one COPY of text built here: no model instance, body dict or per-row formatting."""
    now = timezone.now()
    owner = str(account.pk)
    created = fastjson.dumps(to_ts(now))
    head = (
        f'{{"status":"{TwinStatus.ALIVE}","owner":"{owner}","updated_ts":{created},'
        '"creation_certificate":{"uuid":"'
    )
    tail = f'","created_ts":{created},"creator":"{owner}"}}'
    copied_at = f"\t{now.isoformat()}\t{now.isoformat()}\n"
    row_head = f"\t{account.pk}\t{TwinStatus.ALIVE}\t"
    bodies, rows = [], []
    for twin_uuid, description in zip(uuids_v4(len(descriptions)), descriptions, strict=True):
        text = str(twin_uuid)
        if description is None:
            bodies.append(f"{head}{text}{tail}}}")
        else:
            bodies.append(f'{head}{text}{tail},"description":{description}}}')
        rows.append(f"{text}{row_head}{copy_text(description)}{copied_at}")
    with copy_from_stdin(Twin, TWIN_COPY_FIELDS) as copy:
        copy.write("".join(rows))
    return bodies


@transaction.atomic
def twin_update(*, account: Account, twin_uuid: uuid.UUID, description: dict) -> Twin:
    """Sets the given description keys; a null value removes its key."""
    twin = twin_found(
        twins=selectors.twins_by_uuid(account=account, uuids=[twin_uuid], for_update=True),
        twin_uuid=twin_uuid,
    )
    twin_require_alive(twin)
    merged = dict(twin.description or {})
    for key, value in description.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if encoded_size(merged) > DESCRIPTION_MAX_BYTES:
        raise ApplicationError(
            f"description: the updated description would exceed {DESCRIPTION_MAX_BYTES} bytes.",
            subcode="quota_violation",
        )
    twin.description = merged
    twin.updated_at = timezone.now()
    twin.save(update_fields=["description", "updated_at"])
    return twin


@transaction.atomic
def twin_terminate(*, account: Account, twin_uuid: uuid.UUID) -> Twin:
    now = timezone.now()
    # One conditional update, so two racing terminations cannot both succeed.
    terminated = Twin.objects.filter(account=account, uuid=twin_uuid, status=TwinStatus.ALIVE).update(
        status=TwinStatus.TERMINATED, terminated_at=now, updated_at=now
    )
    twin = twin_found(twins=selectors.twins_by_uuid(account=account, uuids=[twin_uuid]), twin_uuid=twin_uuid)
    if not terminated:
        raise ApplicationError("Twin already terminated.", subcode="idempotency_violation")
    return twin


def identities_create(
    *, account: Account, requests: Sequence[IdentitiesRequest]
) -> list[list[Identity] | Exception]:
    """Attaches identities; an identity the twin has already is refused. The twins are read
    as (uuid, status) and locked, and on PostgreSQL the rows are written by COPY, as ledger
    entries are: a chunk attaches a thousand."""
    now = timezone.now()
    twins = selectors.twin_states_locked(account=account, uuids=[r.twin for r in requests])
    taken = selectors.identities_taken(
        pairs=((r.twin, identity) for r in requests if r.twin in twins for identity in r.identities)
    )
    copying = connection.vendor == "postgresql"
    outcomes: list[list[Identity] | Exception] = []
    staged: list[Identity] = []
    for request in requests:
        try:
            twin = twin_found(twins=twins, twin_uuid=request.twin)
            twin_require_alive(twin)
            duplicate = next((i for i in request.identities if (twin.uuid, i) in taken), None)
            if duplicate is not None:
                raise ApplicationError(
                    f"The twin already has identity {duplicate!r}.", subcode="identity_exists"
                )
        except (Http404, ApplicationError) as refusal:
            outcomes.append(refusal)
            continue
        # The body names the twin's account as the creator; the twin itself is not loaded.
        owner = _as_saved(Twin, {}, uuid=twin.uuid, account_id=account.pk)
        if copying:
            created = [
                _as_saved(
                    Identity,
                    {"twin": owner},
                    id=None,
                    twin_id=twin.uuid,
                    identity=identity,
                    validity_at=options["validity_at"],
                    visibility=options["visibility"],
                    created_at=now,
                    updated_at=now,
                )
                for identity, options in request.identities.items()
            ]
        else:
            created = [
                Identity(twin=owner, identity=identity, created_at=now, updated_at=now, **options)
                for identity, options in request.identities.items()
            ]
        taken.update((twin.uuid, identity.identity) for identity in created)
        staged += created
        outcomes.append(created)
    if copying:
        identities_copy(staged)
    else:
        Identity.objects.bulk_create(staged)
    return outcomes


IDENTITY_COPY_FIELDS = ("twin", "identity", "validity_at", "visibility", "created_at", "updated_at")


def identities_copy(identities: Sequence[Identity]) -> None:
    """Inserts new identities with PostgreSQL's COPY, inside the caller's transaction."""
    if not identities:
        return
    with copy_from_stdin(Identity, IDENTITY_COPY_FIELDS) as copy:
        for identity in identities:
            copy.write_row(
                (
                    identity.twin_id,
                    identity.identity,
                    identity.validity_at,
                    identity.visibility,
                    identity.created_at,
                    identity.updated_at,
                )
            )


@transaction.atomic
def identity_delete(*, account: Account, twin_uuid: uuid.UUID, identity: str) -> Identity:
    twin = twin_found(
        twins=selectors.twins_by_uuid(account=account, uuids=[twin_uuid], for_update=True),
        twin_uuid=twin_uuid,
    )
    twin_require_alive(twin)
    found = Identity.objects.filter(twin=twin, identity=identity).first()
    if found is None:
        raise Http404(f"The twin has no identity {identity!r}.")
    found.delete()
    return found


def _ledger_twins(*, account: Account, requests: Sequence[LedgerRequest]) -> dict:
    return selectors.twin_states_locked(account=account, uuids=[r.twin for r in requests])


def _ledger_twin(*, account: Account, twins: dict, request: LedgerRequest) -> selectors.TwinState:
    twin = twin_found(twins=twins, twin_uuid=request.twin)
    ledger_require_own(account=account, ledger=request.ledger)
    twin_require_alive(twin)
    return twin


def _require_existing(entries: dict[str, LedgerEntry], keys) -> None:
    missing = next((key for key in keys if key not in entries), None)
    if missing is not None:
        raise ApplicationError(f"The ledger has no entry {missing!r}.", subcode="entry_not_found")


def _ledger_entries_checked(
    *, account: Account, requests: Sequence[LedgerRequest]
) -> list[selectors.TwinState | Exception]:
    """Per request of an add, in order, its twin or why it is refused: every key must be new
    to the ledger, the keys of the requests before it included."""
    twins = _ledger_twins(account=account, requests=requests)
    # Only whether a key is taken matters here: (twin, key) pairs, not entries.
    taken_keys = selectors.ledger_keys_taken(
        pairs=((r.twin, key) for r in requests if r.twin in twins for key in r.entries)
    )
    checked: list[selectors.TwinState | Exception] = []
    for request in requests:
        try:
            twin = _ledger_twin(account=account, twins=twins, request=request)
            taken = next((key for key in request.entries if (twin.uuid, key) in taken_keys), None)
            if taken is not None:
                raise ApplicationError(f"The ledger already has entry {taken!r}.", subcode="entry_exists")
        except (Http404, ApplicationError) as refusal:
            checked.append(refusal)
            continue
        taken_keys.update((twin.uuid, key) for key in request.entries)
        checked.append(twin)
    return checked


def ledger_entries_add(
    *, account: Account, requests: Sequence[LedgerRequest]
) -> list[dict[str, LedgerEntry] | Exception]:
    """Adds entries; every key of a request must be new to the ledger."""
    now = timezone.now()
    copying = connection.vendor == "postgresql"
    outcomes: list[dict | Exception] = []
    staged: list = []
    checked = _ledger_entries_checked(account=account, requests=requests)
    for request, twin in zip(requests, checked, strict=True):
        if isinstance(twin, Exception):
            outcomes.append(twin)
            continue
        if copying:
            # What the body shows of an entry; the row itself is written by COPY below.
            created = {
                key: _EntrySnapshot(fields["value"], fields["visibility"], now, now, now)
                for key, fields in request.entries.items()
            }
            staged += ((twin.uuid, key, entry) for key, entry in created.items())
        else:
            created = {
                key: LedgerEntry(
                    twin_id=twin.uuid,
                    key=key,
                    value=fields["value"],
                    visibility=fields["visibility"],
                    created_at=now,
                    updated_at=now,
                    value_changed_at=now,
                )
                for key, fields in request.entries.items()
            }
            staged += created.values()
        outcomes.append(created)
    if copying:
        ledger_entries_copy(staged)
    else:
        LedgerEntry.objects.bulk_create(staged)
    return outcomes


# COPY's text format writes these four characters escaped.
COPY_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str | None) -> str:
    """A value as a field of COPY's text format (None is its null)."""
    return "\\N" if value is None else value.translate(COPY_TEXT_ESCAPES)


def ledger_entries_add_rendered(
    *, account: Account, requests: Sequence[LedgerRequest]
) -> list[str | Exception]:
    """ledger_entries_add for a batch chunk on PostgreSQL, the set path: the same checks
    (`_ledger_entries_checked`: a locked lookup of the twins and one probe of the taken keys),
    the rows in one COPY of text built here, and each added request's body returned as JSON
    text, byte for byte what entries_body gives through fastjson (as twins_create_rendered)."""
    now = timezone.now()
    at = fastjson.dumps(to_ts(now))
    times = f'"entry_created_ts":{at},"entry_updated_ts":{at},"value_changed_ts":{at}}}'
    copied_at = f"\t{now.isoformat()}" * 3 + "\n"
    outcomes: list[str | Exception] = []
    rows: list[str] = []
    checked = _ledger_entries_checked(account=account, requests=requests)
    for request, twin in zip(requests, checked, strict=True):
        if isinstance(twin, Exception):
            outcomes.append(twin)
            continue
        twin_text = str(twin.uuid)
        entries = []
        for key, fields in request.entries.items():
            value = None if fields["value"] is None else fastjson.dumps(fields["value"])
            visibility = fields["visibility"]
            entries.append(
                f'{fastjson.dumps(key)}:{{"value":{value or "null"},'
                f'"visibility":{fastjson.dumps(visibility)},{times}'
            )
            rows.append(
                f"{twin_text}\t{copy_text(key)}\t{copy_text(value)}\t{copy_text(visibility)}{copied_at}"
            )
        outcomes.append(f'{{"entries":{{{",".join(entries)}}}}}')
    if rows:
        with copy_from_stdin(LedgerEntry, LEDGER_COPY_FIELDS) as copy:
            copy.write("".join(rows))
    return outcomes


LEDGER_COPY_FIELDS = ("twin", "key", "value", "visibility", "created_at", "updated_at", "value_changed_at")


def ledger_entries_copy(staged: Sequence[tuple]) -> None:
    """Inserts new entries ((twin uuid, key, snapshot) triples) with PostgreSQL's COPY, inside
    the caller's transaction, as twins_copy does. A null value is SQL NULL, as the ORM writes
    it for JSONField(null=True)."""
    if not staged:
        return
    with copy_from_stdin(LedgerEntry, LEDGER_COPY_FIELDS) as copy:
        for twin_id, key, entry in staged:
            value = None if entry.value is None else fastjson.dumps(entry.value)
            times = (entry.created_at, entry.updated_at, entry.value_changed_at)
            copy.write_row((twin_id, key, value, entry.visibility, *times))


def _as_json(value) -> str:
    return json.dumps(value, sort_keys=True)


class _EntrySnapshot(NamedTuple):
    value: object
    visibility: str | None
    created_at: datetime
    updated_at: datetime
    value_changed_at: datetime


def ledger_entries_update(
    *, account: Account, requests: Sequence[LedgerRequest]
) -> list[dict[str, _EntrySnapshot] | Exception]:
    """Changes the given fields of existing entries. Requests apply in order, so each outcome is
    a snapshot of its entries as that request left them."""
    now = timezone.now()
    twins = _ledger_twins(account=account, requests=requests)
    existing = selectors.ledger_entries_by_twin(
        twins=twins.values(), keys={key for r in requests for key in r.entries}
    )
    outcomes: list[dict[str, _EntrySnapshot] | Exception] = []
    changed: dict[int, LedgerEntry] = {}
    for request in requests:
        try:
            twin = _ledger_twin(account=account, twins=twins, request=request)
            entries = existing.get(twin.uuid, {})
            _require_existing(entries, request.entries)
        except (Http404, ApplicationError) as refusal:
            outcomes.append(refusal)
            continue
        snapshots = {}
        for key, fields in request.entries.items():
            entry = entries[key]
            if "value" in fields:
                # Compared as JSON text: Python holds 1 == 1.0 == True, JSON does not.
                if _as_json(fields["value"]) != _as_json(entry.value):
                    entry.value_changed_at = now
                entry.value = fields["value"]
            if "visibility" in fields:
                entry.visibility = fields["visibility"]
            entry.updated_at = now
            changed[entry.pk] = entry
            snapshots[key] = _EntrySnapshot(
                entry.value, entry.visibility, entry.created_at, entry.updated_at, entry.value_changed_at
            )
        outcomes.append(snapshots)
    LedgerEntry.objects.bulk_update(
        list(changed.values()), ["value", "visibility", "updated_at", "value_changed_at"]
    )
    return outcomes


@transaction.atomic
def ledger_entries_delete(
    *, account: Account, twin_uuid: uuid.UUID, ledger: str, keys: Sequence[str]
) -> dict[str, LedgerEntry]:
    request = LedgerRequest(twin=twin_uuid, ledger=ledger, entries=dict.fromkeys(keys))
    twins = _ledger_twins(account=account, requests=[request])
    twin = _ledger_twin(account=account, twins=twins, request=request)
    entries = selectors.ledger_entries_by_twin(twins=[twin], keys=keys).get(twin.uuid, {})
    _require_existing(entries, keys)
    LedgerEntry.objects.filter(pk__in=[entry.pk for entry in entries.values()]).delete()
    return {key: entries[key] for key in keys}
