"""One definition of a stalled batch (batches.selectors.batches_stalled): /healthz and the
metrics count the batches the admin lists as stalled, and the processing ones among them are
the ones the sweep resumes as stuck once it waits as long."""

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch, BatchStatus
from batches.pipeline import maintenance
from tests.support.factories import BatchFactory
from tests.support.metric_samples import samples, value

S = BatchStatus
pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:batches_batch_changelist")


def silent_since(batch, seconds: float, *, started: bool = True) -> None:
    """Test setup: the batch's last heartbeat (or, never started, its creation) that long ago."""
    long_ago = timezone.now() - timedelta(seconds=seconds)
    fields = {"heartbeat_at": long_ago} if started else {"heartbeat_at": None, "created_at": long_ago}
    Batch.objects.filter(pk=batch.pk).update(**fields)


@override_settings(BATCH_STALL_AFTER_SECONDS=300, BATCH_STUCK_AFTER_SECONDS=300)
def test_healthz_the_metrics_the_admin_and_the_sweep_agree_on_the_stalled_batches(caller, admin_client):
    stalled = BatchFactory(caller=caller, status=S.PROCESSING)
    silent_since(stalled, 400)
    never_started = BatchFactory(caller=caller)
    silent_since(never_started, 400, started=False)
    moving = BatchFactory(caller=caller, status=S.PROCESSING)
    silent_since(moving, 200)
    finished = BatchFactory(caller=caller, status=S.COMPLETED)
    silent_since(finished, 86400)

    response = admin_client.get(CHANGELIST, {"stalled": "yes"})
    assert response.status_code == 200, response.content[:500]
    listed = {batch.pk for batch in response.context["cl"].result_list}
    assert listed == {stalled.pk, never_started.pk}
    assert Client().get("/healthz").json()["pipeline"]["stalled_batches"] == len(listed)
    assert value(samples(Client().get("/metrics").content.decode()), "batches_stalled") == len(listed)

    processing = {str(pk) for pk in Batch.objects.filter(status=S.PROCESSING).values_list("pk", flat=True)}
    assert maintenance.batches_to_resume() & processing == {str(pk) for pk in listed} & processing
