"""/healthz answers what the apps registered (batchsite.health.register_health_report): the
ground imports no app, and an app's report that fails is reported null, never a failed check."""

import pytest
from django.test import Client

from batchsite import health

pytestmark = pytest.mark.django_db


@pytest.fixture
def reports(monkeypatch):
    """The registry as the apps left it, restored after the test."""
    monkeypatch.setattr(health, "_reports", dict(health._reports))


def broken() -> dict:
    raise RuntimeError("the report's tables are not there")


def test_healthz_answers_each_registered_report_and_nulls_a_failing_one(reports):
    health.register_health_report("queues_seen", lambda: {"seen": 3}, fields=("seen",))
    health.register_health_report("broken", broken, fields=("seen", "missed"))

    response = Client().get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["queues_seen"] == {"seen": 3}
    assert body["broken"] == {"seen": None, "missed": None}
    assert set(body["pipeline"]) == {"workers_alive", "sweep_age_seconds", "stalled_batches"}, (
        "operating registers the pipeline's report"
    )
