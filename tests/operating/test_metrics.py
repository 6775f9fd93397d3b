"""GET /metrics: Prometheus text, the samples of the web process and of a real Celery worker's
processes together (multiprocess mode), with label values from closed sets, for this host only
or behind METRICS_TOKEN when set."""

import ipaddress
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from batches.models import Batch, BatchStatus
from batches.pipeline import driver
from batchsite.celery import app as celery_app
from operating import metrics
from tests.support.assertions import assert_error
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.metric_samples import samples, value
from tests.support.ports import free_port
from tests.support.waiting import wait_for, wait_terminal
from tests.support.worker_processes import WorkerProcess

S = BatchStatus
LINES = 2500  # three chunks of BATCH_CHUNK_LINES=1000
QUEUES = ("pipeline", "chunks", "webhooks")


def scrape(base_url: str) -> dict:
    response = requests.get(f"{base_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_scrape_shows_the_workers_batch_and_the_web_processs_requests(caller, live_server):
    """The counters live in files shared by every process of the installation (and of earlier
    test runs), so the test compares a scrape before with one after."""
    before = scrape(live_server.url)
    celery_app.control.purge()
    worker = WorkerProcess(log_name="worker-metrics", extra_env={"LOG_FORMAT": "json"}).start()
    try:
        batch = BatchFactory(
            caller=caller,
            content=jsonl({"description": {"n": n}} for n in range(LINES)),
        )
        signed = {"Authorization": caller.secret}
        for _ in range(3):
            assert requests.get(f"{live_server.url}/whoami", headers=signed, timeout=10).status_code == 200
        refused = requests.get(f"{live_server.url}/whoami", timeout=10)
        assert refused.status_code == 401
        done = wait_terminal(batch, timeout=120, worker=worker)
        assert done.status == "completed"
    finally:
        worker.discard()
    after = scrape(live_server.url)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # From the worker's processes.
    assert grew("batch_lines_processed_total", operation="create_twin", outcome="succeeded") == LINES
    assert grew("batch_lines_processed_total", operation="create_twin", outcome="failed") == 0
    assert grew("batch_chunk_seconds_count") == 3
    assert grew("batch_chunk_seconds_sum") > 0
    for stage in ("copying", "validating", "processing", "writing_results"):
        assert grew("batch_stage_seconds_count", stage=stage) == 1, stage
    assert grew("batch_stage_seconds_bucket", stage="processing", le="+Inf") == 1
    for status in ("new", "copying", "copied", "validating", "processing", "processed", "completed"):
        assert grew("batch_transitions_total", status=status) == 1, status
    # From the web process (the live server in this process).
    assert grew("http_requests_total", method="GET", route="whoami", status="200") == 3
    assert grew("http_requests_total", method="GET", route="whoami", status="401") == 1
    assert grew("http_request_seconds_count", route="whoami") == 4
    # Read from the database at scrape time; this batch is finished.
    assert ("batches_active", (("status", "processing"),)) in after

    # The worker wrote JSON lines, those of its pipeline tasks naming the batch.
    entries = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    assert entries and all({"ts", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry.get("batch") == str(batch.pk) for entry in entries)


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client):
    with override_settings(METRICS_TOKEN="s3cret-token"):
        refused = assert_error(client.get("/metrics"), 401, "invalid_metrics_token")
        assert client.get("/metrics")["WWW-Authenticate"] == "Bearer", refused
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert allowed.status_code == 200
        names = {family.name for family in text_string_to_metric_families(allowed.content.decode())}
        # The token opens it from anywhere, through a proxy too.
        remote = {"Authorization": "Bearer s3cret-token", "X-Forwarded-For": "198.51.100.9"}
        assert client.get("/metrics", REMOTE_ADDR="203.0.113.5", headers=remote).status_code == 200
    # Families appear once a process wrote a sample: these requests wrote the HTTP ones (the
    # batch families are checked after a real batch, above).
    assert {"batches_active", "http_requests", "http_request_seconds"} <= names


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="", TRUSTED_PROXY_COUNT=0)
def test_without_a_token_metrics_answer_only_this_host(client):
    for address in ("127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1"):
        assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200, address
    refused = {
        "another host": client.get("/metrics", REMOTE_ADDR="203.0.113.5"),
        "another host, IPv6": client.get("/metrics", REMOTE_ADDR="2001:db8::5"),
        "a unix socket": client.get("/metrics", REMOTE_ADDR=""),
        "a forged local address": client.get(
            "/metrics", REMOTE_ADDR="203.0.113.5", headers={"X-Forwarded-For": "127.0.0.1"}
        ),
        # A proxy on this host: its address is loopback, its client's is not.
        "through a local proxy": client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"}),
        "through a Forwarded proxy": client.get("/metrics", headers={"Forwarded": "for=203.0.113.5"}),
    }
    with override_settings(TRUSTED_PROXY_COUNT=1):
        refused["behind TRUSTED_PROXY_COUNT proxies"] = client.get("/metrics")
    for case, response in refused.items():
        assert response.status_code == 403, case
        assert_error(response, 403, "metrics_not_public")


