"""A chunk through an operation's bulk path leaves the same database and gives the same
per-item results as its items sent one by one through the single handler."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from twins.models import Identity, LedgerEntry, Twin, TwinStatus
from twins.registry import OPERATIONS, Actor, OperationResult, batchable_operations, run_one

pytestmark = pytest.mark.django_db

ALIVE = [uuid.UUID(int=n) for n in (1, 2, 3)]
TERMINATED = uuid.UUID(int=4)
FOREIGN = uuid.UUID(int=5)
MISSING = uuid.UUID(int=6)
KEYS = ["a", "b", "c"]
IDENTITIES = ["RFID#1", "RFID#2", "NFC#1"]

json_values = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([1.0, "x", [1], {"k": 1}])
# Mostly one twin, so that items of a chunk often meet on it.
twins = st.sampled_from(
    [str(t) for t in [ALIVE[0], ALIVE[0], ALIVE[0], *ALIVE, TERMINATED, FOREIGN, MISSING]]
)
keys = st.sampled_from(KEYS)
identities = st.sampled_from(IDENTITIES)
visibility = st.none() | st.sampled_from(["rule"])


def item_strategies(account, stranger_account):
    ledgers = st.sampled_from(["personal", "personal", str(account.uuid), str(stranger_account.uuid)])
    return {
        "create_twin": st.fixed_dictionaries(
            {}, optional={"description": st.dictionaries(keys, json_values)}
        ),
        "get_twin": st.fixed_dictionaries({"twin": twins, "show_terminated": st.booleans()}),
        "update_twin": st.fixed_dictionaries(
            {"twin": twins, "description": st.dictionaries(keys, json_values)}
        ),
        "terminate_twin": st.fixed_dictionaries({"twin": twins}),
        "create_twin_identity": st.fixed_dictionaries(
            {
                "twin": twins,
                "identities": st.dictionaries(
                    identities, st.fixed_dictionaries({}, optional={"visibility": visibility}), min_size=1
                ),
            }
        ),
        "get_twin_identities": st.fixed_dictionaries({"twin": twins}),
        "delete_twin_identity": st.fixed_dictionaries({"twin": twins, "identity": identities}),
        "resolve_twin_identity": st.fixed_dictionaries({"identity": identities}),
        "add_twin_ledger_entry": st.fixed_dictionaries(
            {
                "twin": twins,
                "ledger": ledgers,
                "entries": st.dictionaries(keys, st.fixed_dictionaries({"value": json_values}), min_size=1),
            }
        ),
        "get_twin_ledger_entry": st.fixed_dictionaries(
            {"twin": twins}, optional={"entries": st.lists(keys, min_size=1)}
        ),
        "update_twin_ledger_entry": st.fixed_dictionaries(
            {
                "twin": twins,
                "entries": st.dictionaries(
                    keys,
                    st.fixed_dictionaries({}, optional={"value": json_values, "visibility": visibility}),
                    min_size=1,
                ),
            }
        ),
        "delete_twin_ledger_entry": st.fixed_dictionaries(
            {"twin": twins, "entries": st.lists(keys, min_size=1)}
        ),
    }


def furnish(account, stranger_account):
    now = timezone.now() - timedelta(days=1)
    stamps = {"created_at": now, "updated_at": now}
    for twin in ALIVE:
        Twin.objects.create(uuid=twin, account=account, description={"a": 1}, **stamps)
    Twin.objects.create(
        uuid=TERMINATED, account=account, status=TwinStatus.TERMINATED, terminated_at=now, **stamps
    )
    Twin.objects.create(uuid=FOREIGN, account=stranger_account, **stamps)
    for twin in (ALIVE[0], TERMINATED, FOREIGN):
        Identity.objects.create(twin_id=twin, identity="RFID#1", **stamps)
        LedgerEntry.objects.create(twin_id=twin, key="a", value=1, value_changed_at=now, **stamps)


class Canon:
    """Replaces what differs by construction between two runs: new twins' uuids (numbered in
    order of appearance) and timestamps."""

    def __init__(self):
        self.new_twins = {}

    def twin(self, value):
        if uuid.UUID(str(value)) in {*ALIVE, TERMINATED, FOREIGN, MISSING}:
            return str(value)
        return self.new_twins.setdefault(str(value), f"new-{len(self.new_twins)}")

    def result(self, outcome):
        if not isinstance(outcome, OperationResult):
            return outcome
        return outcome.status, self.body(outcome.body)

    def body(self, value, key=None):
        if isinstance(value, dict):
            return {k: self.body(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.body(v) for v in value]
        if key and key.endswith("_ts") and value is not None:
            return "ts"
        if key == "uuid":
            return self.twin(value)
        return value

    def database(self):
        return {
            "twins": sorted(
                (self.twin(t.uuid), str(t.account_id), t.status, t.description, t.terminated_at is not None)
                for t in Twin.objects.all()
            ),
            "identities": sorted(
                (self.twin(i.twin_id), i.identity, i.visibility, i.validity_at)
                for i in Identity.objects.all()
            ),
            "entries": sorted(
                (
                    self.twin(e.twin_id),
                    e.key,
                    repr(e.value),
                    e.visibility,
                    e.value_changed_at == e.created_at,
                    e.updated_at == e.created_at,
                )
                for e in LedgerEntry.objects.all()
            ),
        }


def run(chunks, *, actor, stranger_account, bulk: bool):
    canon = Canon()
    with transaction.atomic():
        furnish(actor.account, stranger_account)
        results = []
        for name, items in chunks:
            operation = OPERATIONS[name]
            if bulk:
                with transaction.atomic():
                    outcomes = operation.run_bulk(actor=actor, items=items)
            else:
                outcomes = [run_one(operation.handler, actor=actor, data=item) for item in items]
            results.append([canon.result(outcome) for outcome in outcomes])
        state = canon.database()
        transaction.set_rollback(True)
    return results, state


def validated(name, raw_items):
    items = []
    for raw in raw_items:
        try:
            items.append(OPERATIONS[name].validate_input(raw))
        except ValidationError:
            continue
    return items


def test_every_batchable_operation_has_an_item_strategy(caller, stranger):
    assert set(item_strategies(caller.account, stranger.account)) == {
        op.name for op in batchable_operations()
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_bulk_and_single_paths_agree(caller, stranger, draw):
    strategies = item_strategies(caller.account, stranger.account)
    chunks = draw.draw(
        st.lists(
            st.sampled_from(sorted(strategies)).flatmap(
                lambda name: st.tuples(st.just(name), st.lists(strategies[name], min_size=1, max_size=5))
            ),
            min_size=1,
            max_size=5,
        )
    )
    chunks = [(name, validated(name, items)) for name, items in chunks]
    actor = Actor(user=caller.user, account=caller.account)
    single = run(chunks, actor=actor, stranger_account=stranger.account, bulk=False)
    bulk = run(chunks, actor=actor, stranger_account=stranger.account, bulk=True)
    assert bulk == single
