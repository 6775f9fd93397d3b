"""Scale (issue 30, "a control plane that stays flat as work grows"): what a worker, the sweep
and the API cost with 10 batches, then with 1,000,000 finished batches and 10,000 waiting or
running ones across 1,000 accounts; and one retention pass at that size.

The rows are made in SQL (INSERT ... SELECT from generate_series), with no files: a finished
batch's files are never read by what is timed here, and the purge removes what exists. Each
setup is vacuumed and analyzed before it is timed, as autovacuum keeps a live database.
`measure` takes the harness (bench/pipeline_bench.py) for its helpers and its settings.
"""

import statistics
import tempfile
import time
from pathlib import Path

# A page of this many batches on both sizes, so that the pages compare.
PAGE = 5
# How far into the busy account's history the deep page starts, as a share of its batches.
DEEP = 0.9


def median_ms(action, repetitions: int, *, prepare=lambda: None) -> float:
    """The median wall time of `action` over `repetitions` runs after one warm-up run;
    `prepare` runs before each, untimed."""
    prepare()
    action()
    timings = []
    for _ in range(repetitions):
        prepare()
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 3)


def tables_empty() -> None:
    """The measure starts with no batch and no usage row, whatever earlier measures left."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE batches_batch, operating_usagehour, batches_maintenancerun CASCADE")


def accounts_insert(count: int) -> list:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO permissions_account (uuid, name, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'scale ' || n, now(), now() FROM generate_series(1, %s) n"
            " RETURNING uuid",
            [count],
        )
        return [row[0] for row in cursor.fetchall()]


def batches_insert(template, count: int, values: dict[str, str], params: dict) -> None:
    """`count` batches, each the template's row with `values` (column: SQL expression of the
    row's number `n` and of `params`) in place of its own."""
    from django.db import connection

    from batches.models import Batch

    columns = [field.column for field in Batch._meta.concrete_fields if not field.primary_key]
    names = ", ".join(f'"{column}"' for column in columns)
    chosen = ", ".join(values.get(column, f't."{column}"') for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO batches_batch ("uuid", {names})'
            f" SELECT gen_random_uuid(), {chosen} FROM batches_batch t, generate_series(1, %(count)s) n"
            " WHERE t.uuid = %(template)s",
            {**params, "count": count, "template": template.pk},
        )


def batches_fill(busy, accounts: list, *, finished: int, waiting: int, running: int) -> None:
    """`finished` batches over the last 35 days (every tenth of the busy account, the others
    spread over `accounts`; the oldest past their results' retention, every tenth with a
    deadline), `waiting` ones scheduled a day ahead and `running` ones half processed, with
    four chunks each of which two are still to run."""
    from django.conf import settings
    from django.db import connection

    from batches.models import Batch, BatchStatus

    template = Batch.objects.create(
        account=busy.account,
        created_by=busy.account_user,
        operation="create_twin",
        status=BatchStatus.COMPLETED,
    )
    params = {
        "busy": busy.account.pk,
        "accounts": accounts,
        "retention": f"{settings.RESULTS_RETENTION_DAYS} days",
    }
    spread = "(%(accounts)s::uuid[])[1 + n %% cardinality(%(accounts)s::uuid[])]"
    created = "now() - n * interval '3 seconds'"
    batches_insert(
        template,
        finished,
        {
            "account_id": f"CASE WHEN n %% 10 = 0 THEN %(busy)s::uuid ELSE {spread} END",
            "created_by_id": "CASE WHEN n %% 10 = 0 THEN t.created_by_id END",
            "status": "(ARRAY['completed', 'completed', 'completed', 'completed', 'completed', 'cancelled',"
            " 'validation_failed'])[1 + n %% 7]",
            "created_at": created,
            "updated_at": f"{created} + interval '1 minute'",
            "heartbeat_at": f"{created} + interval '1 minute'",
            "results_expire_at": f"{created} + interval '1 minute' + %(retention)s::interval",
            "deadline_at": f"CASE WHEN n %% 10 = 5 THEN {created} + interval '1 day' END",
            "total": "1000",
            "processed": "1000",
            "succeeded": "1000",
        },
        params,
    )
    batches_insert(
        template,
        waiting,
        {
            "account_id": spread,
            "status": "'new'",
            "created_at": "now() - n * interval '1 second'",
            "updated_at": "now() - n * interval '1 second'",
            "not_before": "now() + interval '1 day'",
        },
        params,
    )
    batches_insert(
        template,
        running,
        {
            "account_id": spread,
            "status": "'processing'",
            "created_at": "now() - n * interval '1 second'",
            "updated_at": "now()",
            "heartbeat_at": "now()",
            "total": "4000",
            "processed": "2000",
            "succeeded": "2000",
        },
        params,
    )
    Batch.objects.filter(pk=template.pk).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO batches_chunk (batch_id, "index", first_line, last_line, start_offset, end_offset,'
            " line_count, validated, prepared, invalid, unreadable, done, executed_count, succeeded, failed,"
            " results, worker, lease_owner, waits)"
            " SELECT b.uuid, i, i * 1000 + 1, i * 1000 + 1000, i * 100000, i * 100000 + 100000, 1000, true,"
            " '', 0, '', i < 2, CASE WHEN i < 2 THEN 1000 ELSE 0 END, CASE WHEN i < 2 THEN 1000 ELSE 0 END,"
            " 0, '', '', '', 0"
            " FROM batches_batch b, generate_series(0, 3) i WHERE b.status = 'processing'"
            " AND NOT EXISTS (SELECT 1 FROM batches_chunk c WHERE c.batch_id = b.uuid)"
        )


