"""Factories that make what a test needs the way a client would: through the services, so a
row a test starts from is one the service could have written."""

import io

import factory

from batches import services as batch_services
from batches.models import Batch, BatchStatus, Upload
from batches.states import batch_transition
from batches.statuses import TRANSITIONS
from permissions import services
from permissions.models import Account

S = BatchStatus

# The statuses a batch that runs to the end passes through, in order.
HAPPY_PATH = [
    S.NEW,
    S.COPYING,
    S.COPIED,
    S.VALIDATING,
    S.PROCESSING,
    S.PROCESSED,
    S.WRITING_RESULTS,
    S.COMPLETED,
]


class AccountFactory(factory.Factory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"account {n}")

    @classmethod
    def _create(cls, model_class, **kwargs):
        return services.account_create(**kwargs)


class RoleFactory(factory.Factory):
    """Roles are made by the service, so their guardian permissions are materialised."""

    class Meta:
        model = dict

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"role {n}")
    statement = None
    rules = None

    @classmethod
    def _create(cls, model_class, **kwargs):
        return services.role_create(**kwargs)


class AccountUserFactory(factory.Factory):
    class Meta:
        model = dict

    account = factory.SubFactory(AccountFactory)
    role = factory.LazyAttribute(lambda o: RoleFactory(account=o.account))
    name = factory.Sequence(lambda n: f"user {n}")

    @classmethod
    def _create(cls, model_class, **kwargs):
        return services.user_create(**kwargs)


class UploadFactory(factory.Factory):
    """An upload URL issued to `caller` (a tests.conftest.Caller) with `content` stored under
    it, as POST /cache and the PUT to its URL leave it."""

    class Meta:
        model = Upload

    content = b'{"description": {}}\n'
    content_type = "application/x-ndjson"

    @classmethod
    def _create(cls, model_class, *, caller, content: bytes, content_type: str):
        upload = batch_services.upload_create(account=caller.account, created_by=caller.account_user)
        return batch_services.upload_store(
            handler=upload.handler,
            stream=io.BytesIO(content),
            content_length=len(content),
            content_type=content_type,
        )


def moves_to(status: str) -> list[str]:
    """The statuses a batch passes through from new to `status`: along the happy path, and off
    it from the last happy status the table moves there from (a cancel from processing, say)."""
    if status in HAPPY_PATH:
        return HAPPY_PATH[1 : HAPPY_PATH.index(status) + 1]
    sources = [source for source, targets in TRANSITIONS.items() if status in targets]
    happy = [source for source in HAPPY_PATH if source in sources]
    return [*moves_to(happy[-1] if happy else sources[0]), status]


# The arguments of batch_create; the factory's other fields move with the last transition.
CREATE_FIELDS = (
    "operation",
    "hash",
    "batch_dict",
    "error_budget",
    "validate_only",
    "idempotency_key",
    "retry_of",
)


class BatchFactory(factory.Factory):
    """A batch `caller` created over an upload of `content` (or, with `retry_of`, a retry of
    that batch) by the service POST /batches calls. With `status`, the state machine's one
    transition function then moves it there along `moves_to`, no step of the pipeline run (so
    only where no worker would take it meanwhile); any other field (`total`, `processed`, ...)
    moves with the last transition, as a step writes it. tests.support.inline_pipeline runs
    the real steps."""

    class Meta:
        model = Batch

    class Params:
        content = b'{"description": {}}\n'
        content_type = "application/x-ndjson"

    operation = "create_twin"
    hash = ""
    batch_dict = None
    error_budget = None
    validate_only = False
    idempotency_key = ""
    retry_of = None
    upload = factory.LazyAttribute(
        lambda o: (
            None
            if o.retry_of is not None
            else UploadFactory(caller=o.caller, content=o.content, content_type=o.content_type)
        )
    )
    status = S.NEW

    @classmethod
    def _create(cls, model_class, *, caller, upload, status, **fields):
        created = {name: fields.pop(name) for name in CREATE_FIELDS}
        batch, _ = batch_services.batch_create(
            account=caller.account, user=caller.user, handler=str(upload.handler) if upload else "", **created
        )
        moves = moves_to(status)
        if not moves:
            assert not fields, f"{sorted(fields)} move with a transition: give a status past new"
            return batch
        for target in moves[:-1]:
            batch_transition(batch_id=batch.pk, to=target)
        return batch_transition(batch_id=batch.pk, to=moves[-1], **fields)
