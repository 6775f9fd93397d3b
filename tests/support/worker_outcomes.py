"""What the tests with real worker processes check a batch by: a line file long enough to
spread over chunks, the time a batch took to reach a status, and that every line ran once."""

import time

from django.db import connection

from batches.models import Batch
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.inline_pipeline import read_results
from tests.support.waiting import wait_for
from twins.models import Twin

PAD = "p" * 200


def query_value(sql: str, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def submit(caller, lines: int) -> Batch:
    return BatchFactory(
        caller=caller,
        content=jsonl({"description": {"serial": n, "pad": PAD}} for n in range(lines)),
    )


def reached(batch: Batch, status: str, *, within: float, since: float, deployment) -> float:
    """Seconds from `since` until the batch is in `status`; fails past `within`."""

    def there():
        return Batch.objects.filter(pk=batch.pk, status=status).exists()

    try:
        wait_for(there, timeout=max(0.0, since + within - time.monotonic()), interval=0.1, what=status)
    except AssertionError:
        current = Batch.objects.filter(pk=batch.pk).values_list("status", "processed").first()
        raise AssertionError(
            f"{batch.pk} not {status} within {within} s: {current}\n{deployment.log()}"
        ) from None
    return time.monotonic() - since


def assert_ran_once(batch: Batch) -> list[dict]:
    """Every line has one result; the twins created are exactly the lines that succeeded."""
    batch.refresh_from_db()
    results = read_results(batch.results_file)
    assert [result["line"] for result in results] == list(range(1, batch.total + 1))
    succeeded = [result["line"] - 1 for result in results if result["status"] == 201]
    serials = sorted(Twin.objects.filter(account=batch.account).values_list("description__serial", flat=True))
    assert serials == succeeded, "a line ran twice, or ran and is not reported"
    assert batch.succeeded == len(succeeded)
    return results