def usage_fill(accounts: list) -> None:
    """A week of hourly usage rows for each account."""
    from django.db import connection

    from operating.models import NO_USER

    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO operating_usagehour (account_id, "user", hour, batches_created, batch_lines,'
            " batch_lines_failed, upload_bytes, api_calls)"
            " SELECT a, %s, date_trunc('hour', now()) - h * interval '1 hour', 10, 10000, 10, 100000, 100"
            " FROM unnest(%s::uuid[]) a, generate_series(1, 167) h",
            [NO_USER, accounts],
        )


def tables_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("batches_batch", "batches_chunk", "permissions_account", "operating_usagehour"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        # The fill's pages written out now, not by a checkpoint while the costs are timed.
        cursor.execute("CHECKPOINT")


def claim_next(held: list) -> None:
    """What a chunk worker does before it runs a chunk (batches.pipeline.chunks.chunk_run_next):
    the batches past their deadline, the batches in turn, and the claim of the first one with a
    chunk free. The lease is kept in `held`, for the next run's preparation to release."""
    from batches.models import Batch, BatchStatus
    from batches.pipeline.chunk_lease import ChunkLease
    from batches.pipeline.chunks import CHECKED_CHUNKS_PER_CLAIM, CHUNKED, batches_in_turn
    from batches.pipeline.scheduling import is_overdue

    list(Batch.objects.filter(is_overdue(), status__in=CHUNKED).values_list("pk", flat=True))
    for batch_id, status in batches_in_turn():
        validating = status == BatchStatus.VALIDATING
        lease = ChunkLease.claim(
            batch_id=batch_id,
            status=status,
            unfinished={"validated": False} if validating else {"done": False},
            count=CHECKED_CHUNKS_PER_CLAIM if validating else 1,
            worker="scale bench",
        )
        if lease is not None:
            held.append(lease)
            return
    raise RuntimeError("no chunk could be claimed")


def claim_ms(repetitions: int) -> float:
    held: list = []

    def release() -> None:
        while held:
            held.pop().release()

    timing = median_ms(lambda: claim_next(held), repetitions, prepare=release)
    release()
    return timing


def sweep_ms(repetitions: int) -> tuple[float, int]:
    """One sweep (driver.sweep, as beat and every worker's timer run it, its turn forced each
    time), and how many batches it asked for. The running batches' heartbeats are kept fresh,
    so the sweep finds the same work on both sizes."""
    from batches.models import Batch, BatchStatus, MaintenanceRun
    from batches.pipeline import driver
    from batchsite.clock import DatabaseNow

    asked: list = []
    enqueue = driver.Enqueue(advance=asked.append, run_chunks=lambda: None)

    def prepare() -> None:
        MaintenanceRun.objects.filter(name="sweep").delete()
        Batch.objects.filter(status=BatchStatus.PROCESSING).update(heartbeat_at=DatabaseNow())

    return median_ms(lambda: driver.sweep(enqueue), repetitions, prepare=prepare), len(asked)


def small_batch_file(name: str) -> Path:
    """A 10-line create_twin file in the temporary folder."""
    import json

    small = Path(tempfile.gettempdir()) / name
    small.write_text("".join(json.dumps({"description": {"n": n}}) + "\n" for n in range(10)))
    return small


def uploads_stored(created, small: Path, count: int) -> list[str]:
    """`count` stored uploads of the JSON Lines file `small`, a handler each."""
    from batches import services

    handlers = []
    for _ in range(count):
        upload = services.upload_create(account=created.account, created_by=created.account_user)
        with small.open("rb") as content:
            services.upload_store(
                handler=upload.handler,
                stream=content,
                content_length=small.stat().st_size,
                content_type="application/x-ndjson",
            )
        handlers.append(str(upload.handler))
    return handlers


def api_ms(base: str, busy, repetitions: int) -> dict:
    """GET /batches (the first page and a page deep in the busy account's history), POST
    /batches (a 10-line batch; the batches made are deleted after) and GET /usage, through
    gunicorn with the busy account's secret."""
    import requests

    from batches.models import Batch
    from batchsite.paging import cursor_encode

    session = requests.Session()
    session.headers["Authorization"] = busy.secret
    mine = Batch.objects.filter(account=busy.account).order_by("-created_at", "-uuid")
    deep = cursor_encode(mine.only("uuid", "created_at")[max(PAGE, int(mine.count() * DEEP))])

    def get(url: str, **params) -> None:
        response = session.get(f"{base}{url}", params=params, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")

    handlers = uploads_stored(busy, small_batch_file("bench-scale-batch.jsonl"), repetitions + 1)
    made = []

    def create() -> None:
        response = session.post(
            f"{base}/batches", json={"handler": handlers.pop(), "operation": "create_twin"}, timeout=60
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /batches: {response.status_code} {response.text[:200]}")
        made.append(response.json()["batch"])

    timings = {
        "list_ms": median_ms(lambda: get("/batches", limit=PAGE), repetitions),
        "list_deep_ms": median_ms(lambda: get("/batches", limit=PAGE, cursor=deep), repetitions),
        "usage_ms": median_ms(lambda: get("/usage"), repetitions),
        "create_ms": median_ms(create, repetitions),
    }
    Batch.objects.filter(pk__in=made).delete()
    return timings


def costs(base: str, busy, repetitions: int) -> dict:
    sweep, asked = sweep_ms(repetitions)
    return {
        "claim_ms": claim_ms(repetitions),
        "sweep_ms": sweep,
        "sweep_asked": asked,
        **api_ms(base, busy, repetitions),
    }


def purge_pass() -> dict:
    """One housekeeping pass of the retention (maintenance.batches_past_retention), each batch
    it asks for purged at once, as the worker that takes the task would: its time, and the
    batches it removed of those past retention."""
    from batches.models import Batch
    from batches.pipeline import driver, maintenance
    from batches.statuses import TERMINAL
    from batchsite.clock import DatabaseNow

    expired = Batch.objects.filter(status__in=TERMINAL, results_expire_at__lt=DatabaseNow()).count()
    before = Batch.objects.count()
    inline = driver.Enqueue(advance=lambda batch_id: None, run_chunks=lambda: None)
    started = time.perf_counter()
    maintenance.batches_past_retention(lambda batch_id: driver.batch_advance(batch_id, inline))
    seconds = time.perf_counter() - started
    return {
        "purge_s": round(seconds, 2),
        "purge_batches": before - Batch.objects.count(),
        "purge_expired": expired,
    }


def measure(
    harness, *, finished: int, active: int, accounts: int, repetitions: int, web_workers: int = 1
) -> dict:
    """Every cost with 10 batches of one busy account (6 finished, 2 waiting, 2 running), then
    with `finished` finished and `active` waiting or running (a tenth running) across
    `accounts` accounts; the ratios (big / small, target <= 2) and one retention pass."""
    tables_empty()
    busy = harness.new_account("scale busy")
    others = accounts_insert(accounts - 1)
    result = {"finished": finished, "active": active, "accounts": accounts, "repetitions": repetitions}
    with harness.WebServer(web_workers) as server:
        batches_fill(busy, [busy.account.pk], finished=6, waiting=2, running=2)
        usage_fill([busy.account.pk])
        tables_analyze()
        small = costs(server.base, busy, repetitions)
        started = time.monotonic()
        running = max(1, active // 10)
        batches_fill(
            busy,
            [busy.account.pk, *others],
            finished=finished - 6,
            waiting=active - running - 2,
            running=running - 2,
        )
        usage_fill(others)
        tables_analyze()
        result["fill_s"] = round(time.monotonic() - started, 1)
        big = costs(server.base, busy, repetitions)
    result.update({f"small_{key}": value for key, value in small.items()})
    result.update({f"big_{key}": value for key, value in big.items()})
    for name in ("claim", "sweep", "list", "list_deep", "create", "usage"):
        result[f"{name}_ratio"] = harness.ratio(big[f"{name}_ms"], small[f"{name}_ms"])
    # The list's ratio is its worse page's.
    result["list_ratio"] = max(result["list_ratio"], result.pop("list_deep_ratio"))
    result.update(purge_pass())
    return result
