import pytest
from rest_framework.test import APIClient

from permissions import services
from tests.support.factories import AccountFactory, AccountUserFactory, RoleFactory


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
