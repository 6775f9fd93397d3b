"""Time and order (docs/contract.md, section 14) in this process: the services' refusals, the
first step's gate for scheduled and dependent batches, the deadline stop, pause and resume, and
races between them, each ending in one outcome. The worker processes' side is
tests/batches/pipeline/test_time_and_order.py."""

import pytest
from django.test import override_settings

from batches import services
from batches.models import Batch, BatchDependency, BatchStatus, Chunk
from batches.pipeline import chunks, maintenance, scheduling
from batches.retry import batch_retry
from batches.selectors import batch_waiting, batches_stalled
from batchsite.clock import database_now_plus
from batchsite.errors import Conflict
from notifications.models import Event
from tests.support.batch_files import twin_lines, updates
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import InlinePipeline, history, into_processing, read_results, run_batch
from tests.support.parallel_calls import in_parallel
from tests.support.webhook_receivers import Receiver
from tests.support.webhooks import confirm, subscribe

S = BatchStatus


def at(seconds: float):
    """The database's time `seconds` from now, as a value."""
    return Batch.objects.annotate(t=database_now_plus(seconds)).values_list("t", flat=True).first()


def made_old(batch) -> None:
    """As if the batch was created a minute ago: the sweep asks for a lost first step then."""
    Batch.objects.filter(pk=batch.pk).update(created_at=database_now_plus(-60))


def sweep_asks() -> list[str]:
    asked = []
    maintenance.sweep(asked.append)
    return asked


def run_every_chunk(batch) -> None:
    while chunks.chunk_claim_and_run(batch.pk):
        pass


def on_look(monkeypatch, check: str, look: int, act) -> None:
    """Makes `chunks.<check>`, which a running chunk asks between line groups, do `act(batch_id)`
    just before it answers for the `look`-th time: something happening while a chunk runs."""
    original = getattr(chunks, check)
    looks = []

    def check_after_acting(batch_id):
        looks.append(batch_id)
        if len(looks) == look:
            act(batch_id)
        return original(batch_id)

    monkeypatch.setattr(chunks, check, check_after_acting)


def after(child, parent, require: str) -> None:
    BatchDependency.objects.create(batch=child, parent=parent, parent_uuid=parent.pk, require=require)


# Refusals -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_processing_pauses_only_paused_resumes_and_an_ended_batch_is_not_rescheduled(caller):
    new = BatchFactory(caller=caller)
    with pytest.raises(Conflict) as refused:
        services.batch_pause(batch=new)
    assert refused.value.subcode == "batch_not_pausable"
    with pytest.raises(Conflict) as refused:
        services.batch_resume(batch=new)
    assert refused.value.subcode == "batch_not_paused"

    processing = BatchFactory(caller=caller, status=S.PROCESSING, total=1)
    assert services.batch_resume(batch=processing).status == S.PROCESSING
    assert services.batch_pause(batch=processing).status == S.PAUSED
    assert services.batch_pause(batch=processing).status == S.PAUSED
    assert history(processing)[-1] == S.PAUSED and history(processing).count(S.PAUSED) == 1
    assert batch_waiting(Batch.objects.get(pk=processing.pk))["status_reason"] == "paused"
    assert services.batch_cancel(batch=processing).status == S.CANCEL

    completed = BatchFactory(caller=caller, status=S.COMPLETED)
    with pytest.raises(Conflict) as refused:
        services.batch_reschedule(batch=completed, priority=9)
    assert refused.value.subcode == "batch_ended"
    with pytest.raises(Conflict):
        services.batch_pause(batch=completed)


# Scheduled and dependent batches wait for nothing but the sweep or the parent ------------


@pytest.mark.django_db
def test_a_scheduled_batch_stays_new_costs_the_sweep_nothing_and_starts_once_due(caller, settings):
    settings.BATCH_STALL_AFTER_SECONDS = 10
    batch = BatchFactory(caller=caller, content=twin_lines(3))
    services.batch_reschedule(batch=batch, not_before=at(3600))
    made_old(batch)
    runner = InlinePipeline()
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.NEW and batch.lease_owner == ""
    waiting = batch_waiting(batch)
    assert (waiting["status_reason"], waiting["queue"]) == ("scheduled", None)
    assert waiting["status_reason_description"].startswith("Scheduled: it starts at ")
    assert sweep_asks() == []
    assert not batches_stalled().filter(pk=batch.pk).exists()

    Batch.objects.filter(pk=batch.pk).update(not_before=at(-1))
    assert sweep_asks() == [str(batch.pk)]
    assert sweep_asks() == [], "asked again within PIPELINE_KICK_AFTER_SECONDS"
    assert run_batch(batch).status == S.COMPLETED


