"""No credential in any log: upload and download tokens (partial ones too), PINs and webhook
tokens are redacted in gunicorn's access log (text and LOG_FORMAT=json, served by real
gunicorn as `make run` starts it), in the app's log lines and in deploy/nginx.conf's map; every
URL pattern with a credential segment is covered by batchsite.redact's one list of path shapes."""

import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.urls import URLResolver, get_resolver, resolve
from gunicorn.config import Config

from batchsite.redact import CREDENTIAL_PREFIX, REDACTED, redact
from batchsite.serving import RedactingLogger
from tests.security.test_serving import gunicorn_running

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# Segment names that say "credential": a new route naming one must be covered by the shapes.
CREDENTIAL_NAME = re.compile(r"token|pin|secret|password|key|signature|credential", re.I)
SEGMENT = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
KNOWN_CREDENTIAL_ROUTES = {
    "uploads/<str:token>",
    "downloads/<str:token>",
    "downloads/partial/<str:token>",
    "secrets/<uuid:account>/<str:pin>",
}


def all_routes(patterns=None, prefix: str = ""):
    """Every URL pattern's full route, as written (`secrets/<uuid:account>/<str:pin>`)."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from all_routes(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern)


def credential_names(route: str) -> list[str]:
    names = [match["name"] for match in SEGMENT.finditer(route)]
    names += re.findall(r"\(\?P<(\w+)>", route)  # regex routes (the admin's)
    return [name for name in names if CREDENTIAL_NAME.search(name)]


def sample_path(route: str, credential: str) -> str:
    """The route with a real value in each segment: `credential` in the credential ones."""

    def value(match):
        if CREDENTIAL_NAME.search(match["name"]):
            return credential
        return {"uuid": str(uuid.uuid4()), "int": "7"}.get(match["converter"], "plain-value")

    return "/" + SEGMENT.sub(value, route)


def nginx_logged_uri(request_uri: str) -> str:
    """What deploy/nginx.conf's chained maps log for `request_uri`, its PCRE read as Python's."""
    text = NGINX_CONF.read_text()
    value = request_uri
    for body in re.findall(r"^map \$\w+ \$\w+ \{\n(.*?)^\}", text, re.M | re.S):
        for flags, pattern, replacement in re.findall(r'^\s*"(~\*?)(.+?)"\s+"(.+?)";$', body, re.M):
            found = re.match(pattern.replace("(?<", "(?P<"), value, re.I if flags == "~*" else 0)
            if found:
                value = found.expand(re.sub(r"\$\{(\w+)\}", r"\\g<\1>", replacement))
                break
    return value


def test_every_route_with_a_credential_segment_is_redacted_everywhere():
    credential_routes = [route for route in all_routes() if credential_names(route)]
    assert set(credential_routes) >= KNOWN_CREDENTIAL_ROUTES
    for number, route in enumerate(credential_routes):
        credential = f"Cred{number}x{uuid.uuid4().hex}"
        path = sample_path(route, credential)
        resolve(path)  # a real route: the redaction is checked on a path the server serves
        for line in (f'"POST {path} HTTP/1.1"', f"Not Found: {path}", f"{path}?part=errors"):
            assert credential not in redact(line), (route, redact(line))
        assert credential not in nginx_logged_uri(path), route
        assert nginx_logged_uri(path).startswith(redact(path).split(REDACTED)[0]), route


def test_routes_without_credentials_are_logged_as_they_are():
    for route in all_routes():
        if not credential_names(route) and "(?" not in route:
            path = sample_path(route, "unused")
            assert redact(path) == path and nginx_logged_uri(path) == path, route


def test_nginx_repeats_the_one_list_of_credential_paths():
    assert CREDENTIAL_PREFIX in NGINX_CONF.read_text()
    token = "eyJiYXRjaCI6IjEifQ:1tZ2uP:SignedWebhookToken"
    logged = nginx_logged_uri(f"/notifications/webhooks/{uuid.uuid4()}?part=x&token={token}&next=1")
    assert token not in logged and logged.endswith(f"token={REDACTED}&next=1")


def test_the_apps_log_lines_are_redacted_by_its_logging_settings():
    pin = "PIN7QX2KD"
    handler = next(handler for handler in logging.getLogger().handlers if handler.name == "console")
    record = logging.LogRecord(
        "django.request",
        logging.ERROR,
        __file__,
        1,
        "Internal Server Error: %s",
        (f"/secrets/{uuid.uuid4()}/{pin}",),
        None,
    )
    assert handler.filter(record)
    assert pin not in handler.format(record) and f"/{REDACTED}" in handler.format(record)


def test_gunicorns_own_lines_are_redacted(tmp_path):
    """gunicorn logs a request that failed while streaming (a partial download) by its URI."""
    config = Config()
    config.set("errorlog", str(tmp_path / "error.log"))
    RedactingLogger(config).error("Error handling request %s", "/downloads/partial/TokenOfARunningBatch")
    text = (tmp_path / "error.log").read_text()
    assert "TokenOfARunningBatch" not in text and f"/downloads/partial/{REDACTED}" in text


# Real gunicorn


def credential_requests(url: str) -> dict[str, str]:
    """One request to each route with a credential (and a Referer naming one); answers the
    credential each sent, by the path shape its access line must show."""
    sent = {
        name: f"{name}{uuid.uuid4().hex}"
        for name in ("upload", "download", "partial", "pin", "webhook", "referer")
    }
    account = uuid.uuid4()
    requests.put(f"{url}/uploads/{sent['upload']}", data=b"x", timeout=10)
    requests.get(f"{url}/downloads/{sent['download']}", timeout=10)
    requests.get(f"{url}/downloads/partial/{sent['partial']}", timeout=10)
    requests.post(f"{url}/secrets/{account}/{sent['pin']}", timeout=10)
    requests.get(f"{url}/notifications/webhooks/{account}?token={sent['webhook']}", timeout=10)
    requests.get(
        f"{url}/healthz", headers={"Referer": f"{url}/downloads/partial/{sent['referer']}"}, timeout=10
    )
    return {
        "/uploads/[redacted]": sent["upload"],
        "/downloads/[redacted]": sent["download"],
        "/downloads/partial/[redacted]": sent["partial"],
        f"/secrets/{account}/[redacted]": sent["pin"],
        f"/notifications/webhooks/{account}?token=[redacted]": sent["webhook"],
        f"{url}/downloads/partial/[redacted]": sent["referer"],
    }


def logged_after(log: Path, expected: list[str]) -> str:
    """The log once every expected text is in it (gunicorn writes an access line after the answer)."""
    deadline = time.monotonic() + 30
    while True:
        text = log.read_text()
        if all(piece in text for piece in expected) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def migrated(folder: Path) -> Path:
    """`folder` with the embedded database migrated, so requests meet real views, not errors."""
    services = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "AWS_STORAGE_BUCKET_NAME")
    env = {key: value for key, value in os.environ.items() if key not in services}
    env["DATA_DIR"] = str(folder / "data")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return folder


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    with gunicorn_running(migrated(tmp_path_factory.mktemp("plain")), LOG_FORMAT="plain") as running:
        yield running


@pytest.fixture(scope="module")
def json_server(tmp_path_factory):
    with gunicorn_running(migrated(tmp_path_factory.mktemp("json")), LOG_FORMAT="json") as running:
        yield running


def test_the_plain_access_log_holds_no_credential(plain_server):
    url, _, log = plain_server
    shown = credential_requests(url)
    text = logged_after(log, list(shown))
    for logged_path, credential in shown.items():
        assert credential not in text
        assert logged_path in text, logged_path


def test_the_json_access_log_holds_no_credential(json_server):
    url, _, log = json_server
    shown = credential_requests(url)
    text = logged_after(log, [path.split("?")[0] for path in shown])
    access = [entry for entry in map(json.loads, text.splitlines()) if entry["logger"] == "gunicorn.access"]
    logged = {entry["path"] + (f"?{entry['query']}" if "query" in entry else "") for entry in access}
    assert not [credential for credential in shown.values() if credential in text]
    assert {path for path in shown if path.startswith("/")} <= logged
    assert all({"method", "status", "duration_ms"} <= set(entry) for entry in access)


def test_with_log_format_json_every_gunicorn_line_is_json(json_server):
    url, _, log = json_server
    requests.get(f"{url}/healthz", timeout=10)
    text = logged_after(log, ['"path": "/healthz"'])
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in entries)
    messages = [entry["message"] for entry in entries if entry["logger"] == "gunicorn.error"]
    for start_up in ("Starting gunicorn", "Listening at", "Using worker", "Booting worker"):
        assert any(message.startswith(start_up) for message in messages), start_up
    healthz = [entry for entry in entries if entry.get("path") == "/healthz"]
    assert healthz and healthz[-1]["status"] == 200 and healthz[-1]["method"] == "GET"
