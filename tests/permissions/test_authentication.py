from datetime import timedelta

from django.utils import timezone
from rest_framework.test import APIClient

from permissions import services
from permissions.models import UserSecret
from tests.support.assertions import assert_error


def test_no_secret_is_401_with_the_error_body(db):
    response = APIClient().get("/whoami")
    assert_error(response, 401, "no_secret")
    assert response["WWW-Authenticate"] == "Bearer"


def test_unknown_secret_is_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="not-a-secret")
    assert_error(client.get("/whoami"), 401, "invalid_secret")


def test_raw_secret_and_bearer_secret_both_work(caller):
    assert caller.client.get("/whoami").status_code == 200
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {caller.secret}")
    assert bearer.get("/whoami").json()["user"] == str(caller.account_user.uuid)


def test_expired_secret_is_401(caller):
    services.secret_update(
        secret=caller.account_user.secret, validity_at=timezone.now() - timedelta(seconds=1)
    )
    assert_error(caller.client.get("/whoami"), 401, "invalid_secret")


def test_revoked_secret_is_401(caller):
    services.secret_delete(secret=caller.account_user.secret)
    assert_error(caller.client.get("/whoami"), 401, "invalid_secret")


def test_a_new_secret_replaces_the_old_one(caller):
    services.secret_issue(account_user=caller.account_user, validity_at=None)
    assert_error(caller.client.get("/whoami"), 401, "invalid_secret")


def test_secret_is_stored_only_as_a_hash(caller):
    stored = UserSecret.objects.get(account_user=caller.account_user)
    assert caller.secret not in (stored.digest, stored.fingerprint)
    assert stored.fingerprint == caller.secret[-4:]
    assert len(caller.secret) == 64


def test_unknown_route_is_404_with_the_error_body(caller):
    assert_error(caller.client.get("/no-such-route"), 404, "not_found")
    assert_error(caller.client.get("/whoami/"), 404, "not_found")
