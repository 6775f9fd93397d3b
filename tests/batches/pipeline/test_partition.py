"""A worker cut off by the network in the middle of a chunk stalls nothing but itself, with real
worker processes on PostgreSQL and Redis (RabbitMQ ran it the same; it tests the lease, not the broker).

Worker `cut` runs in a network namespace of its own, joined to this host by a veth pair: it
reaches the database and the broker (which listen on this host's loopback) only through TCP
forwarders that the test runs on the veth's address here. Once it holds a chunk's lease, every
packet in or out of the namespace is dropped (iptables DROP: no reset, no ICMP, its sockets see
silence, as behind a dead switch). The other worker must complete the batch within the chunk
lease plus 10 s of the cut, every line run once. The partition lasts PARTITION_SECONDS (45 s;
`make soak` sets 300); then it heals, the cut-off worker reaches the database again, and it must
have committed nothing: the chunks it held were finished by the other worker and nothing changes.

To PostgreSQL the cut-off worker's sessions are the forwarders', which stay up: what ends them
is the server's idle-in-transaction limit (the chunk lease, batches.pipeline.sessions), as it
would end a frozen worker's.
"""

import asyncio
import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from batches.models import Batch, BatchStatus, Chunk
from batchsite.celery import app as celery_app
from batchsite.clock import database_now_plus
from operating.models import WorkerHeartbeat
from tests.support.infrastructure_faults import broker_kind
from tests.support.waiting import wait_for
from tests.support.worker_outcomes import assert_ran_once, query_value, reached, submit
from tests.support.worker_processes import WorkerGroup, database_url

S = BatchStatus
LEASE_SECONDS = 5
PARTITION_SECONDS = float(os.environ.get("PARTITION_SECONDS", "45"))
LINES = 6000
# Its retransmissions back off while it is cut off, up to two minutes apart (Linux's TCP_RTO_MAX).
RETURN_SECONDS = 150
WORKER_ENV = {
    # Slow reads make a chunk last long enough to be cut off in.
    "DJANGO_SETTINGS_MODULE": "tests.support.slow_storage_settings",
    "SLOW_STORAGE_BYTES_PER_SECOND": "2000000",
    "BATCH_CHUNK_LINES": "500",
    "BATCH_CHUNK_LEASE_SECONDS": str(LEASE_SECONDS),
    "DATABASE_LOCK_TIMEOUT_SECONDS": "2",
    "WORKER_HEARTBEAT_SECONDS": "1",
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "amqp": 5672}
# A private range no interface here uses: one /30 of it per test run.
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="services mode only: the cut-off worker reaches PostgreSQL"
    ),
    pytest.mark.skipif(
        broker_kind() not in ("redis", "rediss"),
        reason="services mode, once per database, on Redis: what it tests is the chunk lease, not the broker",
    ),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: it makes a network namespace and iptables rules"
    ),
    pytest.mark.skipif(
        not (shutil.which("ip") and shutil.which("iptables")), reason="needs `ip` (iproute2) and `iptables`"
    ),
]


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def ip(arguments: str) -> str:
    return run("ip", *arguments.split())


class NetworkNamespace:
    """A host of its own: a network namespace joined to this one by a veth pair on a /30."""

    def __init__(self, tag: str):
        self.name = f"partition-{tag}"
        self.outer_link, self.inner_link = f"pt{tag}o", f"pt{tag}i"
        self.outer_address, self.inner_address = unused_subnet(int(tag)).hosts()

    def create(self) -> None:
        self.remove()
        ip(f"netns add {self.name}")
        ip(f"link add {self.outer_link} type veth peer name {self.inner_link} netns {self.name}")
        ip(f"address add {self.outer_address}/30 dev {self.outer_link}")
        ip(f"link set {self.outer_link} up")
        ip(f"-n {self.name} address add {self.inner_address}/30 dev {self.inner_link}")
        ip(f"-n {self.name} link set {self.inner_link} up")
        ip(f"-n {self.name} link set lo up")

    def exec_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    def cut(self) -> None:
        """Drops every packet in and out: no reset, no ICMP, as behind a dead switch."""
        for chain in ("INPUT", "OUTPUT"):
            run(*self.exec_prefix(), "iptables", "-A", chain, "-j", "DROP")

    def heal(self) -> None:
        run(*self.exec_prefix(), "iptables", "-F")

    def remove(self) -> None:
        """Deleting the namespace deletes its rules and the veth pair."""
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.outer_link], capture_output=True)


def unused_subnet(seed: int) -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(line.split()[3]).network for line in ip("-4 -o address show").splitlines()]
    candidates = list(SUBNETS.subnets(new_prefix=30))
    for offset in range(len(candidates)):
        subnet = candidates[(seed + offset) % len(candidates)]
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise AssertionError(f"no /30 of {SUBNETS} is free")


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


