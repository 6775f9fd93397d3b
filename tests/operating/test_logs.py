"""LOG_FORMAT=json: one JSON object per line with ts, level, logger, message and, where known,
trace, account and batch; the trace of an error body is the trace of its log line."""

import io
import json
import logging

import pytest
from django.test import override_settings

from batches.pipeline import chunks
from batchsite.logs import ContextFilter, JsonFormatter, batch_logged, batch_var
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_an_errors_log_line_carries_its_trace_and_account(caller, json_log):
    refused = caller.client.get("/batches/00000000-0000-4000-8000-000000000000")
    assert refused.status_code == 404
    trace = refused.json()["trace"]
    [entry] = [entry for entry in json_log() if entry["logger"] == "batchsite.errors"]
    assert set(entry) >= {"ts", "level", "logger", "message", "trace", "account"}
    assert entry["trace"] == trace and trace in entry["message"]
    assert entry["account"] == str(caller.account.pk)
    assert entry["level"] == "INFO" and entry["ts"].endswith("+00:00")


def test_a_line_without_context_has_only_the_four_fields(json_log):
    logging.getLogger("somewhere").warning("plain %s", "words")
    [entry] = json_log()
    assert set(entry) == {"ts", "level", "logger", "message"}
    assert entry["message"] == "plain words" and entry["level"] == "WARNING"


def test_a_pipeline_tasks_lines_name_the_batch(json_log):
    token = batch_var.set("5f1c0a4e-0000-4000-8000-000000000000")
    try:
        logging.getLogger("batches.pipeline").info("chunk ran")
    finally:
        batch_var.reset(token)
    assert json_log()[0]["batch"] == "5f1c0a4e-0000-4000-8000-000000000000"


def test_a_chunk_workers_lines_name_each_chunks_batch_and_no_other(json_log):
    """A chunk worker's task runs chunks of several batches: each run names its own."""
    logger = logging.getLogger("batches.pipeline.chunks")
    for batch_id in ("5f1c0a4e-0000-4000-8000-00000000000a", "5f1c0a4e-0000-4000-8000-00000000000b"):
        with batch_logged(batch_id):
            logger.info("chunk ran")
    logger.info("slice over")
    assert [entry.get("batch") for entry in json_log()] == [
        "5f1c0a4e-0000-4000-8000-00000000000a",
        "5f1c0a4e-0000-4000-8000-00000000000b",
        None,
    ]


@pytest.mark.django_db
def test_a_chunk_run_logs_under_its_batch(caller, json_log, monkeypatch):
    """chunk_run_next names the batch of the chunk it runs, whatever logs inside the run."""
    batch = BatchFactory(caller=caller, content=jsonl([{}]))
    monkeypatch.setattr(chunks, "batches_in_turn", lambda: [(batch.pk, "processing")])

    def claim_and_log(batch_id):
        logging.getLogger("batches.pipeline.chunks").info("chunk ran")
        return True

    monkeypatch.setattr(chunks, "chunk_claim_and_run", claim_and_log)
    assert chunks.chunk_run_next() == batch.pk
    assert [entry.get("batch") for entry in json_log()] == [str(batch.pk)]


@override_settings(METRICS_TOKEN="")
def test_each_request_gets_its_own_trace(caller):
    first = caller.client.get("/batches/00000000-0000-4000-8000-000000000000").json()["trace"]
    second = caller.client.get("/batches/00000000-0000-4000-8000-000000000000").json()["trace"]
    assert first != second
