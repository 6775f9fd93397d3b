"""A refused request writes one log line, the one with the trace the client was given; a
server error still gets Django's own line (with its traceback) besides."""

import logging

import pytest
from django.test import override_settings
from django.urls import path

from batchsite.errors import json_server_error
from tests.support.assertions import assert_error

pytestmark = pytest.mark.django_db


def lines_logged_by(caplog, send) -> list[logging.LogRecord]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = send()
    return response, [record for record in caplog.records if record.levelno >= logging.INFO]


@pytest.mark.parametrize(
    "path, status_code",
    [
        ("/batches/00000000-0000-0000-0000-000000000000", 404),  # a view's refusal
        ("/no-such-route", 404),  # Django's own 404, answered by the JSON handler
        ("/batches?status=bogus", 400),
    ],
)
def test_a_refused_request_writes_one_line_with_its_trace(caller, caplog, path, status_code):
    response, records = lines_logged_by(caplog, lambda: caller.client.get(path))
    body = assert_error(response, status_code)
    assert [record.getMessage().split(" ", 1)[0] for record in records] == [f"trace={body['trace']}"]


def test_an_unauthenticated_request_writes_one_line(client, caplog):
    response, records = lines_logged_by(caplog, lambda: client.get("/whoami"))
    body = assert_error(response, 401)
    assert len(records) == 1 and body["trace"] in records[0].getMessage()


def boom(request):
    raise RuntimeError("a bug")


urlpatterns = [path("boom", boom)]
handler500 = json_server_error


@override_settings(ROOT_URLCONF=__name__)
def test_a_server_error_keeps_djangos_line_with_the_traceback(client, caplog):
    client.raise_request_exception = False
    response, records = lines_logged_by(caplog, lambda: client.get("/boom"))
    body = assert_error(response, 500, "internal_error")
    assert [record.name for record in records] == ["batchsite.errors", "django.request"]
    assert body["trace"] in records[0].getMessage() and records[1].exc_info is not None
