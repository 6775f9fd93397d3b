"""Time and order (docs/contract.md, section 14) on real worker processes, on whichever database
and broker the suite runs on: a scheduled batch starts once due and not before; a deadline stops
a batch within one chunk; a higher priority runs first among one account's batches; a paused
batch holds no worker and completes after resume; a child starts after its parent or is
cancelled when its requirement fails. The services and races in-process are in
tests/batches/test_time_and_order_services.py.

`make soak` sizes: SCHEDULE_SECONDS (60), DEADLINE_LINES (1,000,000), DEADLINE_SECONDS (20),
PRIORITY_LINES (2,000,000), PAUSE_SECONDS (30).
"""

import os
import re
import time

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Sum

from batches import services
from batches.models import Batch, BatchDependency, BatchStatus, Chunk
from batches.retry import batch_retry
from batchsite.clock import database_now_plus
from tests.support.batch_files import jsonl, twin_lines, updates
from tests.support.factories import BatchFactory
from tests.support.infrastructure_faults import once_per_database
from tests.support.inline_pipeline import read_results
from tests.support.waiting import wait_for, wait_terminal
from tests.support.worker_outcomes import assert_ran_once
from twins.models import Twin

S = BatchStatus
FAST = connection.vendor == "postgresql"
SCHEDULE_SECONDS = float(os.environ.get("SCHEDULE_SECONDS", 8))
DEADLINE_SECONDS = float(os.environ.get("DEADLINE_SECONDS", 3))
DEADLINE_LINES = int(os.environ.get("DEADLINE_LINES", 100_000 if FAST else 40_000))
PRIORITY_LINES = int(os.environ.get("PRIORITY_LINES", 200_000 if FAST else 80_000))
PAUSE_SECONDS = float(os.environ.get("PAUSE_SECONDS", 4))
PAUSE_LINES = 40_000 if FAST else 20_000
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(rb'"(\w+_ts)": ?-?[0-9.e+]+')
pytestmark = [pytest.mark.slow, once_per_database(), pytest.mark.django_db(transaction=True)]


def at(seconds: float):
    """The database's time `seconds` from now."""
    return Batch.objects.annotate(t=database_now_plus(seconds)).values_list("t", flat=True).first()


def entered(batch, status: str):
    """When the batch first entered `status` (the database's clock), or None."""
    move = Batch.objects.get(pk=batch.pk).history.filter(to_status=status).order_by("at").first()
    return move.at if move else None


def serials(tag: str) -> int:
    """Twins made by the lines of tagged_lines(tag, ...)."""
    return Twin.objects.filter(description__tag=tag).count()


def without_uuids_and_times(results_file: str) -> bytes:
    """A results file's bytes with each uuid and each timestamp replaced by a fixed text: what
    is the same in any two runs of one file."""
    with default_storage.open(results_file, "rb") as results:
        content = results.read()
    return TIMESTAMP.sub(rb'"\1": 0', UUID.sub(b"<uuid>", content))


def tagged_lines(tag: str, count: int) -> bytes:
    return jsonl({"description": {"tag": tag, "serial": n}} for n in range(count))


def test_a_scheduled_batch_starts_once_due_not_before_and_a_cancel_while_scheduled_runs_nothing(
    caller, worker_factory
):
    batch = BatchFactory(caller=caller, content=tagged_lines("scheduled", 50))
    never = BatchFactory(caller=caller, content=tagged_lines("never", 50))
    not_before = services.batch_reschedule(batch=batch, not_before=at(SCHEDULE_SECONDS)).not_before
    services.batch_reschedule(batch=never, not_before=at(3600))
    created = time.monotonic()
    worker = worker_factory(log_name="order-scheduled")

    wait_for(lambda: time.monotonic() > created + SCHEDULE_SECONDS - 1, timeout=SCHEDULE_SECONDS, what="time")
    before = Batch.objects.get(pk=batch.pk)
    assert (before.status, before.lease_owner, serials("scheduled")) == (S.NEW, "", 0)
    services.batch_cancel(batch=never)
    wait_for(
        lambda: Batch.objects.filter(
            pk=batch.pk, status__in=[S.PROCESSING, S.PROCESSED, S.COMPLETED]
        ).exists(),
        timeout=SCHEDULE_SECONDS + 6 - (time.monotonic() - created),
        what="processing to begin",
    )
    started = entered(batch, S.COPYING)
    print(f"started {(started - not_before).total_seconds():.2f} s after not_before ({SCHEDULE_SECONDS} s)")
    assert started >= not_before
    assert wait_terminal(batch, timeout=60, worker=worker).status == S.COMPLETED
    cancelled = wait_terminal(never, timeout=30, worker=worker)
    assert (cancelled.status, cancelled.processed, serials("never")) == (S.CANCELLED, 0, 0)
    assert S.COPYING not in cancelled.history.values_list("to_status", flat=True)


