"""A batch's summary (docs/contract.md, accounting): its lines accounted for exactly once, its
failed and never-run lines by the subcode the single call returns, and the SHA-256 of exactly
the bytes its downloads serve, on local storage and S3, after a cancel and after a worker was
killed; while it runs, the same counts over the lines done so far.

SUMMARY_LINES sets the size of the cancelled batch (the killed one runs a quarter of it to its
end); `make soak` runs a million."""

import hashlib
import json
import os
import random
import uuid
from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from batches import services
from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline import chunks
from batches.summaries import SubcodeTally
from notifications.models import Event
from tests.scaleout.conftest import moto_endpoint, s3  # noqa: F401 - the S3 fixtures
from tests.support.assertions import assert_error
from tests.support.batch_files import jsonl, updates
from tests.support.factories import BatchFactory
from tests.support.infrastructure_faults import once_per_database
from tests.support.inline_pipeline import into_processing, run_batch, stop_after_first_chunk
from tests.support.s3_bucket import download as s3_download
from tests.support.waiting import wait_for, wait_terminal
from tests.support.webhook_receivers import Receiver
from tests.support.webhooks import confirm, subscribe

S = BatchStatus
SUMMARY_LINES = int(os.environ.get("SUMMARY_LINES", "80000"))
LEDGER = "add_twin_ledger_entry"


def local_download(caller, batch_id, part: str) -> bytes:
    """GET ?download=true (&part=errors), then the signed URL it gave, as a client does."""
    answer = caller.client.get(f"/batches/{batch_id}", {"download": "true", "part": part})
    assert answer.status_code == 200, answer.content
    response = APIClient().get(urlsplit(answer.json()["download"]["url"]).path)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def summary_of(caller, batch_id) -> dict:
    response = caller.client.get(f"/batches/{batch_id}")
    assert response.status_code == 200, response.content
    return response.json()["summary"]


