"""A database outage under a real worker: one log line per try (the maintenance timer's and the
tasks' retries), one traceback once it has lasted as long as a task retries; not a traceback
per try. The outage is a port that accepts connections and closes them at once."""

import re
import socket
import threading

from tests.support.waiting import wait_for

RECORD = re.compile(r"^\[[^]]*: (?P<level>\w+)/[^]]*\] (?P<message>.*)$")


def closing_server() -> int:
    """A port where every connection is accepted and closed: a database that is down."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            connection, _ = listener.accept()
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def records(log: str) -> list[tuple[str, bool]]:
    """Each log record's message and whether a traceback follows it."""
    found = []
    for line in log.splitlines():
        record = RECORD.match(line)
        if record:
            found.append([record["message"], False])
        elif line.startswith("Traceback (most recent call last)") and found:
            found[-1][1] = True
    return [tuple(record) for record in found]


def test_a_database_outage_logs_one_line_per_try_and_one_traceback(worker_factory):
    port = closing_server()
    worker = worker_factory(
        extra_env={
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/down",
            "PIPELINE_SWEEP_SECONDS": "0.2",
        },
        log_name=f"outage-{port}",
    )

    def maintenance_tries():
        logged = [record for record in records(worker.log_path.read_text()) if "maintenance" in record[0]]
        return logged if len(logged) >= 12 else None

    maintenance = wait_for(maintenance_tries, timeout=60, what="twelve maintenance tries")
    worker.stop()
    logged = records(worker.log_path.read_text())
    with_traceback = [message for message, traced in logged if traced]
    assert [message for message in with_traceback if "maintenance" in message] == [
        "maintenance from the worker failed 9 times in a row; still trying"
    ], with_traceback
    assert "OperationalError: connection failed" in maintenance[0][0]
    retries = [message for message, traced in logged if " retry: Retry in " in message]
    assert retries and not [message for message in with_traceback if " retry: " in message]
