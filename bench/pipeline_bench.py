"""Benchmark of the batch pipeline against its targets (issue 5), on a dedicated database.

    .venv/bin/python bench/pipeline_bench.py batch --lines 100000 --workers 1
    .venv/bin/python bench/pipeline_bench.py single --seconds 20 --threads 8
    .venv/bin/python bench/pipeline_bench.py copy --lines 1000000
    .venv/bin/python bench/pipeline_bench.py cancel --lines 1000000

Each run prints one JSON line and appends it to bench/results/results.jsonl. The database
(BENCH_DATABASE_URL, default a PostgreSQL database `batch_bench` on 127.0.0.1) is dropped and
migrated afresh per run; the broker is BENCH_BROKER_URL (default Redis db 10).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / "var"
RESULTS = ROOT / "bench" / "results" / "results.jsonl"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/batch_bench")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/10")
BIN = Path(sys.executable).parent


def environment() -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "batchsite.settings",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        "DATA_DIR": str(DATA_DIR),
    }


def fresh_database() -> None:
    """Drops and recreates the benchmark database, then migrates it."""
    import psycopg

    parts = urllib.parse.urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=environment(),
        check=True,
    )


def setup_django() -> None:
    os.environ.update(environment())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def record(result: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}
    line = json.dumps(result)
    print(line)
    with RESULTS.open("a") as results:
        results.write(line + "\n")


def twin_file(lines: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"bench-twins-{lines}.jsonl"
    if not path.exists():
        with path.open("w") as out:
            for number in range(lines):
                out.write(json.dumps({"description": {"serial": number, "kind": "sensor"}}) + "\n")
    return path


def start_workers(count: int) -> list[subprocess.Popen]:
    workers = []
    for index in range(count):
        log = (DATA_DIR / f"worker-{index}.log").open("w")
        workers.append(
            subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "batchsite",
                    "worker",
                    "--concurrency=1",
                    f"--hostname=bench{index}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel=WARNING",
                ],
                cwd=ROOT,
                env=environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    time.sleep(3)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=30)


def create_batch(path: Path):
    from batches import services
    from permissions.services import account_bootstrap

    created = account_bootstrap(name=f"bench {uuid.uuid4().hex[:6]}")
    upload = services.upload_create(account=created.account, created_by=created.account_user)
    with path.open("rb") as content:
        services.upload_store(
            handler=upload.handler,
            stream=content,
            content_length=path.stat().st_size,
            content_type="application/x-ndjson",
        )
    batch, _ = services.batch_create(
        account=created.account,
        user=created.account_user.user,
        handler=str(upload.handler),
        operation="create_twin",
    )
    return batch, created


def wait_terminal(batch_id, *, timeout: float):
    from batches.models import Batch
    from batches.statuses import TERMINAL

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = Batch.objects.get(pk=batch_id)
        if batch.status in TERMINAL:
            return batch
        time.sleep(0.05)
    raise TimeoutError(f"batch {batch_id} did not finish in {timeout} s")


def phase_seconds(batch) -> dict:
    at = {change.to_status: change.at for change in batch.history.all()}

    def between(start, end):
        return round((at[end] - at[start]).total_seconds(), 3) if start in at and end in at else None

    return {
        "copy_s": between("copying", "copied"),
        "validate_s": between("validating", "processing"),
        "process_s": between("processing", "processed"),
        "write_results_s": between("writing_results", "completed"),
        "total_s": between("new", "completed"),
    }


def per_second(count: int, seconds: float | None) -> int | None:
    return round(count / seconds) if seconds else None


def run_batch(arguments) -> None:
    fresh_database()
    setup_django()
    path = twin_file(arguments.lines)
    from tests.process_memory import PeakMemory

    workers = start_workers(arguments.workers)
    memories = [PeakMemory(worker.pid) for worker in workers]
    try:
        batch, _ = create_batch(path)
        batch = wait_terminal(batch.pk, timeout=arguments.timeout)
    finally:
        peaks = [round(memory.stop(), 1) for memory in memories]
        stop_workers(workers)
    phases = phase_seconds(batch)
    record(
        {
            "bench": "batch",
            "operation": "create_twin",
            "lines": arguments.lines,
            "workers": arguments.workers,
            "status": batch.status,
            **phases,
            "process_lines_per_s": round(arguments.lines / phases["process_s"])
            if phases["process_s"]
            else None,
            "end_to_end_lines_per_s": round(arguments.lines / phases["total_s"])
            if phases["total_s"]
            else None,
            "peak_rss_mib_per_worker": peaks,
        }
    )


def run_single(arguments) -> None:
    """Single POST /twins calls through gunicorn from client threads, as a client would."""
    import requests

    fresh_database()
    setup_django()
    from permissions.services import account_bootstrap

    secret = account_bootstrap(name="bench single").secret
    port = 8791
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "batchsite.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={arguments.web_workers}",
            "--threads=4",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        counts = [0] * arguments.threads
        failures = [0] * arguments.threads
        deadline = time.monotonic() + arguments.seconds

        def client(index: int) -> None:
            session = requests.Session()
            session.headers["Authorization"] = secret
            serial = 0
            while time.monotonic() < deadline:
                response = session.post(
                    f"{base}/twins", json={"description": {"serial": serial, "kind": "sensor"}}
                )
                serial += 1
                if response.status_code == 201:
                    counts[index] += 1
                else:
                    failures[index] += 1

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(index,)) for index in range(arguments.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    record(
        {
            "bench": "single_calls",
            "threads": arguments.threads,
            "web_workers": arguments.web_workers,
            "calls": sum(counts),
            "failures": sum(failures),
            "calls_per_s": round(sum(counts) / elapsed, 1),
        }
    )


def run_copy(arguments) -> None:
    """Raw PostgreSQL COPY of rows equivalent to create_twin's, the floor for comparison."""
    import psycopg

    fresh_database()
    setup_django()
    from permissions.services import account_bootstrap

    account = account_bootstrap(name="bench copy").account
    path = twin_file(arguments.lines)
    started = time.monotonic()
    with psycopg.connect(DATABASE_URL) as connection, connection.cursor() as cursor:
        now = time.strftime("%Y-%m-%d %H:%M:%S+00")
        with (
            cursor.copy(
                "COPY twins_twin (uuid, account_id, status, description, created_at, updated_at) FROM STDIN"
            ) as copy,
            path.open() as lines,
        ):
            for line in lines:
                description = json.dumps(json.loads(line)["description"])
                copy.write_row((uuid.uuid4(), account.pk, "alive", description, now, now))
    elapsed = time.monotonic() - started
    record({"bench": "raw_copy", "lines": arguments.lines, "rows_per_s": round(arguments.lines / elapsed)})


