"""Benchmark of the batch pipeline against its targets (issue 17), on a dedicated database.

    make bench                                   # the whole set, a table and one key=value line
    .venv/bin/python bench/pipeline_bench.py all --lines 1000000 --update-lines 1000000
    .venv/bin/python bench/pipeline_bench.py batch --lines 100000 --workers 1
    .venv/bin/python bench/pipeline_bench.py batch --lines 1000000 --workers 2 --operation mixed
    .venv/bin/python bench/pipeline_bench.py single --seconds 20 --threads 8
    .venv/bin/python bench/pipeline_bench.py copy --lines 1000000
    .venv/bin/python bench/pipeline_bench.py cancel --lines 1000000
    .venv/bin/python bench/pipeline_bench.py update --lines 1000000
    .venv/bin/python bench/pipeline_bench.py api --seconds 15 --clients 32
    .venv/bin/python bench/pipeline_bench.py scheduled --batches 10000 --lines 200000
    .venv/bin/python bench/pipeline_bench.py scale --finished 1000000 --active 10000

Each measure prints one JSON line and appends it to bench/results/results.jsonl. The database
(BENCH_DATABASE_URL, default a PostgreSQL database `batch_bench` on 127.0.0.1) is dropped and
migrated afresh per run (once for `all`); the broker is BENCH_BROKER_URL (default Redis db 10);
workers' files and logs go to BENCH_DATA_DIR (default bench/var).
Everything runs as real processes: gunicorn for the HTTP measures, `celery worker` processes
(each --concurrency=1, both queues) for the batches.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import scale_bench

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", ROOT / "bench" / "var"))
RESULTS = ROOT / "bench" / "results" / "results.jsonl"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/batch_bench")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/10")
BIN = Path(sys.executable).parent
PORT = int(os.environ.get("BENCH_PORT", "8791"))
FLUSH_BROKER = True

# Limits meant for tenants, not for a benchmark that is one tenant hammering the service.
BENCH_SETTINGS = {
    "API_THROTTLE_RATE": "100000000/min",
    "QUOTA_MAX_ACTIVE_BATCHES": "1000000",
    "QUOTA_MAX_BATCH_LINES_PER_DAY": "10000000000",
    "LOG_LEVEL": "WARNING",
}


def environment() -> dict:
    return {
        **os.environ,
        **BENCH_SETTINGS,
        "DJANGO_SETTINGS_MODULE": "batchsite.settings",
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        "DATA_DIR": str(DATA_DIR),
        # This checkout's code, whatever else the virtualenv has installed in editable mode.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }


def fresh_database() -> None:
    """Drops and recreates the benchmark database, then migrates it; empties the broker's db."""
    import psycopg
    import redis

    parts = urllib.parse.urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    admin_url = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    if FLUSH_BROKER and BROKER_URL.startswith("redis"):
        # Tasks left by an interrupted run would name batches of the dropped database.
        redis.Redis.from_url(BROKER_URL).flushdb()
    shutil.rmtree(DATA_DIR / "prometheus", ignore_errors=True)
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=environment(),
        check=True,
    )


_django_ready = False


def setup_django() -> None:
    global _django_ready
    if _django_ready:
        return
    os.environ.update(environment())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    _django_ready = True