@pytest.mark.django_db
def test_invented_methods_are_counted_as_other(client):
    """Any token is a method to the HTTP parser: each must not become a series of its own."""
    invented = [f"X{uuid.uuid4().hex.upper()}" for _ in range(40)]
    before = samples(client.get("/metrics").content.decode())
    for method in invented:
        assert client.generic(method, "/healthz").status_code == 405
    after = samples(client.get("/metrics").content.decode())

    def others(scraped):
        return value(scraped, "http_requests_total", method="other", route="healthz", status="405")

    assert others(after) - others(before) == len(invented)
    labelled = {dict(labels).get("method") for name, labels in after if name == "http_requests_total"}
    assert not labelled & set(invented)
    assert value(after, "http_requests_total", method="GET", route="metrics", status="200") >= 1


@pytest.mark.django_db
def test_http_metrics_label_the_route_not_the_path(caller, client):
    def count(scraped, batch_id_route):
        return value(scraped, "http_requests_total", method="GET", route=batch_id_route, status="404")

    before = samples(client.get("/metrics").content.decode())
    for _ in range(2):
        caller.client.get("/batches/00000000-0000-4000-8000-00000000000a")
    after = samples(client.get("/metrics").content.decode())
    assert count(after, "batches/<str:batch>") - count(before, "batches/<str:batch>") == 2
    assert not [key for key in after if "00000000-0000" in str(key)]


@pytest.mark.django_db
@override_settings(BATCH_STALL_AFTER_SECONDS=300)
def test_batches_active_and_stalled_are_read_from_the_database(caller, client):
    stalled = BatchFactory(caller=caller, status=S.PROCESSING)
    BatchFactory(caller=caller, status=S.PROCESSING)
    completed = BatchFactory(caller=caller, status=S.COMPLETED)
    # The heartbeats of workers that stopped an hour ago: written, as no test waits that long.
    long_ago = timezone.now() - timedelta(hours=1)
    Batch.objects.filter(pk__in=[stalled.pk, completed.pk]).update(heartbeat_at=long_ago)
    scraped = samples(client.get("/metrics").content.decode())
    assert value(scraped, "batches_active", status="processing") == 2
    assert value(scraped, "batches_active", status="new") == 0
    assert value(scraped, "batches_stalled") == 1
    assert not [key for key in scraped if key[0] == "batches_stuck"]


@pytest.mark.django_db
def test_the_sweeps_age_is_infinite_before_it_ever_ran_and_small_after(client):
    assert value(samples(client.get("/metrics").content.decode()), "batches_sweep_age_seconds") == math.inf
    driver.sweep(driver.Enqueue(advance=lambda batch_id: None, run_chunks=lambda: None))
    assert 0 <= value(samples(client.get("/metrics").content.decode()), "batches_sweep_age_seconds") < 5


@pytest.mark.django_db
def test_the_local_storages_free_space_is_a_gauge(client):
    scraped = samples(client.get("/metrics").content.decode())
    disk = shutil.disk_usage(settings.MEDIA_ROOT)
    assert abs(value(scraped, "storage_free_bytes") - disk.free) < 0.05 * disk.total
    assert value(scraped, "storage_free_ratio") == pytest.approx(disk.free / disk.total, abs=0.05)


@pytest.mark.django_db
def test_broker_queue_depth_counts_the_messages_waiting_in_the_real_broker(client):
    """Asked of the broker the suite runs on (the filesystem broker, Redis or RabbitMQ)."""
    celery_app.control.purge()
    for _ in range(3):
        celery_app.send_task("tests.never_run", queue="webhooks")
    try:
        scraped = samples(client.get("/metrics").content.decode())
    finally:
        celery_app.control.purge()
    assert value(scraped, "broker_queue_depth", queue="webhooks") == 3
    assert value(scraped, "broker_queue_depth", queue="pipeline") == 0
    assert value(scraped, "broker_queue_depth", queue="chunks") == 0