def run_cancel(arguments) -> None:
    """Time from a cancel request to `cancelled`, with the batch in full processing."""
    fresh_database()
    setup_django()
    from batches import services
    from batches.models import Batch

    path = twin_file(arguments.lines)
    workers = start_workers(arguments.workers)
    try:
        batch, _ = create_batch(path)
        deadline = time.monotonic() + arguments.timeout
        while Batch.objects.get(pk=batch.pk).processed < arguments.lines // 10:
            if time.monotonic() > deadline:
                raise TimeoutError("processing did not get under way")
            time.sleep(0.05)
        asked = time.monotonic()
        services.batch_cancel(batch=batch)
        accepted = time.monotonic()
        batch = wait_terminal(batch.pk, timeout=arguments.timeout)
        finished = time.monotonic()
    finally:
        stop_workers(workers)
    record(
        {
            "bench": "cancel",
            "lines": arguments.lines,
            "workers": arguments.workers,
            "status": batch.status,
            "processed_when_stopped": batch.processed,
            "cancel_request_s": round(accepted - asked, 3),
            "cancel_to_cancelled_s": round(finished - asked, 3),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    batch = commands.add_parser("batch", help="one create_twin batch, timed per phase, with worker memory")
    batch.add_argument("--lines", type=int, default=100_000)
    batch.add_argument("--workers", type=int, default=1)
    batch.add_argument("--timeout", type=float, default=3600)
    single = commands.add_parser("single", help="single POST /twins calls through gunicorn")
    single.add_argument("--seconds", type=float, default=20)
    single.add_argument("--threads", type=int, default=8)
    single.add_argument("--web-workers", type=int, default=4)
    copy = commands.add_parser("copy", help="raw COPY of equivalent rows")
    copy.add_argument("--lines", type=int, default=1_000_000)
    cancel = commands.add_parser("cancel", help="cancel latency of a batch in processing")
    cancel.add_argument("--lines", type=int, default=1_000_000)
    cancel.add_argument("--workers", type=int, default=2)
    cancel.add_argument("--timeout", type=float, default=3600)
    arguments = parser.parse_args()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    {"batch": run_batch, "single": run_single, "copy": run_copy, "cancel": run_cancel}[arguments.command](
        arguments
    )


if __name__ == "__main__":
    main()