@pytest.mark.django_db
def test_a_not_before_moved_to_now_starts_the_batch(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(2))
    services.batch_reschedule(batch=batch, not_before=at(3600), priority=8)
    assert run_batch(batch).status == S.NEW
    rescheduled = services.batch_reschedule(batch=batch, not_before=at(0))
    assert rescheduled.priority == 8
    assert run_batch(batch).status == S.COMPLETED


@pytest.mark.django_db
def test_a_child_waits_for_its_parent_and_starts_when_the_parents_step_ends_it(caller):
    parent = BatchFactory(caller=caller, content=twin_lines(2))
    child = BatchFactory(caller=caller, content=twin_lines(2))
    after(child, parent, "no_failures")
    made_old(child)
    runner = InlinePipeline()
    runner.advance(child)
    runner.drain()
    assert Batch.objects.get(pk=child.pk).status == S.NEW
    assert batch_waiting(Batch.objects.get(pk=child.pk))["status_reason"] == "waiting_dependency"
    assert str(child.pk) not in sweep_asks()
    assert not batches_stalled(after_seconds=1).filter(pk=child.pk).exists()

    # The parent's last step asks for the child: one pipeline run ends both.
    runner.advance(parent)
    runner.drain()
    assert Batch.objects.get(pk=parent.pk).status == S.COMPLETED
    assert Batch.objects.get(pk=child.pk).status == S.COMPLETED


@pytest.mark.django_db
def test_a_requirement_that_can_no_longer_be_met_cancels_the_child_with_nothing_run(caller):
    parent = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 4, first_bad=2))
    child = BatchFactory(caller=caller, content=twin_lines(3))
    untouched = BatchFactory(caller=caller, content=twin_lines(1))
    after(child, parent, "no_failures")
    after(untouched, parent, "terminal")
    runner = InlinePipeline()
    runner.advance(parent)
    runner.drain()
    parent, child = Batch.objects.get(pk=parent.pk), Batch.objects.get(pk=child.pk)
    assert (parent.status, parent.failed) == (S.COMPLETED, 1)
    assert child.status == S.CANCELLED
    assert child.failure_reason.startswith("dependency_failed: ")
    assert str(parent.pk) in child.failure_reason
    assert child.processed == 0 and S.COPYING not in history(child)
    assert {line["error"]["subcode"] for line in read_results(child.results_file)} == {"not_executed"}
    assert Batch.objects.get(pk=untouched.pk).status == S.COMPLETED


@pytest.mark.django_db
def test_a_deleted_parent_fails_completed_and_meets_terminal(caller):
    parent = BatchFactory(caller=caller, content=twin_lines(1), status=S.CANCELLED)
    needs_completed = BatchFactory(caller=caller, content=twin_lines(1))
    needs_end = BatchFactory(caller=caller, content=twin_lines(1))
    after(needs_completed, parent, "completed")
    after(needs_end, parent, "terminal")
    # A purge whose step never asked for the children: the sweep finds them.
    Batch.objects.filter(pk=parent.pk).delete()
    assert BatchDependency.objects.filter(parent__isnull=True).count() == 2
    made_old(needs_completed)
    made_old(needs_end)
    asked = sweep_asks()
    assert sorted(asked) == sorted([str(needs_completed.pk), str(needs_end.pk)])
    for batch_id in asked:
        run_batch(Batch.objects.get(pk=batch_id))
    failed = Batch.objects.get(pk=needs_completed.pk)
    assert failed.status == S.CANCELLED
    assert failed.failure_reason.startswith(f"dependency_failed: batch {parent.pk} was deleted")
    assert Batch.objects.get(pk=needs_end.pk).status == S.COMPLETED


# The deadline ---------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(BATCH_CHUNK_LINES=4)
def test_a_passed_deadline_stops_the_batch_at_its_next_claim_and_a_retry_runs_the_rest(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(12))
    runner = into_processing(batch)
    assert chunks.chunk_claim_and_run(batch.pk)
    services.batch_reschedule(batch=batch, deadline_at=at(-1))
    assert not chunks.chunk_claim_and_run(batch.pk), "a chunk claimed past the deadline"
    assert chunks.chunk_run_next() == batch.pk
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.CANCELLED
    assert batch.failure_reason.startswith("deadline_exceeded: the deadline ")
    results = read_results(batch.results_file)
    assert [line["status"] for line in results] == [201] * 4 + [None] * 8
    summary = batch.summary
    assert (summary["total"], summary["succeeded"], summary["not_executed"]) == (12, 4, 8)

    retry, _ = batch_retry(batch=batch, user=caller.user)
    retry = run_batch(retry)
    assert retry.status == S.COMPLETED and retry.total == 8
    assert [line["line"] for line in read_results(retry.results_file)] == list(range(1, 9))


