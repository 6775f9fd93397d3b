"""The command-line client end to end: `python -m batches.cli` in its own process, against a
live server and a real worker, with local files and with S3 (the same commands work on both)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from batches.models import Batch, Upload
from batchsite.celery import app as celery_app
from tests.support.batch_files import jsonl
from tests.support.worker_processes import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Cli:
    def __init__(self, *, url: str, secret: str):
        self.env = {**os.environ, "BATCH_API_URL": url, "BATCH_API_SECRET": secret}

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "batches.cli", *args],
            env=self.env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(params=["local", "s3"])
def cli(request, caller, live_server) -> Cli:
    """The client pointed at a live server with a worker, on local files or on S3."""
    extra_env = request.getfixturevalue("s3").env() if request.param == "s3" else {}
    celery_app.control.purge()
    worker = WorkerProcess(extra_env=extra_env, log_name=f"worker-cli-{request.param}").start()
    yield Cli(url=live_server.url, secret=caller.secret)
    worker.discard()


def test_submit_wait_download_and_list(cli, caller, tmp_path):
    source = tmp_path / "twins.jsonl"
    source.write_bytes(jsonl({"description": {"serial": n}} for n in range(40)))

    submitted = cli("submit", str(source), "--operation", "create_twin", "--batch-dict", "run=7")
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    batch = Batch.objects.get(pk=batch_id)
    assert batch.account == caller.account and batch.batch_dict == {"run": 7}

    waited = cli("wait", batch_id)
    assert waited.returncode == 0, waited.stderr
    finished = json.loads(waited.stdout)
    assert finished["status"] == "completed"
    assert finished["progress"] == {
        "total": 40,
        "processed": 40,
        "succeeded": 40,
        "failed": 0,
        "rate_lps": None,
        "eta_ts": None,
    }

    results = tmp_path / "results.jsonl"
    assert cli("download", batch_id, "-o", str(results)).returncode == 0
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [line["line"] for line in lines] == list(range(1, 41))
    assert [line["result"]["description"]["serial"] for line in lines] == list(range(40))
    errors = tmp_path / "errors.jsonl"
    assert cli("download", batch_id, "--errors", "-o", str(errors)).returncode == 0
    assert errors.read_bytes() == b""

    listed = cli("list", "--status", "completed")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"{batch_id}\tcompleted"]


def test_a_batch_that_fails_validation_exits_non_zero(cli, tmp_path):
    source = tmp_path / "twins.csv"
    source.write_text('description\n{"n": 1}\nnot json\n')
    waited = cli("submit", str(source), "--operation", "create_twin", "--wait", "--interval", "0.2")
    assert waited.returncode == 1, waited.stderr
    batch = json.loads(waited.stdout)
    assert batch["status"] == "validation_failed"
    errors = tmp_path / "errors.jsonl"
    assert cli("download", batch["batch"], "--errors", "-o", str(errors)).returncode == 0
    assert [json.loads(line)["line"] for line in errors.read_text().splitlines()] == [3]


@pytest.mark.parametrize("cli", ["local"], indirect=True)
def test_cancel_then_wait_exits_non_zero(cli, tmp_path):
    source = tmp_path / "twins.jsonl"
    source.write_bytes(jsonl({"description": {"serial": n}} for n in range(20_000)))
    batch_id = cli("submit", str(source), "--operation", "create_twin").stdout.strip()
    cancelled = cli("cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] in {"cancel", "cancelling", "cancelled"}
    waited = cli("wait", batch_id, "--interval", "0.2")
    assert (waited.returncode, json.loads(waited.stdout)["status"]) == (1, "cancelled")


@pytest.mark.parametrize("cli", ["local"], indirect=True)
def test_refusals_exit_2_with_the_error(cli, tmp_path):
    cli.env["BATCH_API_SECRET"] = "not-a-secret"
    refused = cli("list")
    assert refused.returncode == 2
    assert "401" in refused.stderr and "invalid_secret" in refused.stderr
    del cli.env["BATCH_API_SECRET"]
    assert cli("list").returncode == 2


@pytest.mark.parametrize(
    "operation, statement, refusal",
    [
        ("create_twn", None, "400 operation_unknown"),
        ("create_twin", {"effect": "deny", "actions": ["create_twin"]}, "403 action_not_allowed"),
        ("get_twin", {"effect": "deny", "actions": ["create_batch"]}, "403 action_not_allowed"),
    ],
)
def test_a_wrong_or_forbidden_operation_stops_before_the_upload(
    make_caller, live_server, tmp_path, operation, statement, refusal
):
    """The CLI asks the service first (POST /batches with a handler no upload has), so a typo
    or a missing right costs no upload: no upload URL issued, no file stored."""
    caller = make_caller(statement=statement)
    source = tmp_path / "twins.jsonl"
    source.write_bytes(jsonl({"description": {"serial": n}} for n in range(10)))
    refused = Cli(url=live_server.url, secret=caller.secret)("submit", str(source), "--operation", operation)
    assert refused.returncode == 2, refused.stderr
    assert refusal in refused.stderr
    assert not Upload.objects.exists() and not Batch.objects.exists()
    uploads = Path(settings.MEDIA_ROOT) / "uploads" / str(caller.account.pk)
    assert not uploads.exists() or not any(uploads.iterdir())