def empty_twins() -> None:
    """Each measure starts on empty twin tables, so the sizes of earlier ones do not count."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE twins_ledgerentry, twins_identity, twins_twin")


def record(result: dict) -> dict:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result})
    print(line, flush=True)
    with RESULTS.open("a") as results:
        results.write(line + "\n")
    return result


def twin_file(lines: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"bench-twins-{lines}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("w") as out:
            for number in range(lines):
                out.write(json.dumps({"description": {"serial": number, "kind": "sensor"}}) + "\n")
        partial.rename(path)
    return path


def mixed_file(lines: int) -> Path:
    """A mixed batch (SPEC section 16) of `lines` lines, three per device (a twin with
    twin_file's description, its identity and a ledger entry: twins.examples.device_import);
    the last device is cut short when `lines` is not a multiple of three."""
    from twins.examples import device_import

    path = Path(tempfile.gettempdir()) / f"bench-mixed-{lines}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("w") as out:
            for device in range(-(-lines // 3)):
                for line in device_import(device)[: lines - 3 * device]:
                    out.write(json.dumps(line) + "\n")
        partial.rename(path)
    return path


# The batches `batch` times, by operation: the file each runs.
BATCH_FILES = {"create_twin": twin_file, "mixed": mixed_file}


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
                    "--queues=pipeline,chunks",
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
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def new_account(name: str):
    from permissions.services import account_bootstrap

    return account_bootstrap(name=f"{name} {uuid.uuid4().hex[:6]}")


def create_batch(path: Path, operation: str = "create_twin", created=None):
    from batches import services

    created = created or new_account("bench")
    [handler] = scale_bench.uploads_stored(created, path, 1)
    batch, _ = services.batch_create(
        account=created.account, user=created.account_user.user, handler=handler, operation=operation
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


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) so far of one process; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(memories) -> float:
    """CPU time (user + system) so far of the workers' process trees: on a shared machine a
    steadier measure of the work per line than the wall clock."""
    return sum(process_cpu_seconds(pid) for memory in memories for pid in memory.processes())


def timed_batch(path: Path, *, lines: int, workers: int, timeout: float, operation: str, created=None):
    """One batch on fresh worker processes: its per step timings and each worker's peak RSS."""
    from tests.support.process_memory import PeakMemory

    processes = start_workers(workers)
    memories = [PeakMemory(process.pid) for process in processes]
    cpu_before = cpu_seconds(memories)
    try:
        batch, _ = create_batch(path, operation, created)
        batch = wait_terminal(batch.pk, timeout=timeout)
        cpu = cpu_seconds(memories) - cpu_before
    finally:
        peaks = [round(memory.stop(), 1) for memory in memories]
        stop_workers(processes)
    phases = phase_seconds(batch)
    return {
        "operation": operation,
        "lines": lines,
        "workers": workers,
        "status": batch.status,
        "succeeded": batch.succeeded,
        **phases,
        "process_lines_per_s": per_second(lines, phases["process_s"]),
        "end_to_end_lines_per_s": per_second(lines, phases["total_s"]),
        "peak_rss_mib_per_worker": peaks,
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_us_per_line": round(cpu * 1e6 / lines, 1),
    }


def measure_batch(lines: int, workers: int, timeout: float, operation: str = "create_twin") -> dict:
    empty_twins()
    path = BATCH_FILES[operation](lines)
    result = timed_batch(path, lines=lines, workers=workers, timeout=timeout, operation=operation)
    return record({"bench": "batch", **result})


def run_batch(arguments) -> None:
    fresh_database()
    setup_django()
    measure_batch(arguments.lines, arguments.workers, arguments.timeout, arguments.operation)


class WebServer:
    """gunicorn as `make web` starts it, on the benchmark's database and broker unless `env` and
    `log_dir` name others; `threads` per worker as WEB_THREADS sets them unless given."""

    def __init__(
        self,
        web_workers: int,
        *,
        threads: int | None = None,
        env: dict | None = None,
        log_dir: Path = DATA_DIR,
    ):
        self.log_path = log_dir / "gunicorn.log"
        self.process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "batchsite.wsgi",
                "-c",
                "batchsite/gunicorn_conf.py",
                f"--bind=127.0.0.1:{PORT}",
                f"--workers={web_workers}",
                *([f"--threads={threads}"] if threads else []),
                "--access-logfile=/dev/null",
            ],
            cwd=ROOT,
            env=env or environment(),
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("w"),
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{PORT}"

    def __enter__(self):
        import requests

        for _ in range(150):
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.2)
        # __exit__ does not run when __enter__ raises: a server left running would hold the
        # port against the next run.
        self.__exit__()
        raise RuntimeError(f"gunicorn did not answer /healthz; see {self.log_path}")

    def __exit__(self, *exc_info):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def measure_single(seconds: float, threads: int, web_workers: int) -> dict:
    """Single POST /twins calls through gunicorn from client threads, as a client would."""
    import requests

    empty_twins()
    secret = new_account("bench single").secret
    with WebServer(web_workers) as server:
        counts = [0] * threads
        failures = [0] * threads
        deadline = time.monotonic() + seconds

        def client(index: int) -> None:
            session = requests.Session()
            session.headers["Authorization"] = secret
            serial = 0
            while time.monotonic() < deadline:
                response = session.post(
                    f"{server.base}/twins", json={"description": {"serial": serial, "kind": "sensor"}}
                )
                serial += 1
                if response.status_code == 201:
                    counts[index] += 1
                else:
                    failures[index] += 1

        started = time.monotonic()
        workers = [threading.Thread(target=client, args=(index,)) for index in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        elapsed = time.monotonic() - started
    return record(
        {
            "bench": "single_calls",
            "threads": threads,
            "web_workers": web_workers,
            "calls": sum(counts),
            "failures": sum(failures),
            "calls_per_s": round(sum(counts) / elapsed, 1),
        }
    )


def run_single(arguments) -> None:
    fresh_database()
    setup_django()
    measure_single(arguments.seconds, arguments.threads, arguments.web_workers)


def measure_copy(lines: int) -> dict:
    """Raw PostgreSQL COPY of rows equivalent to create_twin's, the floor for comparison."""
    import psycopg

    empty_twins()
    account = new_account("bench copy").account
    path = twin_file(lines)
    started = time.monotonic()
    with psycopg.connect(DATABASE_URL) as connection, connection.cursor() as cursor:
        now = time.strftime("%Y-%m-%d %H:%M:%S+00")
        with (
            cursor.copy(
                "COPY twins_twin (uuid, account_id, status, description, created_at, updated_at) FROM STDIN"
            ) as copy,
            path.open() as source,
        ):
            for line in source:
                description = json.dumps(json.loads(line)["description"])
                copy.write_row((uuid.uuid4(), account.pk, "alive", description, now, now))
    elapsed = time.monotonic() - started
    return record({"bench": "raw_copy", "lines": lines, "rows_per_s": round(lines / elapsed)})


def run_copy(arguments) -> None:
    fresh_database()
    setup_django()
    measure_copy(arguments.lines)


def measure_cancel(lines: int, workers: int, timeout: float) -> dict:
    """Time from a cancel request to `cancelled`, with the batch in full processing."""
    from batches import services
    from batches.models import Batch

    empty_twins()
    path = twin_file(lines)
    processes = start_workers(workers)
    try:
        batch, _ = create_batch(path)
        deadline = time.monotonic() + timeout
        while Batch.objects.get(pk=batch.pk).processed < lines // 10:
            if time.monotonic() > deadline:
                raise TimeoutError("processing did not get under way")
            time.sleep(0.05)
        asked = time.monotonic()
        services.batch_cancel(batch=batch)
        accepted = time.monotonic()
        batch = wait_terminal(batch.pk, timeout=timeout)
        finished = time.monotonic()
    finally:
        stop_workers(processes)
    return record(
        {
            "bench": "cancel",
            "lines": lines,
            "workers": workers,
            "status": batch.status,
            "processed_when_stopped": batch.processed,
            "cancel_request_s": round(accepted - asked, 3),
            "cancel_to_cancelled_s": round(finished - asked, 3),
        }
    )


def run_cancel(arguments) -> None:
    fresh_database()
    setup_django()
    measure_cancel(arguments.lines, arguments.workers, arguments.timeout)


def ledger_file(lines: int, twins: list[str]) -> Path:
    """add_twin_ledger_entry lines spread over existing twins, one new entry each."""
    path = Path(tempfile.gettempdir()) / f"bench-ledger-{os.getpid()}-{lines}.jsonl"
    with path.open("w") as out:
        for number in range(lines):
            twin = twins[number % len(twins)]
            entries = {f"k{number}": {"value": {"reading": number, "unit": "C"}, "visibility": None}}
            out.write(json.dumps({"twin": twin, "ledger": "personal", "entries": entries}) + "\n")
    return path


def twins_copy_for(account, count: int) -> list[str]:
    """`count` twins of the account, inserted with COPY (not timed)."""
    import psycopg

    made = [str(uuid.uuid4()) for _ in range(count)]
    now = time.strftime("%Y-%m-%d %H:%M:%S+00")
    with (
        psycopg.connect(DATABASE_URL) as connection,
        connection.cursor() as cursor,
        cursor.copy(
            "COPY twins_twin (uuid, account_id, status, description, created_at, updated_at) FROM STDIN"
        ) as copy,
    ):
        for twin in made:
            copy.write_row((twin, account.pk, "alive", '{"kind":"sensor"}', now, now))
    return made


def measure_update(lines: int, twins: int, workers: int, timeout: float) -> dict:
    """An add_twin_ledger_entry batch over existing twins: the write-heavy case, where each
    line locks and reads its twin and the ledger's keys before writing."""
    empty_twins()
    created = new_account("bench update")
    path = ledger_file(lines, twins_copy_for(created.account, twins))
    try:
        result = timed_batch(
            path,
            lines=lines,
            workers=workers,
            timeout=timeout,
            operation="add_twin_ledger_entry",
            created=created,
        )
    finally:
        path.unlink()
    return record({"bench": "update_heavy", "twins": twins, **result})


def run_update(arguments) -> None:
    fresh_database()
    setup_django()
    measure_update(arguments.lines, arguments.twins, arguments.workers, arguments.timeout)


def cycle_calls(base: str, handlers: list[str], batch: str | None) -> list[tuple[str, str, str, dict | None]]:
    """One client's requests in one cycle, as (endpoint, method, url, body): /healthz, a create
    while it has upload handlers left (taking one), a get of its last batch once it made one."""
    handler = handlers.pop() if handlers else None
    calls = [("healthz", "get", f"{base}/healthz", None)]
    if handler is not None:
        body = {"handler": handler, "operation": "create_twin"}
        calls.append(("create", "post", f"{base}/batches", body))
    if batch is not None:
        calls.append(("get", "get", f"{base}/batches/{batch}", None))
    return calls


def api_client(base: str, clients: list[tuple[str, list[str]]], seconds: float, out) -> None:
    """One client process: a thread per (secret, upload handlers) client, each cycling
    POST /batches, GET /batches/{batch} and GET /healthz for `seconds`; sends
    {endpoint: [latency, ...], "errors": n, "reasons": {...}} back."""
    import requests

    latencies = {"create": [], "get": [], "healthz": []}
    errors = [0]
    reasons: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(secret: str, handlers: list[str]) -> None:
        session = requests.Session()
        session.headers["Authorization"] = secret
        mine = {name: [] for name in latencies}
        failed = 0
        batch = None
        while time.monotonic() < deadline:
            for name, method, url, body in cycle_calls(base, handlers, batch):
                started = time.perf_counter()
                try:
                    response = session.request(method, url, json=body, timeout=30)
                except requests.RequestException as error:
                    failed += 1
                    reasons[type(error).__name__] = reasons.get(type(error).__name__, 0) + 1
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code >= 300:
                    failed += 1
                    reasons[str(response.status_code)] = reasons.get(str(response.status_code), 0) + 1
                    continue
                mine[name].append(elapsed)
                if name == "create":
                    batch = response.json()["batch"]
        with lock:
            for name, values in mine.items():
                latencies[name].extend(values)
            errors[0] += failed

    running = [threading.Thread(target=client, args=(secret, list(handlers))) for secret, handlers in clients]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    out.put({**latencies, "errors": errors[0], "reasons": reasons})


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_api(seconds: float, clients: int, web_workers: int, workers: int, accounts: int) -> dict:
    """Latency of POST /batches, GET /batches/{batch} and /healthz under `clients` concurrent
    clients (4 client processes, so the clients' own GIL does not time the server), spread
    over `accounts` accounts, with chunk workers running the batches the clients create. One
    account's creates take turns on its quota row (operating.services.usage_admit_batch), so
    with fewer accounts than clients POST /batches queues behind itself."""

    empty_twins()
    owners = [new_account(f"bench api {index}") for index in range(max(1, min(accounts, clients)))]
    small = scale_bench.small_batch_file("bench-api-batch.jsonl")
    # Stored uploads for every client, a batch taking one each.
    client_specs = []
    for index in range(clients):
        owner = owners[index % len(owners)]
        client_specs.append((owner.secret, scale_bench.uploads_stored(owner, small, int(seconds * 6))))
    processes = start_workers(workers)
    try:
        with WebServer(web_workers) as server:
            context = multiprocessing.get_context("spawn")
            out = context.Queue()
            groups = min(4, clients)
            children = [
                context.Process(
                    target=api_client, args=(server.base, client_specs[index::groups], seconds, out)
                )
                for index in range(groups)
            ]
            for child in children:
                child.start()
            gathered = [out.get(timeout=seconds + 120) for _ in children]
            for child in children:
                child.join()
    finally:
        stop_workers(processes)
    latencies = {name: [v for part in gathered for v in part[name]] for name in ("create", "get", "healthz")}
    result = {"bench": "api_latency", "clients": clients, "accounts": len(owners), "seconds": seconds}
    for name, values in latencies.items():
        result[f"{name}_calls"] = len(values)
        result[f"{name}_p50_ms"] = round(percentile(values, 0.5) * 1000, 1) if values else None
        result[f"{name}_p99_ms"] = round(percentile(values, 0.99) * 1000, 1) if values else None
    result["errors"] = sum(part["errors"] for part in gathered)
    reasons: dict[str, int] = {}
    for part in gathered:
        for reason, count in part["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    result["error_reasons"] = reasons
    return record(result)


def function_of(frame: str) -> str:
    """ "name (path/module.py:123)" as "name (module.py)": samples summed over its lines."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"


def summarise_profile(path: Path, top: int) -> dict:
    """py-spy's collapsed stacks ("frame;frame;... count") as the functions with the most
    samples on the stack (inclusive) and at its top (self), in % of the worker's samples
    spent inside the pipeline (idle waiting on the broker excluded)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for row in path.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if "batches/pipeline" not in stack:
            continue
        frames = [function_of(frame) for frame in stack.split(";") if not frame.startswith("process ")]
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples

    def ranked(counts):
        # Frames on (nearly) every sample are the worker's and the task's frame, not work.
        shown = {frame: samples for frame, samples in counts.items() if samples < 0.97 * total}
        best = sorted(shown.items(), key=lambda item: -item[1])[:top]
        return [(frame, round(100 * samples / total, 1)) for frame, samples in best]

    return {"samples": total, "inclusive": ranked(inclusive), "self": ranked(own)}


def run_profile(arguments) -> None:
    """One worker running a batch under py-spy; prints where its time goes."""
    fresh_database()
    setup_django()
    empty_twins()
    created = new_account("bench profile")
    if arguments.operation in BATCH_FILES:
        path = BATCH_FILES[arguments.operation](arguments.lines)
    else:
        path = ledger_file(arguments.lines, twins_copy_for(created.account, arguments.twins))
    processes = start_workers(1)
    output = DATA_DIR / f"profile-{arguments.operation}.txt"
    spy = subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            "--subprocesses",
            "--format=raw",
            f"--rate={arguments.rate}",
            f"--output={output}",
            f"--pid={processes[0].pid}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    try:
        batch, _ = create_batch(path, arguments.operation, created)
        batch = wait_terminal(batch.pk, timeout=arguments.timeout)
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        stop_workers(processes)
    summary = summarise_profile(output, arguments.top)
    record(
        {
            "bench": "profile",
            "operation": arguments.operation,
            "lines": arguments.lines,
            "status": batch.status,
            **phase_seconds(batch),
            "samples": summary["samples"],
        }
    )
    for kind in ("inclusive", "self"):
        print(f"\n{kind} (% of samples in the pipeline)")
        for frame, share in summary[kind]:
            print(f"{share:6.1f}  {frame}")


def run_api(arguments) -> None:
    fresh_database()
    setup_django()
    a = arguments
    measure_api(a.seconds, a.clients, a.web_workers, a.workers, a.accounts)


def claim_lookup() -> list[tuple]:
    """What a chunk worker asks before each claim (batches.pipeline.chunks.chunk_run_next):
    the batches past their deadline, then the first page of the batches in turn."""
    from itertools import islice

    from batches.models import Batch
    from batches.pipeline.chunks import BATCHES_IN_TURN_PAGE, CHUNKED, batches_in_turn
    from batches.pipeline.scheduling import is_overdue

    list(Batch.objects.filter(is_overdue(), status__in=CHUNKED).values_list("pk", flat=True))
    return list(islice(batches_in_turn(), BATCHES_IN_TURN_PAGE))


def timed(action, repetitions: int, *, prepare=lambda: None) -> dict:
    """`action` run `repetitions` times (`prepare` before each, untimed): p50 and p99 in ms,
    and the CPU µs per run of this process and of its PostgreSQL backend. On a shared machine
    the wall clock follows the load; the CPU time follows the work."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    prepare()
    action()
    timings = []
    cpu = 0.0
    for _ in range(repetitions):
        prepare()
        # Reading the backend's CPU costs this process CPU too: outside its own reading.
        backend_before = process_cpu_seconds(backend)
        cpu_before = time.process_time()
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
        cpu += time.process_time() - cpu_before
        cpu += process_cpu_seconds(backend) - backend_before
    return {
        "p50_ms": round(percentile(timings, 0.5), 3),
        "p99_ms": round(percentile(timings, 0.99), 3),
        "cpu_us": round(cpu * 1e6 / repetitions),
    }


def sweep_timed(repetitions: int, running_id) -> tuple[dict, int]:
    """`repetitions` sweeps (driver.sweep, its turn forced each time) timed, and how many
    batches they asked for. The running stand-in's heartbeat is kept fresh, so it is never
    found stalled."""
    from batches.models import Batch, MaintenanceRun
    from batches.pipeline import driver
    from batchsite.clock import DatabaseNow

    asked = []
    enqueue = driver.Enqueue(advance=asked.append, run_chunks=lambda: None)

    def prepare() -> None:
        MaintenanceRun.objects.filter(name="sweep").delete()
        Batch.objects.filter(pk=running_id).update(heartbeat_at=DatabaseNow())

    timings = timed(lambda: driver.sweep(enqueue), repetitions, prepare=prepare)
    return timings, len(asked)


def batch_rows_read(sql: str, params=None) -> tuple[int, list[str]]:
    """EXPLAIN ANALYZE of a query: the rows it read from the batch table (returned or filtered
    out, over every loop) and each scan of it, e.g. "Index Scan using batch_deadline: 0"."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    scans = []

    def walk(node: dict) -> None:
        children = node.get("Plans", [])
        if node.get("Relation Name") == "batches_batch":
            per_loop = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            read = round(per_loop * node["Actual Loops"])
            index = node.get("Index Name") or next(
                (child["Index Name"] for child in children if "Index Name" in child), None
            )
            scans.append((f"{node['Node Type']} using {index}" if index else node["Node Type"], read))
        for child in children:
            walk(child)

    walk(plan[0]["Plan"])
    return sum(read for _, read in scans), [f"{how}: {read}" for how, read in scans]


def queryset_rows_read(queryset) -> tuple[int, list[str]]:
    from django.core.exceptions import EmptyResultSet

    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:
        return 0, ["no query: nothing can match"]
    return batch_rows_read(sql, params)


def sweep_rows_read() -> list[tuple[int, list[str], str]]:
    """Each query of one sweep that reads the batch table: rows read, scans, its condition."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from batches.models import MaintenanceRun
    from batches.pipeline import driver

    MaintenanceRun.objects.filter(name="sweep").delete()
    with CaptureQueriesContext(connection) as captured:
        driver.sweep(driver.Enqueue(advance=lambda batch_id: None, run_chunks=lambda: None))
    reads = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if sql.startswith("SELECT") and 'FROM "batches_batch"' in sql:
            read, scans = batch_rows_read(sql)
            condition = sql.partition(" WHERE ")[2].replace('"batches_batch".', "")
            reads.append((read, scans, condition[:150]))
    return reads


def in_process_costs(repetitions: int, sweeps: int) -> dict:
    """A chunk worker's lookup before a claim and one sweep, timed with one running batch (a
    processing row of its own account, removed afterwards) beside whatever the database holds;
    the batch rows their queries read, and the sweep's batches_due query's."""
    from batches.models import Batch, BatchStatus
    from batches.pipeline import scheduling
    from batches.pipeline.chunks import CHUNKED

    created = new_account("bench running")
    running = Batch.objects.create(
        account=created.account,
        created_by=created.account_user,
        operation="create_twin",
        status=BatchStatus.PROCESSING,
        total=1000,
    )
    try:
        if running.pk not in [batch_id for batch_id, _ in claim_lookup()]:
            raise RuntimeError("the running stand-in is not among the batches in turn")
        claim = timed(claim_lookup, repetitions)
        sweep, asked = sweep_timed(sweeps, running.pk)
        chunked = Batch.objects.filter(status__in=CHUNKED)
        claim_reads = [
            queryset_rows_read(chunked.filter(scheduling.is_overdue()).values_list("pk")),
            queryset_rows_read(chunked.values_list("pk", "account_id", "processed", "status", "priority")),
        ]
        due_reads = [queryset_rows_read(due.values_list("pk")) for due in scheduling.batches_due()]
        due_read = sum(read for read, _ in due_reads)
        due_scans = [scan for _, scans in due_reads for scan in scans]
        sweep_reads = sweep_rows_read()
    finally:
        Batch.objects.filter(pk=running.pk).delete()
    return {
        **{f"claim_{key}": value for key, value in claim.items()},
        **{f"sweep_{key}": value for key, value in sweep.items()},
        "sweep_asked": asked,
        "claim_rows_read": sum(read for read, _ in claim_reads),
        "claim_scans": [scan for _, scans in claim_reads for scan in scans],
        "due_rows_read": due_read,
        "due_scans": due_scans,
        "sweep_rows_read": sum(read for read, _, _ in sweep_reads),
        "sweep_reads": [[read, scans, condition] for read, scans, condition in sweep_reads],
    }


def batch_clones(template, count: int) -> list:
    """`count` copies of the batch's row, each under a fresh uuid, in one statement (building
    ten thousand rows through the ORM costs seconds of Python)."""
    from django.db import connection

    from batches.models import Batch

    columns = ", ".join(f'"{field.column}"' for field in Batch._meta.concrete_fields if not field.primary_key)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO batches_batch ("uuid", {columns}) SELECT gen_random_uuid(), {columns}'
            ' FROM batches_batch, generate_series(1, %s) WHERE "uuid" = %s RETURNING "uuid"',
            [count, template.pk],
        )
        return [template.pk] + [row[0] for row in cursor.fetchall()]


def waiting_batches_insert(scheduled: int, waiting: int) -> None:
    """`scheduled` new batches of one account, not_before a day ahead (deadline a day later),
    and `waiting` new ones each waiting on one of them to complete, made as batch_create makes
    a batch (without upload or history: they never start), then analyzed."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from batches.models import Batch, BatchDependency, DependencyRequirement

    created = new_account("bench scheduled")
    fields = {"account": created.account, "created_by": created.account_user, "operation": "create_twin"}
    later = timezone.now() + timedelta(days=1)
    template = Batch.objects.create(**fields, not_before=later, deadline_at=later + timedelta(days=1))
    parents = batch_clones(template, scheduled - 1)
    if waiting:
        children = batch_clones(Batch.objects.create(**fields), waiting - 1)
        BatchDependency.objects.bulk_create(
            BatchDependency(
                batch_id=child, parent_id=parent, parent_uuid=parent, require=DependencyRequirement.COMPLETED
            )
            for child, parent in zip(children, parents, strict=False)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE batches_batch")
        cursor.execute("ANALYZE batches_batchdependency")


def measure_scheduled(
    scheduled: int, waiting: int, lines: int, workers: int, repetitions: int, sweeps: int, timeout: float
) -> dict:
    """Issue "Time and order": waiting batches cost nothing. A chunk worker's lookup before each
    claim, a sweep, and a create_twin batch on real workers, first with no waiting batch, then
    with `scheduled` batches scheduled a day ahead and `waiting` more waiting on a parent; and
    how many rows of the batch table the claim's and the sweep's queries read (EXPLAIN ANALYZE)."""
    path = twin_file(lines)
    empty_twins()
    before_run = timed_batch(path, lines=lines, workers=workers, timeout=timeout, operation="create_twin")
    # Timed just before and just after the insert, so the machine's load changes least between.
    before = in_process_costs(repetitions, sweeps)
    started = time.monotonic()
    waiting_batches_insert(scheduled, waiting)
    insert_s = round(time.monotonic() - started, 2)
    after = in_process_costs(repetitions, sweeps)
    empty_twins()
    after_run = timed_batch(path, lines=lines, workers=workers, timeout=timeout, operation="create_twin")
    result = {
        "bench": "scheduled",
        "scheduled_batches": scheduled,
        "waiting_batches": waiting,
        "insert_s": insert_s,
        "lines": lines,
        "workers": workers,
        "repetitions": repetitions,
        "sweeps": sweeps,
    }
    for name, costs, run in (("before", before, before_run), ("after", after, after_run)):
        result.update({f"{name}_{key}": value for key, value in costs.items()})
        result[f"{name}_status"] = run["status"]
        result[f"{name}_process_lines_per_s"] = run["process_lines_per_s"]
        result[f"{name}_lines_per_s"] = run["end_to_end_lines_per_s"]
        result[f"{name}_cpu_us_per_line"] = run["worker_cpu_us_per_line"]
    result["claim_vs_empty"] = ratio(after["claim_cpu_us"], before["claim_cpu_us"])
    result["sweep_vs_empty"] = ratio(after["sweep_cpu_us"], before["sweep_cpu_us"])
    result["process_vs_empty"] = ratio(after_run["process_lines_per_s"], before_run["process_lines_per_s"])
    # Steadier than lines/s on a shared machine.
    cpu_per_line = (after_run["worker_cpu_us_per_line"], before_run["worker_cpu_us_per_line"])
    result["cpu_per_line_vs_empty"] = ratio(*cpu_per_line)
    return record(result)


def run_scheduled(arguments) -> None:
    """The measure, then the batch rows each of the last sweep's queries read."""
    fresh_database()
    setup_django()
    a = arguments
    result = measure_scheduled(a.batches, a.waiting, a.lines, a.workers, a.repetitions, a.sweeps, a.timeout)
    print(f"\nbatch rows read by the sweep's queries, with {a.batches:,} + {a.waiting:,} waiting batches")
    for read, scans, condition in result["after_sweep_reads"]:
        print(f"{read:8,}  {'; '.join(scans)}\n          WHERE {condition}")


def measure_scale(finished: int, active: int, accounts: int, repetitions: int) -> dict:
    """Issue 30: a claim, a sweep and the API with 10 batches and with `finished` + `active`
    over `accounts` accounts (bench/scale_bench.py), and one retention pass at that size."""
    result = scale_bench.measure(
        sys.modules[__name__], finished=finished, active=active, accounts=accounts, repetitions=repetitions
    )
    return record({"bench": "scale", **result})


def run_scale(arguments) -> None:
    fresh_database()
    setup_django()
    a = arguments
    measure_scale(a.finished, a.active, a.accounts, a.repetitions)


TARGETS = (
    # (ratio key, comparison, target, what it says)
    ("two_workers_vs_copy", ">=", 0.5, "2 workers end to end / raw COPY"),
    ("two_workers_vs_single", ">=", 150, "2 workers end to end / single calls"),
    ("one_worker_vs_copy", ">=", 0.3, "1 worker end to end / raw COPY"),
    ("two_vs_one_worker", ">=", 1.85, "2 workers / 1 worker, end to end"),
    ("memory_big_vs_small", "<=", 1.2, "worker peak RSS, big / small batch"),
    ("memory_big_mib", "<", 300, "worker peak RSS at the big batch, MiB"),
    ("cancel_s", "<=", 1.0, "cancel request to cancelled, s"),
    ("create_vs_healthz_p50", "<=", 3.0, "POST /batches p50 / /healthz p50 under load"),
    ("create_vs_healthz_p99", "<=", 1.5, "POST /batches p99 / /healthz p99 under load"),
    ("update_vs_single", ">=", 100, "update-heavy batch / single calls"),
    ("scheduled_claim_vs_empty", "<=", 1.2, "claim lookup CPU, 10,000 waiting / none"),
    ("mixed_vs_plain", ">=", 0.5, "mixed / create_twin, 2 workers end to end"),
    ("scale_claim_ratio", "<=", 2, "chunk claim, 1,010,000 batches / 10"),
    ("scale_sweep_ratio", "<=", 2, "sweep, 1,010,000 batches / 10"),
    ("scale_list_ratio", "<=", 2, "GET /batches (worse page), 1,010,000 / 10"),
    ("scale_create_ratio", "<=", 2, "POST /batches, 1,010,000 batches / 10"),
    ("scale_usage_ratio", "<=", 2, "GET /usage, 1,010,000 batches / 10"),
)


def ratio(numerator, denominator):
    return round(numerator / denominator, 3) if numerator and denominator else None


# The `scheduled` measure's values that `all` reports, for each of its two runs.
SCHEDULED_KEYS = (
    "claim_p50_ms",
    "claim_p99_ms",
    "claim_cpu_us",
    "claim_rows_read",
    "sweep_p50_ms",
    "sweep_cpu_us",
    "sweep_rows_read",
    "sweep_asked",
    "due_rows_read",
    "process_lines_per_s",
    "cpu_us_per_line",
    "status",
)
# The `scale` measure's timings that `all` reports, each with 10 batches and at scale.
SCALE_TIMINGS = ("claim_ms", "sweep_ms", "list_ms", "list_deep_ms", "create_ms", "usage_ms")


def run_all(arguments) -> None:
    """The whole set in one run, then a table and one key=value line with every measure and
    ratio. Sizes come from the flags; the defaults finish within 10 minutes on 2 cores."""
    started = time.monotonic()
    fresh_database()
    setup_django()
    lines, small = arguments.lines, arguments.memory_small_lines
    single = measure_single(arguments.single_seconds, arguments.threads, arguments.web_workers)
    copy = measure_copy(lines)
    one = measure_batch(lines, 1, arguments.timeout)
    two = measure_batch(lines, 2, arguments.timeout)
    mixed = measure_batch(lines, 2, arguments.timeout, "mixed")
    small_run = measure_batch(small, 1, arguments.timeout)
    cancel = measure_cancel(arguments.cancel_lines or lines, 2, arguments.timeout)
    update = measure_update(arguments.update_lines, arguments.update_twins, 2, arguments.timeout)
    a = arguments
    api = measure_api(a.api_seconds, a.clients, a.web_workers, 2, a.api_accounts)
    # Next to last: its waiting batches stay in the database (the scale measure empties it).
    scheduled = measure_scheduled(
        a.scheduled_batches,
        a.scheduled_waiting,
        a.scheduled_lines or min(lines, 200_000),
        2,
        a.scheduled_repetitions,
        a.scheduled_sweeps,
        a.timeout,
    )
    scale = measure_scale(a.scale_finished, a.scale_active, a.scale_accounts, a.scale_repetitions)
    measures = {
        "single_calls_per_s": single["calls_per_s"],
        "copy_rows_per_s": copy["rows_per_s"],
        "lines": lines,
    }
    for name, run in (("w1", one), ("w2", two), ("mixed", mixed)):
        for key in ("copy_s", "validate_s", "process_s", "write_results_s", "total_s"):
            measures[f"{name}_{key}"] = run[key]
        measures[f"{name}_lines_per_s"] = run["end_to_end_lines_per_s"]
        measures[f"{name}_process_lines_per_s"] = run["process_lines_per_s"]
        measures[f"{name}_status"] = run["status"]
        measures[f"{name}_cpu_us_per_line"] = run["worker_cpu_us_per_line"]
    measures["memory_small_lines"] = small
    measures["memory_small_mib"] = max(small_run["peak_rss_mib_per_worker"])
    measures["memory_big_mib"] = max(one["peak_rss_mib_per_worker"])
    measures["cancel_s"] = cancel["cancel_to_cancelled_s"]
    measures["update_lines"] = arguments.update_lines
    measures["update_lines_per_s"] = update["end_to_end_lines_per_s"]
    measures["update_process_lines_per_s"] = update["process_lines_per_s"]
    measures["update_status"] = update["status"]
    measures["update_cpu_us_per_line"] = update["worker_cpu_us_per_line"]
    for name in ("create", "get", "healthz"):
        measures[f"api_{name}_p50_ms"] = api[f"{name}_p50_ms"]
        measures[f"api_{name}_p99_ms"] = api[f"{name}_p99_ms"]
    measures["api_errors"] = api["errors"]
    measures["scheduled_batches"] = scheduled["scheduled_batches"]
    measures["scheduled_waiting"] = scheduled["waiting_batches"]
    measures["scheduled_lines"] = scheduled["lines"]
    for name in ("before", "after"):
        for key in SCHEDULED_KEYS:
            measures[f"scheduled_{name}_{key}"] = scheduled[f"{name}_{key}"]
    measures["scheduled_sweep_vs_empty"] = scheduled["sweep_vs_empty"]
    measures["scheduled_process_vs_empty"] = scheduled["process_vs_empty"]
    measures["scheduled_cpu_per_line_vs_empty"] = scheduled["cpu_per_line_vs_empty"]
    measures["scale_batches"] = scale["finished"] + scale["active"]
    measures["scale_accounts"] = scale["accounts"]
    measures["scale_fill_s"] = scale["fill_s"]
    for name in ("small", "big"):
        for key in SCALE_TIMINGS:
            measures[f"scale_{name}_{key}"] = scale[f"{name}_{key}"]
    for key in ("purge_s", "purge_batches", "purge_expired"):
        measures[f"scale_{key}"] = scale[key]
    ratios = {
        "two_workers_vs_copy": ratio(measures["w2_lines_per_s"], measures["copy_rows_per_s"]),
        "two_workers_vs_single": ratio(measures["w2_lines_per_s"], measures["single_calls_per_s"]),
        "one_worker_vs_copy": ratio(measures["w1_lines_per_s"], measures["copy_rows_per_s"]),
        "two_vs_one_worker": ratio(measures["w2_lines_per_s"], measures["w1_lines_per_s"]),
        "memory_big_vs_small": ratio(measures["memory_big_mib"], measures["memory_small_mib"]),
        "memory_big_mib": measures["memory_big_mib"],
        "cancel_s": measures["cancel_s"],
        "create_vs_healthz_p50": ratio(measures["api_create_p50_ms"], measures["api_healthz_p50_ms"]),
        "create_vs_healthz_p99": ratio(measures["api_create_p99_ms"], measures["api_healthz_p99_ms"]),
        "update_vs_single": ratio(measures["update_lines_per_s"], measures["single_calls_per_s"]),
        "scheduled_claim_vs_empty": scheduled["claim_vs_empty"],
        "mixed_vs_plain": ratio(measures["mixed_lines_per_s"], measures["w2_lines_per_s"]),
        **{
            f"scale_{name}_ratio": scale[f"{name}_ratio"]
            for name in ("claim", "sweep", "list", "create", "usage")
        },
    }
    print_table(measures, ratios)
    elapsed = round(time.monotonic() - started)
    record({"bench": "all", "elapsed_s": elapsed, **measures, **ratios})
    met = {key: target_met(ratios[key], comparison, target) for key, comparison, target, _ in TARGETS}
    line = {**measures, **ratios, "targets_met": sum(met.values()), "targets": len(met), "elapsed_s": elapsed}
    print(" ".join(f"{key}={value}" for key, value in line.items()), flush=True)


def target_met(value, comparison: str, target: float) -> bool:
    if value is None:
        return False
    return {">=": value >= target, "<=": value <= target, "<": value < target}[comparison]


def print_table(measures: dict, ratios: dict) -> None:
    m = measures
    rows = [
        ("single POST /twins", f"{m['single_calls_per_s']} calls/s"),
        ("raw COPY", f"{m['copy_rows_per_s']:,} rows/s"),
    ]
    devices = f"{m['lines']:,} lines ({-(-m['lines'] // 3):,} devices)"
    for name, label in (
        ("w1", f"create_twin {m['lines']:,} lines, 1 worker"),
        ("w2", f"create_twin {m['lines']:,} lines, 2 workers"),
        ("mixed", f"mixed {devices}, 2 workers"),
    ):
        rows.append(
            (
                label,
                f"{m[f'{name}_lines_per_s'] or 0:,} lines/s end to end ({m[f'{name}_total_s']} s: copy "
                f"{m[f'{name}_copy_s']}, validate {m[f'{name}_validate_s']}, process "
                f"{m[f'{name}_process_s']}, results {m[f'{name}_write_results_s']}) {m[f'{name}_status']}",
            )
        )
    rows += [
        (
            f"worker peak RSS {m['memory_small_lines']:,} -> {m['lines']:,} lines",
            f"{m['memory_small_mib']} -> {m['memory_big_mib']} MiB",
        ),
        ("cancel to cancelled (2 workers, at 10 %)", f"{m['cancel_s']} s"),
        (
            f"add_twin_ledger_entry {m['update_lines']:,} lines, 2 workers",
            f"{m['update_lines_per_s'] or 0:,} lines/s end to end {m['update_status']}",
        ),
    ]
    endpoints = (("create", "POST /batches"), ("get", "GET /batches/{batch}"), ("healthz", "/healthz"))
    for name, label in endpoints:
        rows.append(
            (f"{label}, 32 clients", f"p50 {m[f'api_{name}_p50_ms']} ms, p99 {m[f'api_{name}_p99_ms']} ms")
        )
    waiting = f"{m['scheduled_batches']:,} scheduled + {m['scheduled_waiting']:,} waiting batches"
    rows += [
        (
            f"claim lookup, none -> {waiting}",
            f"p50 {m['scheduled_before_claim_p50_ms']} -> {m['scheduled_after_claim_p50_ms']} ms, "
            f"p99 {m['scheduled_before_claim_p99_ms']} -> {m['scheduled_after_claim_p99_ms']} ms, "
            f"CPU {m['scheduled_before_claim_cpu_us']} -> {m['scheduled_after_claim_cpu_us']} µs, "
            f"batch rows read {m['scheduled_before_claim_rows_read']} -> "
            f"{m['scheduled_after_claim_rows_read']}",
        ),
        (
            f"sweep, none -> {waiting}",
            f"p50 {m['scheduled_before_sweep_p50_ms']} -> {m['scheduled_after_sweep_p50_ms']} ms, "
            f"CPU {m['scheduled_before_sweep_cpu_us']:,} -> {m['scheduled_after_sweep_cpu_us']:,} µs, "
            f"batch rows read {m['scheduled_before_sweep_rows_read']:,} -> "
            f"{m['scheduled_after_sweep_rows_read']:,}, asked for {m['scheduled_after_sweep_asked']}",
        ),
        (
            f"create_twin {m['scheduled_lines']:,} lines, 2 workers, none -> {waiting}",
            f"{m['scheduled_before_process_lines_per_s'] or 0:,} -> "
            f"{m['scheduled_after_process_lines_per_s'] or 0:,} lines/s processing, worker CPU "
            f"{m['scheduled_before_cpu_us_per_line']} -> {m['scheduled_after_cpu_us_per_line']} µs/line, "
            f"{m['scheduled_before_status']}, {m['scheduled_after_status']}",
        ),
    ]
    scale = f"10 -> {m['scale_batches']:,} batches ({m['scale_accounts']:,} accounts)"
    for key, label in (
        ("claim_ms", "chunk claim"),
        ("sweep_ms", "sweep"),
        ("list_ms", "GET /batches, first page"),
        ("list_deep_ms", "GET /batches, deep cursor page"),
        ("create_ms", "POST /batches"),
        ("usage_ms", "GET /usage"),
    ):
        rows.append((f"{label}, {scale}", f"p50 {m[f'scale_small_{key}']} -> {m[f'scale_big_{key}']} ms"))
    rows.append(
        (
            f"retention pass at {m['scale_batches']:,} batches",
            f"{m['scale_purge_s']} s, removed {m['scale_purge_batches']:,} of "
            f"{m['scale_purge_expired']:,} batches past retention",
        )
    )
    width = max(len(label) for label, _ in rows)
    print()
    print(f"{'measure'.ljust(width)}  result")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    print()
    print(f"{'target'.ljust(width)}  value   goal    met")
    for key, comparison, target, label in TARGETS:
        value = ratios[key]
        met = target_met(value, comparison, target)
        print(f"{label.ljust(width)}  {value!s:7} {comparison}{target!s:6} {met}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="overrides BENCH_DATABASE_URL")
    parser.add_argument("--broker-url", help="overrides BENCH_BROKER_URL")
    parser.add_argument("--keep-broker", action="store_true", help="do not flush the broker's Redis db")
    commands = parser.add_subparsers(dest="command", required=True)
    everything = commands.add_parser("all", help="the whole set: a table and one key=value line")
    everything.add_argument("--lines", type=int, default=1_000_000, help="create_twin batches and COPY")
    everything.add_argument("--memory-small-lines", type=int, default=100_000)
    everything.add_argument("--cancel-lines", type=int, help="the batch cancelled at 10 %% (default --lines)")
    everything.add_argument("--update-lines", type=int, default=1_000_000)
    everything.add_argument("--update-twins", type=int, default=10_000)
    everything.add_argument("--single-seconds", type=float, default=10)
    everything.add_argument("--api-seconds", type=float, default=10)
    everything.add_argument("--clients", type=int, default=32)
    everything.add_argument("--api-accounts", type=int, default=32, help="accounts the API clients use")
    everything.add_argument("--threads", type=int, default=8, help="single-call client threads")
    everything.add_argument("--web-workers", type=int, default=4)
    everything.add_argument("--timeout", type=float, default=3600)
    batch = commands.add_parser("batch", help="one batch, timed per phase, with worker memory")
    batch.add_argument("--operation", default="create_twin", choices=list(BATCH_FILES))
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
    update = commands.add_parser("update", help="an add_twin_ledger_entry batch on existing twins")
    update.add_argument("--lines", type=int, default=1_000_000)
    update.add_argument("--twins", type=int, default=10_000)
    update.add_argument("--workers", type=int, default=2)
    update.add_argument("--timeout", type=float, default=3600)
    api = commands.add_parser("api", help="API latency under concurrent clients")
    api.add_argument("--seconds", type=float, default=10)
    api.add_argument("--clients", type=int, default=32)
    api.add_argument("--web-workers", type=int, default=4)
    api.add_argument("--workers", type=int, default=2)
    api.add_argument("--accounts", type=int, default=32, help="accounts the clients use")
    everything.add_argument("--scheduled-batches", type=int, default=10_000)
    everything.add_argument("--scheduled-waiting", type=int, default=1_000)
    everything.add_argument(
        "--scheduled-lines", type=int, help="the batch timed beside them (default --lines, at most 200,000)"
    )
    everything.add_argument("--scheduled-repetitions", type=int, default=500)
    everything.add_argument("--scheduled-sweeps", type=int, default=20)
    scheduled = commands.add_parser(
        "scheduled", help="claims, sweeps and a batch with and without 10,000 waiting batches"
    )
    scheduled.add_argument("--batches", type=int, default=10_000, help="scheduled a day ahead")
    scheduled.add_argument("--waiting", type=int, default=1_000, help="waiting on a scheduled parent")
    scheduled.add_argument("--lines", type=int, default=200_000, help="the create_twin batch")
    scheduled.add_argument("--workers", type=int, default=2)
    scheduled.add_argument("--repetitions", type=int, default=500, help="claim lookups timed")
    scheduled.add_argument("--sweeps", type=int, default=20, help="sweeps timed")
    scheduled.add_argument("--timeout", type=float, default=3600)
    everything.add_argument("--scale-finished", type=int, default=1_000_000)
    everything.add_argument("--scale-active", type=int, default=10_000)
    everything.add_argument("--scale-accounts", type=int, default=1_000)
    everything.add_argument("--scale-repetitions", type=int, default=20)
    scale = commands.add_parser(
        "scale", help="claim, sweep and API with 10 batches and with 1,010,000; a retention pass"
    )
    scale.add_argument("--finished", type=int, default=1_000_000, help="finished batches, over 35 days")
    scale.add_argument("--active", type=int, default=10_000, help="waiting or running (a tenth running)")
    scale.add_argument("--accounts", type=int, default=1_000)
    scale.add_argument("--repetitions", type=int, default=20, help="runs timed of each, after a warm-up")
    profile = commands.add_parser("profile", help="one worker running a batch under py-spy")
    profile.add_argument(
        "--operation", default="create_twin", choices=["create_twin", "add_twin_ledger_entry", "mixed"]
    )
    profile.add_argument("--lines", type=int, default=100_000)
    profile.add_argument("--twins", type=int, default=10_000)
    profile.add_argument("--rate", type=int, default=200)
    profile.add_argument("--top", type=int, default=25)
    profile.add_argument("--timeout", type=float, default=3600)
    arguments = parser.parse_args()
    global DATABASE_URL, BROKER_URL, FLUSH_BROKER
    DATABASE_URL = arguments.database_url or DATABASE_URL
    BROKER_URL = arguments.broker_url or BROKER_URL
    FLUSH_BROKER = not arguments.keep_broker
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    runs = {
        "all": run_all,
        "batch": run_batch,
        "single": run_single,
        "copy": run_copy,
        "cancel": run_cancel,
        "update": run_update,
        "api": run_api,
        "profile": run_profile,
        "scheduled": run_scheduled,
        "scale": run_scale,
    }
    runs[arguments.command](arguments)


if __name__ == "__main__":
    main()