@pytest.mark.django_db
@override_settings(BATCH_CHUNK_LINES=10, BATCH_CANCEL_CHECK_LINES=2)
def test_a_deadline_passing_inside_a_chunk_stops_it_at_the_next_line_group(caller, monkeypatch):
    batch = BatchFactory(caller=caller, content=twin_lines(10))
    runner = into_processing(batch)
    on_look(
        monkeypatch,
        "group_stop",
        2,
        lambda batch_id: Batch.objects.filter(pk=batch_id).update(deadline_at=database_now_plus(-1)),
    )
    assert chunks.chunk_claim_and_run(batch.pk)
    assert Chunk.objects.get(batch=batch).executed_count == 4
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert (batch.status, batch.processed) == (S.CANCELLED, 4)
    assert batch.failure_reason.startswith("deadline_exceeded")


@pytest.mark.django_db
def test_the_sweep_stops_an_overdue_batch_in_any_status(caller):
    scheduled = BatchFactory(caller=caller)
    paused = BatchFactory(caller=caller, status=S.PAUSED, total=1)
    validating = BatchFactory(caller=caller, status=S.VALIDATING)
    for batch in (scheduled, paused, validating):
        services.batch_reschedule(batch=batch, not_before=at(3600), deadline_at=at(-1))
    asked = sweep_asks()
    for batch in (scheduled, paused, validating):
        stopped = Batch.objects.get(pk=batch.pk)
        assert stopped.status == S.CANCEL, stopped
        assert stopped.failure_reason.startswith("deadline_exceeded")
        assert str(batch.pk) in asked
    assert run_batch(scheduled).status == S.CANCELLED


# Pause and resume -----------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(BATCH_CHUNK_LINES=10, BATCH_CANCEL_CHECK_LINES=2)
def test_a_pause_lets_the_running_chunk_finish_claims_nothing_and_resume_completes(caller, monkeypatch):
    batch = BatchFactory(caller=caller, content=twin_lines(20))
    runner = into_processing(batch)
    on_look(monkeypatch, "group_stop", 2, lambda _: services.batch_pause(batch=batch))
    assert chunks.chunk_claim_and_run(batch.pk)
    monkeypatch.undo()
    paused = Batch.objects.get(pk=batch.pk)
    assert (paused.status, paused.processed) == (S.PAUSED, 10), "the running chunk was cut short"
    assert chunks.chunk_run_next() is None
    assert not chunks.chunk_claim_and_run(batch.pk)
    runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.PAUSED
    Batch.objects.filter(pk=batch.pk).update(heartbeat_at=database_now_plus(-3600))
    assert not batches_stalled().filter(pk=batch.pk).exists()
    assert str(batch.pk) not in sweep_asks()

    services.batch_resume(batch=batch)
    runner.advance(batch)
    runner.drain()
    batch = Batch.objects.get(pk=batch.pk)
    assert batch.status == S.COMPLETED and batch.succeeded == 20
    assert history(batch)[-6:] == [
        S.PROCESSING,
        S.PAUSED,
        S.PROCESSING,
        S.PROCESSED,
        S.WRITING_RESULTS,
        S.COMPLETED,
    ]


@pytest.mark.django_db
def test_a_batch_whose_last_chunk_committed_while_paused_completes_after_resume(caller):
    batch = BatchFactory(caller=caller, content=twin_lines(3))
    runner = into_processing(batch)
    lease = chunks.ChunkLease.claim(
        batch_id=batch.pk, status=S.PROCESSING, unfinished={"done": False}, count=1, worker="test"
    )
    services.batch_pause(batch=batch)
    # Claimed before the pause: the chunk's transaction sees the pause and runs nothing.
    assert not chunks.chunk_run(batch.pk, lease)
    lease.release()
    services.batch_resume(batch=batch)
    runner.advance(batch)
    runner.drain()
    assert Batch.objects.get(pk=batch.pk).status == S.COMPLETED


# Races: one outcome ---------------------------------------------------------------------


def race(*calls) -> list:
    """The calls at once, each on a thread with its own connection; each result or its error."""

    def call(n):
        try:
            return calls[n]()
        except Conflict as refused:
            return refused

    return in_parallel(call, len(calls), threads=len(calls))


