"""Calls made at once from several threads, each with its own database connection: what
parallel requests to several web processes look like to the database."""

import threading

from django.db import connection

THREADS = 16


def in_parallel(call, count: int, *, threads: int = THREADS) -> list:
    """`call(n)` for every n in range(count), spread over `threads` threads that start
    together; the results in the order of n."""
    results: list = [None] * count
    errors: list = []
    start = threading.Barrier(threads)

    def work(first: int) -> None:
        try:
            start.wait(timeout=60)
            for n in range(first, count, threads):
                results[n] = call(n)
        except Exception as error:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(first,)) for first in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    if errors:
        raise errors[0]
    assert not any(worker.is_alive() for worker in workers), "a thread did not finish"
    return results