def test_a_deadline_stops_a_batch_within_one_chunk_and_its_retry_holds_exactly_the_rest(
    caller, settings, worker_factory
):
    batch = BatchFactory(caller=caller, content=twin_lines(DEADLINE_LINES))
    worker = worker_factory(log_name="order-deadline", concurrency=1)
    wait_for(lambda: Batch.objects.get(pk=batch.pk).processed >= 1000, timeout=60, what="processing")
    deadline = services.batch_reschedule(batch=batch, deadline_at=at(DEADLINE_SECONDS)).deadline_at
    stopped = wait_terminal(batch, timeout=DEADLINE_SECONDS + 60, worker=worker)
    assert stopped.status == S.CANCELLED
    assert stopped.failure_reason.startswith("deadline_exceeded: ")
    late = Chunk.objects.filter(batch=batch, done=True, done_at__gt=deadline)
    ran_late = late.aggregate(lines=Sum("executed_count"))["lines"] or 0
    stop_after = (entered(batch, S.CANCEL) - deadline).total_seconds()
    summary = stopped.summary
    print(
        f"{stopped.processed} of {DEADLINE_LINES} lines ran; stopped {stop_after:.2f} s after the deadline; "
        f"{ran_late} lines in chunks that committed after it"
    )
    assert 0 < stopped.processed < DEADLINE_LINES, "make DEADLINE_LINES larger"
    assert ran_late <= settings.BATCH_CHUNK_LINES
    assert summary["total"] == summary["succeeded"] + summary["failed"] + summary["not_executed"]
    assert (summary["total"], summary["succeeded"]) == (DEADLINE_LINES, stopped.processed)

    retry, _ = batch_retry(batch=stopped, user=caller.user)
    services.batch_reschedule(batch=retry, deadline_at=at(3600))
    retry = wait_terminal(retry, timeout=600, worker=worker)
    assert (retry.status, retry.total, retry.succeeded) == (S.COMPLETED, summary["not_executed"], retry.total)
    # One uninterrupted run makes one twin per line, each with its line's description.
    serials = Twin.objects.filter(account=caller.account).values_list("description__serial", flat=True)
    assert sorted(serials) == list(range(DEADLINE_LINES))


def test_a_higher_priority_batch_of_the_account_runs_before_its_big_one_and_other_accounts_keep_theirs(
    caller, stranger, worker_factory
):
    big = BatchFactory(caller=caller, content=twin_lines(PRIORITY_LINES))
    services.batch_reschedule(batch=big, priority=2)
    # The default sweep and housekeeping intervals, not the fault tests' half-second ones: those put
    # more periodic messages on the pipeline queue than two pool processes busy with one-second
    # chunk slices take off it, and the small batch's first step waited behind them (9.5 s).
    worker = worker_factory(
        log_name="order-priority",
        extra_env={"PIPELINE_SWEEP_SECONDS": "5", "MAINTENANCE_INTERVAL_SECONDS": "60"},
    )
    wait_for(lambda: Batch.objects.get(pk=big.pk).processed >= 2000, timeout=60, what="the big one to run")
    small = BatchFactory(caller=caller, content=tagged_lines("small", 1000))
    services.batch_reschedule(batch=small, priority=8)
    submitted = time.monotonic()
    others = BatchFactory(caller=stranger, content=tagged_lines("others", 1000))
    assert wait_terminal(small, timeout=30, worker=worker).status == S.COMPLETED
    took = time.monotonic() - submitted
    assert wait_terminal(others, timeout=30, worker=worker).status == S.COMPLETED
    others_took = time.monotonic() - submitted
    big_now = Batch.objects.get(pk=big.pk)
    steps = {
        status: entered(small, status) for status in (S.COPYING, S.VALIDATING, S.PROCESSING, S.COMPLETED)
    }
    since = steps[S.COPYING]
    print(
        f"the small batch completed in {took:.2f} s and another account's in {others_took:.2f} s with the "
        f"big one at {big_now.processed}; the small one's steps at "
        + ", ".join(f"{status} +{(at - since).total_seconds():.2f}" for status, at in steps.items())
    )
    assert big_now.status == S.PROCESSING, "make PRIORITY_LINES larger"
    # The order itself (priority before attained service, accounts still by theirs) is
    # test_time_and_order_services.py's; a free pool process may go on with the big one meanwhile.
    # Another account's newcomer is served by fairness as without priorities (test_fairness.py):
    # its bound here is the same 5 s.
    assert took < 5 and others_took < 5
    services.batch_cancel(batch=big)
    wait_terminal(big, timeout=60, worker=worker)