def finished_processing(caller, lines: int = 3):
    batch = BatchFactory(caller=caller, content=twin_lines(lines))
    into_processing(batch)
    run_every_chunk(batch)
    return Batch.objects.get(pk=batch.pk)


def moves_out_of_processing(batch) -> list[str]:
    moves = Batch.objects.get(pk=batch.pk).history.order_by("at", "pk")
    return list(moves.filter(from_status=S.PROCESSING).values_list("to_status", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_pause_racing_the_completion_yields_one_outcome(caller):
    for _ in range(3):
        batch = finished_processing(caller)
        paused, finished = race(
            lambda batch=batch: services.batch_pause(batch=batch),
            lambda batch=batch: chunks.processing_finish(batch),
        )
        moved = moves_out_of_processing(batch)
        assert len(moved) == 1, moved
        if moved == [S.PAUSED]:
            assert finished is None and paused.status == S.PAUSED
            services.batch_resume(batch=batch)
            assert run_batch(batch).status == S.COMPLETED
        else:
            assert moved == [S.PROCESSED] and isinstance(paused, Conflict)
            assert paused.subcode == "batch_not_pausable"


@pytest.mark.django_db(transaction=True)
def test_a_pause_racing_a_cancel_ends_cancelled(caller):
    for _ in range(3):
        batch = BatchFactory(caller=caller, status=S.PROCESSING, total=1)
        race(
            lambda batch=batch: services.batch_pause(batch=batch),
            lambda batch=batch: services.batch_cancel(batch=batch),
        )
        assert Batch.objects.get(pk=batch.pk).status == S.CANCEL
        assert history(batch)[-1] == S.CANCEL and history(batch).count(S.CANCEL) == 1


@pytest.mark.django_db(transaction=True)
def test_a_deadline_racing_the_completion_yields_one_outcome(caller):
    for _ in range(3):
        batch = finished_processing(caller)
        Batch.objects.filter(pk=batch.pk).update(deadline_at=database_now_plus(-1))
        race(
            lambda batch=batch: scheduling.deadline_stop(batch.pk),
            lambda batch=batch: chunks.processing_finish(batch),
        )
        moved = moves_out_of_processing(batch)
        assert moved in ([S.CANCEL], [S.PROCESSED]), moved
        ended = run_batch(batch)
        assert ended.status == (S.CANCELLED if moved == [S.CANCEL] else S.COMPLETED)
        if moved == [S.CANCEL]:
            assert ended.failure_reason.startswith("deadline_exceeded")


@pytest.mark.django_db
def test_webhook_events_say_whether_a_deadline_or_a_parent_stopped_the_batch(caller, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    receiver = Receiver()
    try:
        subscription, _ = subscribe(caller, receiver)
        confirm(receiver, subscription)
        parent = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 2, first_bad=1))
        child = BatchFactory(caller=caller, content=twin_lines(2))
        after(child, parent, "no_failures")
        late = BatchFactory(caller=caller, content=twin_lines(2))
        services.batch_reschedule(batch=late, deadline_at=at(-1))
        runner = InlinePipeline()
        for batch in (parent, late):
            runner.advance(batch)
        runner.drain()
    finally:
        receiver.close()
    for batch, reason in ((child, "dependency_failed: "), (late, "deadline_exceeded: ")):
        cancelled = Event.objects.get(batch_id=batch.pk, name="batch_cancelled").body["batch"]
        assert (cancelled["status"], cancelled["reason"][: len(reason)]) == (S.CANCELLED, reason)


@pytest.mark.django_db
def test_priority_orders_an_accounts_batches_before_attained_service_but_never_the_accounts(caller, stranger):
    ahead = BatchFactory(caller=caller, content=twin_lines(4))
    behind = BatchFactory(caller=caller, content=twin_lines(4))
    others = BatchFactory(caller=stranger, content=twin_lines(4))
    for batch in (ahead, behind, others):
        into_processing(batch)
    # The account's batch that ran more lines goes first for its priority; the other account,
    # which ran fewer lines than this one in all, still goes before both.
    Batch.objects.filter(pk=ahead.pk).update(processed=3, succeeded=3, priority=9)
    Batch.objects.filter(pk=behind.pk).update(priority=1)
    Batch.objects.filter(pk=others.pk).update(processed=2, succeeded=2, priority=1)
    assert [batch_id for batch_id, _ in chunks.batches_in_turn()] == [others.pk, ahead.pk, behind.pk]
    Batch.objects.filter(pk=ahead.pk).update(priority=5)
    Batch.objects.filter(pk=behind.pk).update(priority=5)
    assert [batch_id for batch_id, _ in chunks.batches_in_turn()] == [others.pk, behind.pk, ahead.pk]
