"""The PIN exchange is throttled per real client, per client at each account, and past a
ceiling at each account to one try per client; a forged X-Forwarded-For buys nothing, an
outsider's wrong PINs never refuse the owner's, and a PIN sent while throttled is burnt.
Sign-in to the pages and the admin locks out after repeated failures, even for the right
password, with a message that says so. Parallel tries are admitted exactly up to the limits."""

import time
import uuid

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.test import APIClient

from permissions import services
from tests.support.assertions import assert_error
from tests.support.parallel_calls import in_parallel

PASSWORD = "a long password nobody guesses"


@pytest.fixture(autouse=True)
def fresh_cache(db):
    """Counts from other tests stay in Redis (when the shared cache is Redis) and must not count here."""
    cache.clear()


def rates(client="1000/min", account="1000/hour", ceiling="10000/hour"):
    from django.conf import settings

    framework = {**settings.REST_FRAMEWORK}
    framework["DEFAULT_THROTTLE_RATES"] = {
        "secret_pin": client,
        "secret_pin_account": account,
        "secret_pin_account_ceiling": ceiling,
    }
    return override_settings(REST_FRAMEWORK=framework)


def exchange(account, *, pin="AAAAAA", remote="203.0.113.7", forwarded=None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return APIClient().post(f"/secrets/{account}/{pin}", **headers)


@pytest.fixture
def owner(make_caller):
    """A user with a live PIN (`owner.pin`) for their own new secret."""
    caller = make_caller()
    caller.pin = services.secret_pin_create(account_user=caller.account_user, secret_validity_at=None)
    return caller


def test_the_default_cache_is_shared_by_every_process():
    from django.conf import settings

    assert settings.CACHES["default"]["BACKEND"] in (
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.redis.RedisCache",
    )


def test_a_forged_forwarded_for_does_not_reset_the_client_count():
    account = uuid.uuid4()
    with rates(client="5/min"):
        answers = [exchange(account, forwarded=f"198.51.100.{n}").status_code for n in range(8)]
    assert answers[:5] == [404] * 5
    assert answers[5:] == [429] * 3
    assert_error(exchange(account, forwarded="192.0.2.1"), 404)  # rates back to the default


def test_the_count_is_per_client_at_each_account():
    account, other = uuid.uuid4(), uuid.uuid4()
    with rates(account="4/hour"):
        answers = [exchange(account).status_code for _ in range(6)]
        assert answers == [404] * 4 + [429] * 2
        throttled = exchange(account)
        assert_error(throttled, 429, "throttled")
        assert int(throttled["Retry-After"]) > 0
        assert exchange(other).status_code == 404
        assert exchange(account, remote="198.51.100.99").status_code == 404


def test_an_outsiders_wrong_pins_never_refuse_the_owners_exchange(owner):
    with rates(account="5/hour", ceiling="5/hour"):
        outsider = [exchange(owner.account.pk, remote="198.51.100.66").status_code for _ in range(8)]
        assert outsider == [404] * 5 + [429] * 3
        issued = exchange(owner.account.pk, pin=owner.pin, remote="203.0.113.9")
    assert issued.status_code == 201, issued.content


def test_past_the_account_ceiling_each_client_gets_its_first_try_only(owner):
    with rates(account="100/hour", ceiling="3/hour"):
        spread = [exchange(owner.account.pk, remote=f"198.51.100.{n}").status_code for n in range(6)]
        assert spread == [404] * 6
        again = exchange(owner.account.pk, remote="198.51.100.5")
        assert_error(again, 429, "throttled")
        assert int(again["Retry-After"]) > 0
        assert exchange(owner.account.pk, pin=owner.pin, remote="203.0.113.9").status_code == 201


def test_a_pin_sent_while_throttled_is_burnt(owner):
    with rates(client="2/min"):
        assert [exchange(owner.account.pk).status_code for _ in range(2)] == [404, 404]
        assert_error(exchange(owner.account.pk, pin=owner.pin), 429, "throttled")
        # From anywhere else, later: the PIN is spent.
        assert_error(exchange(owner.account.pk, pin=owner.pin, remote="198.51.100.3"), 404, "invalid_pin")


def test_the_addresses_of_one_ipv6_64_are_one_client():
    account = uuid.uuid4()
    with rates(client="3/min"):
        answers = [exchange(account, remote=f"2001:db8:1:2::{n:x}").status_code for n in range(5)]
        assert answers == [404] * 3 + [429] * 2
        assert exchange(account, remote="2001:db8:1:3::1").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_parallel_tries_at_one_account_are_admitted_exactly_to_the_limit():
    account = uuid.uuid4()
    with rates(account="100/hour"):
        answers = in_parallel(lambda n: exchange(account).status_code, 200)
    assert (answers.count(404), answers.count(429)) == (100, 100)


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted():
    account = uuid.uuid4()
    with rates(client="2/min"), override_settings(TRUSTED_PROXY_COUNT=1):
        # The proxy appends the address it saw; what the client wrote to its left is ignored.
        first = [exchange(account, forwarded=f"10.9.9.{n}, 198.51.100.1").status_code for n in range(3)]
        other_client = exchange(account, forwarded="198.51.100.2").status_code
    assert first == [404, 404, 429]
    assert other_client == 404


@pytest.fixture
def person(make_caller, settings):
    # A fast hasher: these tests sign in dozens of times; the lockout does not depend on it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    caller = make_caller()
    caller.user.set_password(PASSWORD)
    caller.user.is_staff = True
    caller.user.is_superuser = True
    caller.user.save()
    cache.clear()
    return caller.user


@pytest.mark.parametrize("path", ["/ui/login", "/admin/login/"])
def test_sign_in_locks_out_after_repeated_failures(person, path):
    browser = Client()
    for n in range(5):
        page = browser.post(path, {"username": person.username, "password": f"wrong {n}"})
        assert page.status_code == 200
        assert "_auth_user_id" not in browser.session
    # From another address, with the right password: still locked, and told so.
    page = browser.post(path, {"username": person.username, "password": PASSWORD}, REMOTE_ADDR="198.51.100.8")
    assert page.status_code == 200
    assert "Too many failed sign-ins" in page.content.decode()
    assert "_auth_user_id" not in browser.session


def test_success_clears_the_count_and_the_lockout_ends(person):
    browser = Client()
    for n in range(4):
        browser.post("/ui/login", {"username": person.username, "password": f"wrong {n}"})
    signed_in = browser.post("/ui/login", {"username": person.username, "password": PASSWORD})
    assert signed_in.status_code == 302
    browser.logout()
    # The count started again: four more failures do not lock out.
    for n in range(4):
        browser.post("/ui/login", {"username": person.username, "password": f"wrong {n}"})
    assert browser.post("/ui/login", {"username": person.username, "password": PASSWORD}).status_code == 302

    with override_settings(LOGIN_LOCKOUT_SECONDS=1):
        for n in range(5):
            Client().post("/ui/login", {"username": person.username, "password": f"wrong {n}"})
        locked = Client().post("/ui/login", {"username": person.username, "password": PASSWORD})
        assert "Too many failed sign-ins" in locked.content.decode()
        time.sleep(1.2)
        assert (
            Client().post("/ui/login", {"username": person.username, "password": PASSWORD}).status_code == 302
        )


@override_settings(LOGIN_FAILURE_LIMIT=2)
def test_one_address_spraying_many_user_ids_is_locked_out(person):
    browser = Client()
    for n in range(8):
        browser.post("/ui/login", {"username": f"someone-{n}", "password": "guess"})
    page = browser.post("/ui/login", {"username": person.username, "password": PASSWORD})
    assert "Too many failed sign-ins" in page.content.decode()
    # A forged X-Forwarded-For is not a new address.
    page = browser.post(
        "/ui/login", {"username": person.username, "password": PASSWORD}, HTTP_X_FORWARDED_FOR="192.0.2.55"
    )
    assert "Too many failed sign-ins" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_parallel_wrong_passwords_are_checked_only_up_to_the_limit(person):
    def locked_out(n: int) -> bool:
        page = Client().post(
            "/ui/login",
            {"username": person.username, "password": f"wrong {n}"},
            REMOTE_ADDR=f"198.51.100.{n}",
        )
        assert page.status_code == 200
        return "Too many failed sign-ins" in page.content.decode()

    answers = in_parallel(locked_out, 40)
    assert answers.count(False) == 5
    page = Client().post("/ui/login", {"username": person.username, "password": PASSWORD})
    assert "Too many failed sign-ins" in page.content.decode()