def file_facts(body: bytes) -> dict:
    return {"lines": body.count(b"\n"), "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def tally_of(records: list[dict]) -> dict:
    tally = SubcodeTally()
    for record in records:
        tally.add(record["error"]["subcode"], record["line"])
    return tally.counts


def assert_accounted(summary: dict) -> None:
    """Every line once: all of them once the batch ended, the lines done so far while it runs."""
    accounted = summary["succeeded"] + summary["failed"] + summary["not_executed"]
    if summary.get("partial"):
        assert accounted <= summary["total"]
    else:
        assert accounted == summary["total"]
    by_subcode = sum(entry["count"] for entry in summary["by_subcode"].values())
    assert by_subcode == summary["failed"] + summary["not_executed"]


def assert_final_summary(caller, batch_id, download=local_download) -> dict:
    """The summary of an ended batch adds up, its files' facts are those of the bytes both
    downloads serve, and by_subcode is what the errors file lists, line for line."""
    summary = summary_of(caller, batch_id)
    assert "partial" not in summary
    assert_accounted(summary)
    results, errors = (download(caller, batch_id, part) for part in ("results", "errors"))
    assert summary["results"] == file_facts(results)
    assert summary["errors"] == file_facts(errors)
    batch = Batch.objects.get(pk=batch_id)
    if batch.status in (S.COMPLETED, S.CANCELLED) and not batch.validate_only:
        # Every failed and never-run line is in the errors file; counted from it, line by line.
        failed = [json.loads(line) for line in errors.splitlines()]
        assert summary["by_subcode"] == tally_of(failed)
        assert summary["total"] == results.count(b"\n")
    return summary


# A ledger batch whose failures the single calls explain ------------------------------------


def make_twins(caller, count: int) -> list[str]:
    made = []
    for n in range(count):
        response = caller.client.post("/twins", {"description": {"n": n}}, format="json")
        assert response.status_code == 201, response.content
        made.append(response.json()["creation_certificate"]["uuid"])
    return made


def add_entries(caller, twin: str, entries: dict):
    return caller.client.post(f"/twins/{twin}/ledgers/personal", {"entries": entries}, format="json")


def single_call_subcode(response) -> str:
    assert response.status_code >= 400, response.content
    return response.json()["subcode"]


def ledger_world(caller) -> tuple[list[str], list[str], dict]:
    """50 twins, 5 of them terminated, each live one holding the entry `seed`; and the subcode
    the single call returns for a missing twin, an existing key and a terminated twin."""
    twins = make_twins(caller, 50)
    alive, terminated = twins[:45], twins[45:]
    for twin in terminated:
        assert caller.client.delete(f"/twins/{twin}").status_code == 200
    for twin in alive:
        assert add_entries(caller, twin, {"seed": {"value": 0}}).status_code == 201
    subcodes = {
        "missing": single_call_subcode(add_entries(caller, str(uuid.uuid4()), {"x": {"value": 1}})),
        "existing": single_call_subcode(add_entries(caller, alive[0], {"seed": {"value": 1}})),
        "terminated": single_call_subcode(add_entries(caller, terminated[0], {"x": {"value": 1}})),
    }
    return alive, terminated, subcodes


def ledger_line(kind: str, number: int, alive: list[str], terminated: list[str]) -> dict:
    key = {f"k{number}": {"value": number}}
    if kind == "missing":
        return {"twin": str(uuid.uuid4()), "entries": key}
    if kind == "existing":
        return {"twin": alive[number % len(alive)], "entries": {"seed": {"value": number}}}
    if kind == "terminated":
        return {"twin": terminated[number % len(terminated)], "entries": key}
    return {"twin": alive[number % len(alive)], "entries": key}


def ledger_file(kinds: list[str], alive: list[str], terminated: list[str]) -> tuple[bytes, dict]:
    """One line per kind, in that order; and the line numbers of each kind."""
    lines_of: dict[str, list[int]] = {}
    for number, kind in enumerate(kinds, start=1):
        lines_of.setdefault(kind, []).append(number)
    content = jsonl(
        ledger_line(kind, number, alive, terminated) for number, kind in enumerate(kinds, start=1)
    )
    return content, lines_of


def expected_by_subcode(lines_of: dict, subcodes: dict) -> dict:
    tally = SubcodeTally()
    for kind, subcode in subcodes.items():
        for number in lines_of.get(kind, []):
            tally.add(subcode, number)
    # Added kind by kind: the first lines of a subcode two kinds share are the earliest.
    return {subcode: {**entry, "lines": sorted(entry["lines"])} for subcode, entry in tally.counts.items()}


def spread_kinds(total: int, counts: dict, seed: int) -> list[str]:
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    kinds += ["new"] * (total - len(kinds))
    random.Random(seed).shuffle(kinds)
    return kinds


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_ledger_batch_counts_each_failure_under_the_single_calls_subcode(caller, worker_factory):
    alive, terminated, subcodes = ledger_world(caller)
    kinds = spread_kinds(10_000, {"missing": 600, "existing": 300, "terminated": 100}, seed=26)
    content, lines_of = ledger_file(kinds, alive, terminated)
    worker = worker_factory(log_name="worker-summary-ledger")
    batch = wait_terminal(
        BatchFactory(caller=caller, operation=LEDGER, content=content), timeout=300, worker=worker
    )
    assert batch.status == S.COMPLETED

    summary = assert_final_summary(caller, batch.pk)
    assert (summary["total"], summary["succeeded"], summary["failed"], summary["not_executed"]) == (
        10_000,
        9_000,
        1_000,
        0,
    )
    expected = {
        subcodes[kind]: {"count": count, "lines": lines_of[kind][:5]}
        for kind, count in (("missing", 600), ("existing", 300), ("terminated", 100))
    }
    assert len(expected) == 3, f"three distinct subcodes: {subcodes}"
    assert summary["by_subcode"] == expected
    assert list(summary["by_subcode"]) == [subcodes["missing"], subcodes["existing"], subcodes["terminated"]]
    assert (summary["results"]["lines"], summary["errors"]["lines"]) == (10_000, 1_000)


# Stopped batches, on real workers ------------------------------------------------------------


def large_ledger_batch(caller, lines: int, *, missing_every: int) -> tuple[Batch, dict]:
    """A ledger batch of `lines` lines on 45 live twins, every `missing_every`th naming a twin
    that does not exist; and the subcode the single call returns for those."""
    alive = make_twins(caller, 45)
    subcode = single_call_subcode(add_entries(caller, str(uuid.uuid4()), {"x": {"value": 1}}))
    kinds = ["missing" if number % missing_every == 0 else "new" for number in range(1, lines + 1)]
    content, lines_of = ledger_file(kinds, alive, [])
    batch = BatchFactory(caller=caller, operation=LEDGER, content=content)
    return batch, {"subcode": subcode, "missing": lines_of.get("missing", [])}


@pytest.mark.slow
@once_per_database()
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_large_batch_accounts_for_every_line(caller, worker_factory):
    batch, _ = large_ledger_batch(caller, SUMMARY_LINES, missing_every=97)
    worker = worker_factory(log_name="worker-summary-cancel")
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).processed > 0,
        timeout=600,
        interval=0.05,
        what="processing to be under way",
    )
    running = summary_of(caller, batch.pk)
    assert running["partial"] is True and "results" not in running
    assert_accounted(running)
    services.batch_cancel(batch=batch)
    batch = wait_terminal(batch, timeout=600, worker=worker)
    assert batch.status == S.CANCELLED

    summary = assert_final_summary(caller, batch.pk)
    assert summary["total"] == SUMMARY_LINES
    assert summary["not_executed"] > 0
    assert summary["by_subcode"]["not_executed"]["count"] == summary["not_executed"]
    assert (summary["succeeded"], summary["failed"]) == (batch.succeeded, batch.failed)


