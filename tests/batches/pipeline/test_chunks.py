"""A database fault while a chunk's lines run is the chunk's, not its lines': it is raised, so the
chunk rolls back and runs again, and no line is listed as failed. The bulk writes that use COPY
go through psycopg's own cursor; their faults must be raised as any other query's are."""

import contextlib

import pytest
from django.db import OperationalError, connection

from batches.pipeline.chunks import execute_items
from twins.models import LedgerEntry, Twin
from twins.registry import Actor, operation_get
from twins.services import twins_create

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's"),
]


@contextlib.contextmanager
def writes_blocked(model):
    """Another session holds `model`'s table against writes, and this session waits at most
    0.1 s for a lock, until the block ends: the next write to the table fails as a statement
    cancel or a lost lock does."""
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.execute(f"LOCK TABLE {model._meta.db_table} IN SHARE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '100ms'")
        yield
    finally:
        other.rollback()
        other.close()


def validated(operation_name: str, lines: list[dict]) -> list[dict]:
    operation = operation_get(operation_name)
    return [operation.validate_input(line) for line in lines]


def test_a_fault_during_the_copy_of_new_twins_is_raised_not_listed_as_failed_lines(caller):
    items = validated("create_twin", [{"description": {"n": n}} for n in range(5)])
    with writes_blocked(Twin), pytest.raises(OperationalError):
        execute_items(operation_get("create_twin"), Actor(user=caller.user, account=caller.account), items)
    assert not Twin.objects.filter(account=caller.account).exists()


def test_a_fault_during_the_copy_of_new_ledger_entries_is_raised_not_listed_as_failed_lines(caller):
    twins = [str(twin.uuid) for twin in twins_create(account=caller.account, descriptions=[None] * 3)]
    items = validated(
        "add_twin_ledger_entry",
        [{"twin": twin, "ledger": "personal", "entries": {"k": {"value": 1}}} for twin in twins],
    )
    with writes_blocked(LedgerEntry), pytest.raises(OperationalError):
        execute_items(
            operation_get("add_twin_ledger_entry"), Actor(user=caller.user, account=caller.account), items
        )
    assert not LedgerEntry.objects.filter(twin_id__in=twins).exists()
