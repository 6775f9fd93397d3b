"""Workers outlive a Redis restart (batchsite/redis_broker.py): a redis-server of the test's own,
keeping nothing on disk, is killed and started again empty each time two batches are validating,
on two real worker processes. No worker may exit, and every batch must complete with each of its
lines run exactly once: the steps Redis forgot are asked again by the pipeline's sweep.

Self-contained (its own redis-server), so it runs on SQLite and on PostgreSQL whatever broker the
suite is on; once per database (the RabbitMQ pass would repeat the Redis pass). `make soak` runs
ten restarts.
"""

import shutil
import signal
import subprocess

import pytest
import redis
from django.conf import settings

from batches.models import Batch, BatchStatus
from batches.statuses import TERMINAL
from batchsite.celery import app as celery_app
from tests.support.batch_files import jsonl
from tests.support.factories import BatchFactory
from tests.support.infrastructure_faults import broker_kind
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.worker_processes import WorkerProcess
from twins.models import Twin

S = BatchStatus
LINES = 1000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.skipif(broker_kind() == "amqp", reason="runs once per database, in the Redis pass"),
]
# Storage slow enough that copying and validating last about a second each, so that both
# batches are validating at once and the restart lands while the workers hold their steps.
SLOW_WORKER_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.support.slow_storage_settings",
    "SLOW_STORAGE_BYTES_PER_SECOND": "100000",
}


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


class RedisServer:
    """A redis-server on a free loopback port that keeps nothing on disk: a restart empties it."""

    def __init__(self, log_path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.process = None

    def start(self) -> "RedisServer":
        options = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", *options],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), timeout=20, what="redis-server to start")
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart_empty(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def broker(monkeypatch):
    """The private Redis, as the broker of this process and of the workers it starts."""
    server = RedisServer(settings.DATA_DIR / "broker-restart-redis.log").start()
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setitem(celery_app.conf, "broker_url", server.url)
    # Options of the suite's own broker (the filesystem one's folders) are not this one's.
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    # Celery keeps its connections and producers for the broker it first published to.
    celery_app._after_fork()
    yield server
    server.kill()
    monkeypatch.undo()
    celery_app._after_fork()


class Workers:
    """Two `celery worker` processes on the private Redis."""

    def __init__(self, broker_url: str):
        env = {**SLOW_WORKER_ENV, "CELERY_BROKER_URL": broker_url}
        self.processes = [
            WorkerProcess(extra_env=env, log_name=f"broker-restart-{n}", node_name=f"restart-{n}@%h").start()
            for n in range(2)
        ]

    def assert_alive(self) -> None:
        exited = [worker.log_path.name for worker in self.processes if worker.process.poll() is not None]
        assert not exited, f"{exited} exited\n{self.log()}"

    def log(self) -> str:
        return "\n".join(worker.log() for worker in self.processes)

    def discard(self) -> None:
        for worker in self.processes:
            worker.discard()


@pytest.fixture
def workers(broker):
    running = Workers(broker.url)
    yield running
    running.discard()


def statuses(batch_ids) -> set[str]:
    return set(Batch.objects.filter(pk__in=batch_ids).values_list("status", flat=True))


def restart_while_two_batches_validate(caller, broker, workers: Workers, *, round_number: int) -> None:
    batch_ids = [
        BatchFactory(
            caller=caller,
            content=jsonl({"description": {"batch": f"{round_number}-{b}", "n": n}} for n in range(LINES)),
        ).pk
        for b in range(2)
    ]
    wait_for(
        lambda: statuses(batch_ids) == {S.VALIDATING},
        timeout=120,
        interval=0.02,
        what=f"round {round_number}: both batches validating",
    )
    broker.restart_empty()

    def ended():
        workers.assert_alive()
        return statuses(batch_ids) <= TERMINAL

    wait_for(ended, timeout=180, interval=0.2, what=f"round {round_number}: the batches to end")
    for batch in Batch.objects.filter(pk__in=batch_ids):
        assert (batch.status, batch.processed, batch.succeeded) == (S.COMPLETED, LINES, LINES), workers.log()


def restart_as_batches_enter_validating(caller, broker, workers: Workers, *, rounds: int) -> None:
    for round_number in range(rounds):
        restart_while_two_batches_validate(caller, broker, workers, round_number=round_number)
    twins = Twin.objects.filter(account=caller.account)
    lines_run = list(twins.values_list("description__batch", "description__n"))
    assert len(lines_run) == len(set(lines_run)) == rounds * 2 * LINES, "a line ran twice or not at all"


def test_workers_survive_redis_restarts_as_batches_enter_validating(caller, broker, workers):
    restart_as_batches_enter_validating(caller, broker, workers, rounds=3)


@pytest.mark.soak
def test_workers_survive_ten_redis_restarts(caller, broker, workers):
    restart_as_batches_enter_validating(caller, broker, workers, rounds=10)
