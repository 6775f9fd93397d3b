import pytest
from rest_framework.test import APIClient

from batchsite.celery import app as celery_app
from permissions import services
from tests.support.factories import AccountFactory, AccountUserFactory, RoleFactory
from tests.support.worker_processes import WorkerGroup, WorkerProcess

# What makes a test depend on the broker: a fixture that starts Celery workers, or a module that
# starts them itself or talks to the broker through Celery.
WORKER_FIXTURES = frozenset({"worker_factory", "two_workers", "worker"})
BROKER_USERS = (WorkerProcess, WorkerGroup, celery_app)


def touches_broker(item) -> bool:
    if WORKER_FIXTURES & set(item.fixturenames):
        return True
    module_objects = vars(item.module).values() if item.module else ()
    return any(obj is user for obj in module_objects for user in BROKER_USERS)


def pytest_collection_modifyitems(items):
    """Marks `broker` the tests whose outcome depends on the broker, which CI runs again on
    RabbitMQ (`-m broker`); the others behave the same on any broker and run once per database."""
    for item in items:
        if touches_broker(item):
            item.add_marker(pytest.mark.broker)


class Caller:
    """A user of an account with a secret, and an API client that sends it."""

    def __init__(self, *, account, statement=None):
        self.account = account
        self.role = RoleFactory(account=account, statement=statement)
        self.account_user = AccountUserFactory(account=account, role=self.role)
        self.secret = services.secret_issue(account_user=self.account_user, validity_at=None).raw
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=self.secret)

    @property
    def user(self):
        return self.account_user.user


@pytest.fixture
def make_caller(db):
    def make(*, account=None, statement=None) -> Caller:
        return Caller(account=account or AccountFactory(), statement=statement)

    return make


@pytest.fixture
def caller(make_caller) -> Caller:
    """A user whose role allows everything."""
    return make_caller()


@pytest.fixture
def stranger(make_caller) -> Caller:
    """A full-access user of another account."""
    return make_caller()