@pytest.mark.slow
@once_per_database()
@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_worker_was_killed_mid_run_accounts_for_every_line(caller, worker_factory):
    lines = SUMMARY_LINES // 4
    batch, missing = large_ledger_batch(caller, lines, missing_every=50)
    first = worker_factory(log_name="worker-summary-killed")
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).processed >= lines // 10,
        timeout=600,
        what="processing to be under way",
    )
    first.kill()
    killed_at = Batch.objects.get(pk=batch.pk)
    assert killed_at.status == S.PROCESSING and killed_at.processed < lines, "the kill came too late"

    second = worker_factory(log_name="worker-summary-after-kill")
    batch = wait_terminal(batch, timeout=900, worker=second)
    assert batch.status == S.COMPLETED
    summary = assert_final_summary(caller, batch.pk)
    failed = len(missing["missing"])
    assert (summary["total"], summary["succeeded"], summary["failed"], summary["not_executed"]) == (
        lines,
        lines - failed,
        failed,
        0,
    )
    assert summary["by_subcode"] == {missing["subcode"]: {"count": failed, "lines": missing["missing"][:5]}}


# Every ending, on local storage and on S3 ---------------------------------------------------

INVALID_FILE = (
    b'{"description": {}}\n{"description": 1}\n\n{"description": {}}\n{broken\n{"description": {}}\n'
)


def endings(caller) -> dict:
    """A batch of each ending, run in this process: completed with failures, cancelled after its
    first chunk, invalid lines, a dry run, and the same two validated a chunk at a time."""
    with override_settings(BATCH_CHUNK_LINES=4):
        cancelled = stop_after_first_chunk(
            BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 10, bad_every=3))
        )
    with override_settings(BATCH_CHUNK_LINES=4, BATCH_VALIDATE_PARALLEL_MIN_LINES=2):
        made = {
            "cancelled": cancelled,
            "completed": run_batch(
                BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 10, bad_every=3))
            ),
            "invalid_parallel": run_batch(BatchFactory(caller=caller, content=INVALID_FILE)),
            "dry_run_parallel": run_batch(
                BatchFactory(caller=caller, content=jsonl([{"description": {}}] * 6), validate_only=True)
            ),
        }
    with override_settings(BATCH_VALIDATE_PARALLEL_MIN_LINES=1_000):
        made["invalid"] = run_batch(BatchFactory(caller=caller, content=INVALID_FILE))
        made["dry_run"] = run_batch(
            BatchFactory(caller=caller, content=jsonl([{"description": {}}] * 6), validate_only=True)
        )
    return made


