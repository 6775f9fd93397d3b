"""Prometheus metrics (docs/contract.md, section 12), multiprocess-safe: every process (gunicorn's workers,
Celery's pool) writes its samples to files under PROMETHEUS_MULTIPROC_DIR and `/metrics` adds
them up, so one scrape of any web process sees the work of all of them.

prometheus_client picks its storage when first imported, from the environment: settings set
PROMETHEUS_MULTIPROC_DIR before anything imports this module."""

import hmac
import ipaddress
import logging
import math
import os
from collections.abc import Mapping

from django.conf import settings
from django.utils import timezone

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.PROMETHEUS_MULTIPROC_DIR))

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from batchsite.errors import ErrorInfo

logger = logging.getLogger(__name__)

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

batch_lines_processed = Counter(
    "batch_lines_processed", "Batch lines run, by operation and outcome.", ["operation", "outcome"]
)
batch_transitions = Counter("batch_transitions", "Batch status changes, by the status entered.", ["status"])
batch_stage_seconds = Histogram(
    "batch_stage_seconds", "Time a batch spent in a status.", ["stage"], buckets=SECONDS_BUCKETS
)
batch_chunk_seconds = Histogram("batch_chunk_seconds", "Time to run one chunk.", buckets=SECONDS_BUCKETS)
# Label values come from closed sets: a client must not be able to add series (each one lives
# in every process's file and in Prometheus for good).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"
http_requests = Counter("http_requests", "HTTP requests answered.", ["method", "route", "status"])
http_request_seconds = Histogram(
    "http_request_seconds", "Time to answer an HTTP request.", ["route"], buckets=SECONDS_BUCKETS
)
webhook_deliveries = Counter("webhook_deliveries", "Webhook deliveries, by outcome.", ["outcome"])
quota_refusals = Counter("quota_refusals", "Requests refused by a quota or the throttle.", ["quota"])


class InstallationCollector:
    """The gauges an operator alerts on, read at scrape time from the database (in its own
    clock) and, within HEALTH_CHECK_SECONDS, from the broker and the storage: right however many
    processes did the work and whichever of them died. The same on every web host."""

    def collect(self):
        from batchsite.health import bounded_storage_space, queue_depths_or_unknown
        from operating import selectors

        active = GaugeMetricFamily("batches_active", "Batches not finished, by status.", labels=["status"])
        for status, count in selectors.batches_active_by_status().items():
            active.add_metric([status], count)
        yield active
        yield GaugeMetricFamily(
            "batches_stalled",
            "Active batches without a heartbeat for BATCH_STALL_AFTER_SECONDS.",
            value=selectors.batches_stalled(),
        )
        age = selectors.sweep_age_seconds()
        yield GaugeMetricFamily(
            "batches_sweep_age_seconds",
            "Seconds since the maintenance sweep last ran (+Inf: never).",
            value=math.inf if age is None else age,
        )
        alive = GaugeMetricFamily(
            "workers_alive",
            "Worker nodes consuming the queue seen alive in the last WORKER_ALIVE_SECONDS.",
            labels=["queue"],
        )
        for queue, count in selectors.workers_alive_by_queue().items():
            alive.add_metric([queue], count)
        yield alive
        depth = GaugeMetricFamily(
            "broker_queue_depth", "Messages waiting in the broker's queue (-1: unknown).", labels=["queue"]
        )
        for queue, count in queue_depths_or_unknown().items():
            depth.add_metric([queue], count)
        yield depth
        yield from storage_gauges(bounded_storage_space)


def storage_gauges(space_probe):
    """Free space of the local storage; none for a remote one, or when it does not answer."""
    try:
        space = space_probe()
    except Exception as error:  # noqa: BLE001 - a missing gauge, never a failed scrape
        logger.warning("storage space unknown: %s", error)
        return
    if space is None:
        return
    yield GaugeMetricFamily(
        "storage_free_bytes", "Bytes free where the local storage keeps files.", value=space["free_bytes"]
    )
    yield GaugeMetricFamily(
        "storage_free_ratio", "Share of the local storage's disk that is free.", value=space["free_ratio"]
    )


def registry_of(*, with_database: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    if with_database:
        registry.register(InstallationCollector())
    return registry


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry_of()), CONTENT_TYPE_LATEST


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else OTHER_METHOD


# Set by a proxy on its way in: with one of them, a loopback peer is that proxy, not the client.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def is_loopback(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:  # empty, or a unix socket's path: a proxy's, never proof of a local client
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def scrape_refusal(meta: Mapping[str, str]) -> ErrorInfo | None:
    """Why a scrape (a WSGI environ or Django's request.META) is refused, or None. With
    METRICS_TOKEN set: refused without `Authorization: Bearer <token>`, from anywhere. Without:
    refused unless the peer is this host (REMOTE_ADDR; X-Forwarded-For is never believed) and
    came through no proxy (no forwarding header, TRUSTED_PROXY_COUNT=0), since a proxy on this
    host makes every client look local."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = meta.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return ErrorInfo(401, "invalid_metrics_token", "Bearer METRICS_TOKEN needed.")
    local = (
        is_loopback(meta.get("REMOTE_ADDR", ""))
        and not settings.TRUSTED_PROXY_COUNT
        and not any(meta.get(header) for header in FORWARDING_HEADERS)
    )
    if local:
        return None
    return ErrorInfo(
        403,
        "metrics_not_public",
        "Metrics answer only clients on this host unless METRICS_TOKEN is set.",
    )


def transition_observed(*, source: str, to: str, entered_at) -> None:
    """After a status change commits: the entered status, and the time spent in the left one
    (from the batch's previous change; a status change is the only write of updated_at)."""
    batch_transitions.labels(to).inc()
    seconds = (timezone.now() - entered_at).total_seconds()
    batch_stage_seconds.labels(source).observe(max(seconds, 0.0))