@pytest.mark.django_db
def test_a_broker_that_never_answers_makes_the_depths_unknown_not_the_scrape_slow(client, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        with override_settings(HEALTH_CHECK_SECONDS=1):
            started = time.monotonic()
            response = client.get("/metrics")
            elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 200
    scraped = samples(response.content.decode())
    for queue in ("pipeline", "chunks", "webhooks"):
        assert value(scraped, "broker_queue_depth", queue=queue) == -1
    assert elapsed < 5


class WorkersDownAlert:
    """The rule `WorkersDown` of docs/operations.md#alerts, `expr: max by (queue)
    (workers_alive) == 0`, `for:` FOR_SECONDS, evaluated as Prometheus does on each scrape: a
    queue's alert is pending from the first scrape where its expression holds and fires once it
    has held for `for`."""

    def __init__(self, for_seconds: float):
        self.for_seconds = for_seconds
        self.pending_since: dict[str, float] = {}

    def firing(self, scraped: dict, at: float) -> set[str]:
        for (name, labels), count in scraped.items():
            if name != "workers_alive":
                continue
            queue = dict(labels)["queue"]
            if count == 0:
                self.pending_since.setdefault(queue, at)
            else:
                self.pending_since.pop(queue, None)
        return {queue for queue, since in self.pending_since.items() if at - since >= self.for_seconds}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_every_worker_stopped_the_workers_down_alert_fires_within_two_minutes(client):
    """Two real worker nodes (one on every queue, one on webhooks only); one killed outright,
    the other stopped warmly. Scraped like Prometheus would, with a short heartbeat, alive
    window and `for:` (the defaults are 15 s, 60 s and 30 s)."""
    heartbeat = {"WORKER_HEARTBEAT_SECONDS": "0.5"}
    every_queue = WorkerProcess(log_name="worker-alive-all", node_name="all@alive-test", extra_env=heartbeat)
    webhooks = WorkerProcess(
        log_name="worker-alive-webhooks",
        node_name="webhooks@alive-test",
        queues="webhooks",
        extra_env=heartbeat,
    )
    alert = WorkersDownAlert(for_seconds=2)

    def scrape_alive():
        scraped = samples(client.get("/metrics").content.decode())
        return scraped, alert.firing(scraped, time.monotonic())

    with override_settings(WORKER_ALIVE_SECONDS=4):
        every_queue.start()
        webhooks.start()
        try:

            def all_alive():
                scraped, firing = scrape_alive()
                alive = {queue: value(scraped, "workers_alive", queue=queue) for queue in QUEUES}
                return alive == {"pipeline": 1, "chunks": 1, "webhooks": 2} and not firing

            wait_for(all_alive, timeout=90, interval=0.5, what="both workers seen alive")
            held_until = time.monotonic() + 3
            while time.monotonic() < held_until:
                assert not scrape_alive()[1], "fired while every worker was alive"
                time.sleep(0.5)
        finally:
            every_queue.kill()
            webhooks.stop()
        stopped = time.monotonic()
        # wait_for fails the test past its timeout: the bound.
        wait_for(lambda: scrape_alive()[1] == set(QUEUES), timeout=120, interval=0.5, what="WorkersDown")
    assert time.monotonic() - stopped < 120


def this_hosts_address() -> str:
    """An address of this host other than loopback: the one its default route leaves from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # UDP: connect() only picks the route, sends nothing
        except OSError:
            pytest.skip("this host has no address but loopback")
        address = probe.getsockname()[0]
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this host has no address but loopback")
    return address


def serve_metrics(*options: str, token: str = "") -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "manage.py", "serve_metrics", f"--port={port}", *options]
    env = {**os.environ, "DATA_DIR": str(settings.DATA_DIR), "METRICS_TOKEN": token}
    server = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL)
    return server, port


def test_a_worker_host_serves_its_processes_samples_to_this_host_or_with_the_token():
    """`serve_metrics`, for hosts without a web server: the samples every process of the host
    wrote (here one this test process counts), on 127.0.0.1 unless told otherwise, and to
    another host only with METRICS_TOKEN, as /metrics. Three real servers, started together."""
    address = this_hosts_address()
    metrics.webhook_deliveries.labels("serve-metrics-test").inc(3)
    started = {
        "default": serve_metrics(),
        "open": serve_metrics("--bind=0.0.0.0"),
        "token": serve_metrics("--bind=0.0.0.0", token="worker-s3cret"),
    }
    ports = {name: port for name, (_, port) in started.items()}
    try:
        for port in ports.values():
            wait_for(lambda port=port: answered(port), timeout=60, what="serve_metrics")

        scraped = samples(requests.get(f"http://127.0.0.1:{ports['default']}/metrics", timeout=10).text)
        assert value(scraped, "webhook_deliveries_total", outcome="serve-metrics-test") >= 3
        assert not [key for key in scraped if key[0] == "batches_active"]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{address}:{ports['default']}/metrics", timeout=10)

        assert requests.get(f"http://127.0.0.1:{ports['open']}/metrics", timeout=10).status_code == 200
        elsewhere = requests.get(f"http://{address}:{ports['open']}/metrics", timeout=10)
        assert_error(elsewhere, 403, "metrics_not_public")
        refused = requests.post(f"http://127.0.0.1:{ports['open']}/metrics", timeout=10)
        assert_error(refused, 405, "method_not_allowed")
        assert refused.headers["Allow"] == "GET, HEAD"

        for host in ("127.0.0.1", address):
            unsigned = requests.get(f"http://{host}:{ports['token']}/metrics", timeout=10)
            assert_error(unsigned, 401, "invalid_metrics_token")
            assert unsigned.headers["WWW-Authenticate"] == "Bearer"
        signed = requests.get(
            f"http://{address}:{ports['token']}/metrics",
            headers={"Authorization": "Bearer worker-s3cret"},
            timeout=10,
        )
        assert value(samples(signed.text), "webhook_deliveries_total", outcome="serve-metrics-test") >= 3
    finally:
        for server, _ in started.values():
            server.terminate()
            server.wait(timeout=10)


def answered(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except requests.ConnectionError:
        return False
    return True