def test_a_paused_batch_holds_no_worker_downloads_partially_and_completes_on_resume(caller, worker_factory):
    batch = BatchFactory(caller=caller, content=twin_lines(PAUSE_LINES))
    worker = worker_factory(log_name="order-pause")
    wait_for(lambda: Batch.objects.get(pk=batch.pk).processed >= 2000, timeout=60, what="processing")
    services.batch_pause(batch=batch)
    held = Chunk.objects.filter(batch=batch).exclude(lease_owner="")
    wait_for(lambda: not held.exists(), timeout=30, what="the running chunks to finish")
    processed = Batch.objects.get(pk=batch.pk).processed
    assert processed < PAUSE_LINES, "paused too late"
    time.sleep(PAUSE_SECONDS)
    paused = Batch.objects.get(pk=batch.pk)
    assert (paused.status, paused.processed, held.exists()) == (S.PAUSED, processed, False)
    body = caller.client.get(f"/batches/{batch.pk}?download=true").json()
    assert body["status_reason"] == "paused" and body["download"]["partial"] is True
    response = caller.client.get(body["download"]["url"].replace("http://testserver", ""), follow=True)
    partial = b"".join(response.streaming_content).decode().splitlines()
    assert len(partial) == processed

    services.batch_resume(batch=batch)
    resumed = wait_terminal(batch, timeout=120, worker=worker)
    assert resumed.status == S.COMPLETED
    assert_ran_once(batch)
    unpaused = wait_terminal(
        BatchFactory(caller=caller, content=twin_lines(PAUSE_LINES)), timeout=120, worker=worker
    )
    assert unpaused.status == S.COMPLETED
    assert without_uuids_and_times(resumed.results_file) == without_uuids_and_times(unpaused.results_file)


def test_a_child_is_cancelled_when_its_parent_fails_and_starts_soon_after_a_clean_one(caller, worker_factory):
    failing = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 20, first_bad=7))
    blocked = BatchFactory(caller=caller, content=tagged_lines("blocked", 20))
    clean = BatchFactory(caller=caller, content=tagged_lines("clean", 200))
    follows = BatchFactory(caller=caller, content=tagged_lines("follows", 20))
    for child, parent in ((blocked, failing), (follows, clean)):
        BatchDependency.objects.create(
            batch=child, parent=parent, parent_uuid=parent.pk, require="no_failures"
        )
    worker = worker_factory(log_name="order-after")

    cancelled = wait_terminal(blocked, timeout=60, worker=worker)
    assert Batch.objects.get(pk=failing.pk).failed == 1
    assert cancelled.status == S.CANCELLED and cancelled.processed == 0
    assert cancelled.failure_reason.startswith("dependency_failed: ")
    assert serials("blocked") == 0
    assert wait_terminal(follows, timeout=60, worker=worker).status == S.COMPLETED
    waited = (entered(follows, S.COPYING) - entered(clean, S.COMPLETED)).total_seconds()
    print(f"the child started {waited:.2f} s after its parent completed")
    assert 0 <= waited < 5
    assert [line["status"] for line in read_results(Batch.objects.get(pk=follows.pk).results_file)] == [
        201
    ] * 20
