"""The twin registry's operations (docs/contract.md, section 8), declared in the one registry.

Operations with a set-based path (creating twins, identities and ledger entries, changing
entries, and the reads) are written once as a "many" function over a list of inputs; the
single handler runs it on a list of one, so a batch line and a REST call give the same answer.
The rest loop over their single handler in bulk.
"""

import uuid
from collections.abc import Callable, Sequence
from functools import partial

from django.http import Http404

from batchsite import fastjson
from batchsite.errors import describe_exception
from twins import bodies, selectors, services
from twins import serializers as s
from twins.models import TwinStatus
from twins.registry import (
    Actor,
    Operation,
    OperationError,
    OperationResult,
    Outcome,
    RenderedResult,
    register,
)
from twins.validation import cursor_of, validate_fast

Many = Callable[..., list]


def _from_many(many: Many, *, status: int, body_of: Callable) -> tuple[Callable, Callable]:
    """A single handler and a bulk handler over one "many" function, which returns per
    input what it produced or the exception that refused it."""

    def handler(*, actor: Actor, data: dict) -> OperationResult:
        [produced] = many(actor=actor, items=[data])
        if isinstance(produced, Exception):
            raise produced
        return OperationResult(status, body_of(produced))

    def bulk(*, actor: Actor, items: Sequence[dict]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for produced in many(actor=actor, items=items):
            if isinstance(produced, Exception):
                outcomes.append(OperationError.from_info(describe_exception(produced)))
            else:
                outcomes.append(OperationResult(status, body_of(produced)))
        return outcomes

    return handler, bulk


def create_twin_many(*, actor: Actor, items: Sequence[dict]) -> list:
    return services.twins_create(account=actor.account, descriptions=[item["description"] for item in items])


def create_twin_set(*, actor: Actor, items: Sequence[dict]) -> list[RenderedResult]:
    """create_twin's set executor: every validated item makes a twin (nothing is refused once
    the line validated), in one COPY; the bodies come back as JSON text."""
    descriptions = [
        None if item["description"] is None else fastjson.dumps(item["description"]) for item in items
    ]
    bodies_json = services.twins_create_rendered(account=actor.account, descriptions=descriptions)
    return [RenderedResult(201, body_json) for body_json in bodies_json]


def get_twin_many(*, actor: Actor, items: Sequence[dict]) -> list:
    twins = selectors.twins_by_uuid(account=actor.account, uuids=[item["twin"] for item in items])
    found = []
    for item in items:
        twin = twins.get(item["twin"])
        if twin is None:
            found.append(Http404("No such twin."))
        elif twin.status == TwinStatus.TERMINATED and not item["show_terminated"]:
            found.append(Http404("The twin is terminated; ask with show_terminated=true."))
        else:
            found.append(twin)
    return found


def update_twin(*, actor: Actor, data: dict) -> OperationResult:
    twin = services.twin_update(
        account=actor.account, twin_uuid=data["twin"], description=data["description"]
    )
    return OperationResult(200, bodies.twin_body(twin))


def terminate_twin(*, actor: Actor, data: dict) -> OperationResult:
    twin = services.twin_terminate(account=actor.account, twin_uuid=data["twin"])
    return OperationResult(200, bodies.twin_body(twin))


def scan_twins(*, actor: Actor, data: dict) -> OperationResult:
    twins = selectors.twin_scan(account=actor.account, after=data["cursor"], count=data["count"])
    more = len(twins) == data["count"]
    return OperationResult(
        200, {"twins": [str(twin) for twin in twins], "cursor": cursor_of(twins[-1]) if more else None}
    )


def create_twin_identity_many(*, actor: Actor, items: Sequence[dict]) -> list:
    requests = [
        services.IdentitiesRequest(twin=item["twin"], identities=item["identities"]) for item in items
    ]
    return services.identities_create(account=actor.account, requests=requests)


def _identities_body(identities) -> dict:
    return {
        "identities": {
            identity.identity: bodies.identity_body(identity, creator=identity.twin.account_id)
            for identity in identities
        }
    }


def get_twin_identities_many(*, actor: Actor, items: Sequence[dict]) -> list:
    twins = selectors.twins_by_uuid(account=actor.account, uuids=[item["twin"] for item in items])
    identities = selectors.identities_by_twin(twins=twins.values())
    found = []
    for item in items:
        try:
            twin = services.twin_found(twins=twins, twin_uuid=item["twin"])
        except Http404 as missing:
            found.append(missing)
            continue
        found.append(identities.get(twin.uuid, []))
    return found


def _identity_summaries_body(identities) -> dict:
    return {"identities": {i.identity: bodies.identity_summary_body(i) for i in identities}}


def delete_twin_identity(*, actor: Actor, data: dict) -> OperationResult:
    identity = services.identity_delete(
        account=actor.account, twin_uuid=data["twin"], identity=data["identity"]
    )
    return OperationResult(200, bodies.identity_body(identity, creator=actor.account.uuid))


def resolve_twin_identity(*, actor: Actor, data: dict) -> OperationResult:
    twins = selectors.identity_resolve(account=actor.account, identity=data["identity"])
    if not twins:
        raise Http404(f"No twin of this account has identity {data['identity']!r}.")
    return OperationResult(200, {"twins": [str(twin) for twin in twins]})


def _ledger_requests(items: Sequence[dict]) -> list[services.LedgerRequest]:
    return [services.LedgerRequest(twin=i["twin"], ledger=i["ledger"], entries=i["entries"]) for i in items]


def add_twin_ledger_entry_many(*, actor: Actor, items: Sequence[dict]) -> list:
    return services.ledger_entries_add(account=actor.account, requests=_ledger_requests(items))


def add_twin_ledger_entry_set(
    *, actor: Actor, items: Sequence[dict]
) -> list[RenderedResult | OperationError]:
    """add_twin_ledger_entry's set executor: the bulk path's checks and one COPY, the bodies
    as JSON text."""
    requests = [
        services.LedgerRequest(twin=uuid.UUID(item["twin"]), ledger=item["ledger"], entries=item["entries"])
        for item in items
    ]
    return [
        OperationError.from_info(describe_exception(produced))
        if isinstance(produced, Exception)
        else RenderedResult(201, produced)
        for produced in services.ledger_entries_add_rendered(account=actor.account, requests=requests)
    ]


def update_twin_ledger_entry_many(*, actor: Actor, items: Sequence[dict]) -> list:
    return services.ledger_entries_update(account=actor.account, requests=_ledger_requests(items))


def get_twin_ledger_entry_many(*, actor: Actor, items: Sequence[dict]) -> list:
    twins = selectors.twins_by_uuid(account=actor.account, uuids=[item["twin"] for item in items])
    wanted = (
        None if any(item["entries"] is None for item in items) else {k for i in items for k in i["entries"]}
    )
    entries = selectors.ledger_entries_by_twin(twins=twins.values(), keys=wanted)
    found = []
    for item in items:
        try:
            twin = services.twin_found(twins=twins, twin_uuid=item["twin"])
            services.ledger_require_own(account=actor.account, ledger=item["ledger"])
        except Http404 as missing:
            found.append(missing)
            continue
        held = entries.get(twin.uuid, {})
        keys = held if item["entries"] is None else [key for key in item["entries"] if key in held]
        found.append({key: held[key] for key in keys})
    return found


def delete_twin_ledger_entry(*, actor: Actor, data: dict) -> OperationResult:
    removed = services.ledger_entries_delete(
        account=actor.account, twin_uuid=data["twin"], ledger=data["ledger"], keys=data["entries"]
    )
    return OperationResult(200, bodies.entries_body(removed))


def _register(name: str, method: str, route: str, handler, *, response, **options) -> None:
    register(
        Operation(
            name=name,
            method=method,
            route=route,
            input_serializer=s.INPUT_SERIALIZERS[name],
            handler=handler,
            response_serializer=response,
            fast_validator=partial(validate_fast, s.INPUT_FIELDS[name]),
            **options,
        )
    )


def _register_many(
    name: str, method: str, route: str, many: Many, *, status: int, body_of, **options
) -> None:
    handler, bulk = _from_many(many, status=status, body_of=body_of)
    _register(name, method, route, handler, bulk_handler=bulk, success_status=status, **options)


TWIN = "twins/<uuid:twin>"
LEDGER = "twins/<uuid:twin>/ledgers/<str:ledger>"

_register_many(
    "create_twin",
    "POST",
    "twins",
    create_twin_many,
    status=201,
    body_of=bodies.twin_body,
    response=s.TwinSerializer,
    set_executor=create_twin_set,
    description="Creates a twin owned by the caller's account.",
)
_register_many(
    "get_twin",
    "GET",
    TWIN,
    get_twin_many,
    status=200,
    body_of=bodies.twin_body,
    response=s.TwinSerializer,
    query_fields=("show_terminated",),
    description="A twin; a terminated one only with show_terminated=true.",
)
_register(
    "update_twin",
    "PATCH",
    TWIN,
    update_twin,
    response=s.TwinSerializer,
    description="Sets description keys; a null value removes its key.",
)
_register(
    "terminate_twin",
    "DELETE",
    TWIN,
    terminate_twin,
    response=s.TwinSerializer,
    description="Terminates a twin for good; it accepts no changes afterwards.",
)
_register(
    "scan_twins",
    "GET",
    "twins",
    scan_twins,
    response=s.TwinScanSerializer,
    batchable=False,
    query_fields=("cursor", "count"),
    description="The account's alive twins in pages; `cursor` is null on the last page.",
)
_register_many(
    "create_twin_identity",
    "POST",
    f"{TWIN}/identities",
    create_twin_identity_many,
    status=201,
    body_of=_identities_body,
    response=s.IdentitiesSerializer,
    description="Attaches identities to a twin; an identity the twin has already is refused.",
)
_register_many(
    "get_twin_identities",
    "GET",
    f"{TWIN}/identities",
    get_twin_identities_many,
    status=200,
    body_of=_identity_summaries_body,
    response=s.IdentitySummariesSerializer,
)
_register(
    "delete_twin_identity",
    "DELETE",
    f"{TWIN}/identities/<str:identity>",
    delete_twin_identity,
    response=s.IdentitySerializer,
)
_register(
    "resolve_twin_identity",
    "GET",
    "resolve/<str:identity>",
    resolve_twin_identity,
    response=s.ResolvedTwinsSerializer,
    description="The account's alive twins holding an identity that has not expired.",
)
_register_many(
    "add_twin_ledger_entry",
    "POST",
    LEDGER,
    add_twin_ledger_entry_many,
    status=201,
    body_of=bodies.entries_body,
    response=s.LedgerEntriesSerializer,
    set_executor=add_twin_ledger_entry_set,
    description="Adds entries to the ledger; every key must be new.",
)
_register_many(
    "get_twin_ledger_entry",
    "GET",
    LEDGER,
    get_twin_ledger_entry_many,
    status=200,
    body_of=bodies.entries_body,
    response=s.LedgerEntriesSerializer,
    query_fields=("entries",),
    description="The ledger's entries, or only those named in `entries` (comma-separated).",
)
_register_many(
    "update_twin_ledger_entry",
    "PATCH",
    LEDGER,
    update_twin_ledger_entry_many,
    status=200,
    body_of=bodies.entries_body,
    response=s.LedgerEntriesSerializer,
    description="Changes the given fields of existing entries; every key must exist.",
)
_register(
    "delete_twin_ledger_entry",
    "DELETE",
    LEDGER,
    delete_twin_ledger_entry,
    response=s.LedgerEntriesSerializer,
    query_fields=("entries",),
    description="Removes the entries named in `entries` (comma-separated; a list in a batch line).",
)