class Forwarders:
    """TCP forwarders on one event loop in a thread of this process: each listens on `host` (a
    port of its own) and pipes every connection to a service on this host's loopback."""

    def __init__(self, host: str):
        self.host = host
        self.servers: list[asyncio.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.pipes: set[asyncio.Task] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="forwarders", daemon=True)
        self.thread.start()

    def url_through(self, url: str) -> str:
        """`url` with its host and port replaced by those of a new forwarder to it."""
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK:
            pytest.skip(f"{url} is not on this host's loopback, the only services the namespace reaches")
        target = (parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])
        port = self.call(self.listen(target))
        credentials = parts.netloc.rpartition("@")[0]
        return urlunsplit(
            parts._replace(netloc=f"{credentials}{'@' if credentials else ''}{self.host}:{port}")
        )

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def listen(self, target: tuple[str, int]) -> int:
        async def forward(reader, writer):
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*target)
            except OSError:
                writer.close()
                return
            self.writers |= {writer, upstream_writer}
            self.pipes.add(asyncio.current_task())
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

        server = await asyncio.start_server(forward, self.host, 0)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def close_all(self) -> None:
        for server in self.servers:
            server.close()
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*self.pipes, return_exceptions=True), timeout=5)

    def close(self) -> None:
        self.call(self.close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class CutOffDeployment(WorkerGroup):
    """Worker `cut` in the namespace, reaching the services through the forwarders, and worker
    `live` on this host."""

    def __init__(self, name: str, namespace: NetworkNamespace, forwarders: Forwarders):
        super().__init__()
        celery_app.control.purge()
        host = socket.gethostname()
        self.cut_node, self.live_node = f"{name}-cut@{host}", f"{name}-live@{host}"
        service_urls = {
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CACHE_URL": settings.CACHE_URL,
            "AWS_S3_ENDPOINT_URL": os.environ.get("AWS_S3_ENDPOINT_URL", ""),
        }
        routed = {name: forwarders.url_through(url) for name, url in service_urls.items() if url}
        self.cut = self.start(
            extra_env={**WORKER_ENV, **routed},
            log_name=f"{name}-cut",
            node_name=self.cut_node,
            command_prefix=namespace.exec_prefix(),
        )
        self.live = self.start(extra_env=WORKER_ENV, log_name=f"{name}-live", node_name=self.live_node)


@pytest.fixture
def cut_off_deployment():
    """The namespace, the forwarders and the two workers, all removed however the test ends."""
    namespace = NetworkNamespace(str(os.getpid()))
    try:
        namespace.create()
        run(*namespace.exec_prefix(), "iptables", "-L", "-n")
    except subprocess.CalledProcessError as error:
        namespace.remove()
        pytest.skip(f"no network namespace with iptables here: {' '.join(error.cmd)}: {error.stderr.strip()}")
    forwarders = Forwarders(str(namespace.outer_address))
    deployment = None
    try:
        deployment = CutOffDeployment("partition", namespace, forwarders)
        yield namespace, deployment
    finally:
        if deployment is not None:
            deployment.discard()
        forwarders.close()
        namespace.remove()


def chunk_rows(batch: Batch) -> list[tuple]:
    return list(
        Chunk.objects.filter(batch_id=batch.pk)
        .order_by("index")
        .values_list("pk", "done", "worker", "lease_owner", "lease_expires_at", "executed_count", "done_at")
    )


def batch_row(batch: Batch) -> tuple:
    return Batch.objects.filter(pk=batch.pk).values_list("status", "processed", "succeeded", "failed").get()


def test_a_worker_cut_off_mid_chunk_loses_the_chunk_and_commits_nothing(caller, cut_off_deployment):
    namespace, deployment = cut_off_deployment
    batch = submit(caller, LINES)
    # A chunk it claimed or renewed just now: it is still at work on it when the cut lands.
    wait_for(
        lambda: (
            Chunk.objects.filter(batch_id=batch.pk, worker=deployment.cut_node, done=False)
            .exclude(lease_owner="")
            .filter(lease_expires_at__gt=database_now_plus(LEASE_SECONDS - 0.5))
            .exists()
        ),
        timeout=120,
        interval=0.02,
        what="the worker to be cut off to hold a chunk",
    )
    namespace.cut()
    since = time.monotonic()
    time.sleep(1)  # what it sent before the cut has arrived
    stranded = list(
        Chunk.objects.filter(batch_id=batch.pk, worker=deployment.cut_node, done=False)
        .exclude(lease_owner="")
        .values_list("pk", flat=True)
    )
    assert stranded, f"the worker finished its chunks before the cut took hold\n{deployment.log()}"

    took = reached(batch, S.COMPLETED, within=LEASE_SECONDS + 10, since=since, deployment=deployment)
    print(f"cut off mid-chunk, {LEASE_SECONDS} s chunk lease: the batch completed {took:.1f} s after the cut")
    results = assert_ran_once(batch)
    assert {result["status"] for result in results} == {201}
    finished = chunk_rows(batch)
    assert all(done and not owner and expires is None for _, done, _, owner, expires, *_ in finished)
    took_over = {pk: worker for pk, _, worker, *_ in finished if pk in stranded}
    assert set(took_over.values()) == {deployment.live_node}, took_over
    completed = batch_row(batch)

    time.sleep(max(0.0, since + PARTITION_SECONDS - time.monotonic()))
    healed_at = query_value("SELECT statement_timestamp()")
    namespace.heal()
    healed = time.monotonic()
    wait_for(
        lambda: WorkerHeartbeat.objects.filter(node=deployment.cut_node, seen_at__gt=healed_at).exists(),
        timeout=RETURN_SECONDS,
        interval=0.2,
        what="the cut-off worker to reach the database again",
    )
    print(
        f"partitioned {PARTITION_SECONDS:.0f} s: the worker was back {time.monotonic() - healed:.1f} s after"
    )
    # A warm shutdown: whatever it still runs ends (or it is killed), so it can commit nothing later.
    deployment.cut.stop()
    assert chunk_rows(batch) == finished
    assert batch_row(batch) == completed
    assert assert_ran_once(batch) == results