def assert_endings(caller, made: dict, download) -> None:
    completed = assert_final_summary(caller, made["completed"].pk, download)
    assert (completed["total"], completed["succeeded"], completed["failed"]) == (10, 7, 3)
    assert completed["by_subcode"] == {"not_found": {"count": 3, "lines": [3, 6, 9]}}

    cancelled = assert_final_summary(caller, made["cancelled"].pk, download)
    assert (cancelled["total"], cancelled["succeeded"], cancelled["failed"]) == (10, 3, 1)
    assert cancelled["not_executed"] == 6
    assert cancelled["by_subcode"]["not_executed"] == {"count": 6, "lines": [5, 6, 7, 8, 9]}

    for name in ("invalid", "invalid_parallel"):
        assert made[name].status == S.VALIDATION_FAILED
        invalid = assert_final_summary(caller, made[name].pk, download)
        # Line 3 is blank; nothing ran: the valid lines never did.
        assert (invalid["total"], invalid["succeeded"], invalid["failed"], invalid["not_executed"]) == (
            5,
            0,
            2,
            3,
        )
        assert invalid["results"] == invalid["errors"] and invalid["results"]["lines"] == 2
        assert invalid["by_subcode"]["not_executed"] == {"count": 3, "lines": [1, 4, 6]}
        assert (
            sum(entry["count"] for code, entry in invalid["by_subcode"].items() if code != "not_executed")
            == 2
        )

    for name in ("dry_run", "dry_run_parallel"):
        assert made[name].status == S.COMPLETED
        dry_run = assert_final_summary(caller, made[name].pk, download)
        assert (dry_run["total"], dry_run["succeeded"], dry_run["failed"], dry_run["not_executed"]) == (
            6,
            0,
            0,
            6,
        )
        assert dry_run["by_subcode"] == {"validate_only": {"count": 6, "lines": [1, 2, 3, 4, 5]}}
        assert dry_run["results"] == dry_run["errors"] and dry_run["results"]["lines"] == 6


@pytest.mark.django_db
def test_every_ending_has_a_summary_of_the_files_it_serves(caller):
    assert_endings(caller, endings(caller), local_download)

    mismatch = run_batch(BatchFactory(caller=caller, content=jsonl([{}]), hash="0" * 64))
    assert mismatch.status == S.HASH_MISMATCH
    assert summary_of(caller, mismatch.pk) == {
        "total": 0,
        "succeeded": 0,
        "failed": 0,
        "not_executed": 0,
        "by_subcode": {},
        "results": None,
        "errors": None,
    }
    assert_error(caller.client.get(f"/batches/{mismatch.pk}", {"download": "true"}), 409, "results_not_ready")


@pytest.mark.django_db
def test_the_summary_hashes_are_those_of_the_bytes_s3_serves(caller, s3):  # noqa: F811 - imported above
    assert_endings(
        caller,
        endings(caller),
        lambda caller, batch_id, part: s3_download(caller, s3, batch_id, part).content,
    )


# While it runs --------------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(BATCH_CHUNK_LINES=5)
def test_a_running_batch_shows_the_lines_done_so_far(caller):
    batch = BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 20, bad_every=4))
    assert summary_of(caller, batch.pk) is None, "no line can run yet"
    runner = into_processing(batch)
    assert summary_of(caller, batch.pk) == {
        "total": 20,
        "succeeded": 0,
        "failed": 0,
        "not_executed": 0,
        "by_subcode": {},
        "partial": True,
    }

    for done, failed_lines in ((5, [4]), (10, [4, 8])):
        assert chunks.chunk_claim_and_run(batch.pk)
        running = summary_of(caller, batch.pk)
        progress = caller.client.get(f"/batches/{batch.pk}").json()["progress"]
        assert running == {
            "total": 20,
            "succeeded": done - len(failed_lines),
            "failed": len(failed_lines),
            "not_executed": 0,
            "by_subcode": {"not_found": {"count": len(failed_lines), "lines": failed_lines}},
            "partial": True,
        }
        assert running["succeeded"] + running["failed"] == progress["processed"] == done

    runner.drain()
    final = assert_final_summary(caller, batch.pk)
    assert final["by_subcode"] == {"not_found": {"count": 5, "lines": [4, 8, 12, 16, 20]}}
    assert not Chunk.objects.filter(batch_id=batch.pk, subcodes__isnull=True).exists()


@pytest.mark.django_db
def test_webhook_events_carry_the_summary(caller, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    receiver = Receiver()
    try:
        subscription, _ = subscribe(caller, receiver)
        confirm(receiver, subscription)
        batch = run_batch(
            BatchFactory(caller=caller, operation="update_twin", content=updates(caller, 6, bad_every=2))
        )
    finally:
        receiver.close()
    bodies = {event.name: event.body for event in Event.objects.filter(batch_id=batch.pk)}
    assert bodies["batch_processing"]["batch"]["summary"]["partial"] is True
    completed = bodies["batch_completed"]["batch"]
    assert completed["summary"] == summary_of(caller, batch.pk)
    assert completed["summary"]["by_subcode"] == {"not_found": {"count": 3, "lines": [2, 4, 6]}}
    assert set(bodies["batch_completed"]) == {"type", "event", "event_id", "topic", "account", "ts", "batch"}
