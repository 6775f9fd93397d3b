"""The one registry of operations (docs/contract.md, section 8).

Each operation is declared once: its name (also its action name), HTTP method and route, the
input serializer (path parameters are fields of the input), the handler, whether it is
batchable, and optionally a bulk handler. The REST views are built from this registry and the
batch executor calls the same handlers, so a batch of N lines leaves the same state and
results as N single calls.

Handlers take the acting user and account and the validated input, and return an
`OperationResult`; refusals are raised as the exceptions `batchsite.errors` describes
(ApplicationError, Http404, ValidationError, PermissionDenied).
"""

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from batchsite.errors import VALIDATION_ERRORS, ErrorInfo, describe_exception

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who runs an operation: a Django user acting for an account."""

    user: Any
    account: Any


@dataclass(frozen=True)
class OperationResult:
    status: int
    body: dict


@dataclass(frozen=True)
class OperationError:
    """A refused item of a bulk call: what the single call would have answered."""

    status: int
    subcode: str
    description: str

    @classmethod
    def from_info(cls, info: ErrorInfo) -> "OperationError":
        return cls(status=info.status_code, subcode=info.subcode, description=info.description)


@dataclass(frozen=True)
class RenderedResult:
    """A success whose body a set executor wrote as JSON text, byte for byte what the single
    call's body gives through `batchsite.fastjson`: a chunk's result lines are assembled
    around it without a body dict or a serialisation a line."""

    status: int
    body_json: str


Outcome = OperationResult | OperationError
Handler = Callable[..., OperationResult]
BulkHandler = Callable[..., list[Outcome]]
# A chunk's validated items in, per item its outcome or None where the set path cannot
# decide the item (it then runs through the bulk handler).
SetExecutor = Callable[..., list["RenderedResult | OperationError | None"]]


def run_one(handler: Handler, *, actor: Actor, data: dict) -> Outcome:
    """One item through the single handler, a client's refusal captured as its outcome."""
    try:
        # A savepoint, so a refused item leaves nothing behind inside a batch's chunk.
        with transaction.atomic():
            return handler(actor=actor, data=data)
    except Exception as error:
        info = describe_exception(error)
        if info is None:
            raise
        return OperationError.from_info(info)


def loop_over_single(handler: Handler) -> BulkHandler:
    """The default bulk path: the single handler, item by item."""

    def bulk(*, actor: Actor, items: Sequence[dict]) -> list[Outcome]:
        return [run_one(handler, actor=actor, data=data) for data in items]

    return bulk


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    route: str
    input_serializer: type
    handler: Handler
    batchable: bool = True
    bulk_handler: BulkHandler | None = None
    description: str = ""
    query_fields: tuple[str, ...] = field(default=())
    # The status of a success, and the shape of its body (for the schema).
    success_status: int = 200
    response_serializer: type | None = None
    # Gives the same validated data, or raises the same ValidationError, as
    # input_serializer, without DRF's per-field cost (for validating batch files).
    fast_validator: Callable[[Any], dict] | None = None
    # Runs a batch chunk's validated items as a few set-based statements (PostgreSQL only).
    # Declared only where the validated input is plain JSON that validates to itself: a batch
    # file's prepared records then keep it from validation to execution, so the set path
    # checks nothing twice (batches.pipeline.chunks.run_set).
    set_executor: SetExecutor | None = None

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(re.findall(r"<(?:\w+:)?(\w+)>", self.route))

    def validate_input(self, data: Any) -> dict:
        """The validated input of one request or batch line; raises a ValidationError, and
        only that, whatever the data (hostile values are refused by the parsers of
        `twins.validation`; this is the net for what they did not foresee)."""
        try:
            if self.fast_validator is not None:
                return self.fast_validator(data)
            serializer = self.input_serializer(data=data)
            serializer.is_valid(raise_exception=True)
            return serializer.validated_data
        except (RecursionError, UnicodeError, OverflowError) as error:
            raise DjangoValidationError(
                f"The input cannot be read: {type(error).__name__}.", code="malformed_body"
            ) from None

    def checked(self, data: Any) -> tuple[dict | None, "OperationError | None"]:
        """The input check as the REST view runs it: the validated data and None, or None and
        the error the single call would have answered."""
        try:
            return self.validate_input(data), None
        except VALIDATION_ERRORS as error:
            return None, OperationError.from_info(describe_exception(error))
        except Exception as error:  # noqa: BLE001 - a hostile line must fail alone, whatever it raises
            logger.warning("checking a %s line raised %s", self.name, type(error).__name__)
            return None, OperationError(
                400, "malformed_body", f"The line cannot be read as a request ({type(error).__name__})."
            )

    def run_bulk(self, *, actor: Actor, items: Sequence[dict]) -> list[Outcome]:
        bulk = self.bulk_handler or loop_over_single(self.handler)
        return bulk(actor=actor, items=items)


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    if operation.name in OPERATIONS:
        raise ValueError(f"operation {operation.name} is registered twice")
    OPERATIONS[operation.name] = operation
    return operation


def operation_get(name: str) -> Operation | None:
    return OPERATIONS.get(name)


def batchable_operations() -> list[Operation]:
    return [operation for operation in OPERATIONS.values() if operation.batchable]
