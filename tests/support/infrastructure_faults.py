"""The faults an operator's bad day brings, done for real to the services the suite runs on:
broker connections dropped (Redis CLIENT KILL, RabbitMQ close_all_connections), PostgreSQL
statements cancelled and connections terminated."""

import os
import subprocess
from urllib.parse import urlparse

import pytest
import redis
from django.conf import settings
from django.db import connection


def broker_kind() -> str:
    return urlparse(settings.CELERY_BROKER_URL).scheme


def once_per_database():
    """Skips a worker test on RabbitMQ when its subject is the pipeline, not the broker: CI runs it
    in the Redis pass of each database instead of twice."""
    return pytest.mark.skipif(broker_kind() == "amqp", reason="runs once per database, in the Redis pass")


def drop_broker_connections() -> int:
    """Closes every client connection of the broker the suite uses; returns how many."""
    url = settings.CELERY_BROKER_URL
    if broker_kind() in ("redis", "rediss"):
        database = int(urlparse(url).path.lstrip("/") or 0)
        client = redis.Redis.from_url(url)
        own = client.client_id()
        dropped = 0
        for entry in client.client_list():
            if int(entry["db"]) == database and int(entry["id"]) != own:
                client.client_kill_filter(_id=entry["id"])
                dropped += 1
        client.close()
        return dropped
    if broker_kind() == "amqp":
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "peer_port"],
            capture_output=True,
            text=True,
            check=True,
        )
        own_ports = own_tcp_ports()
        dropped = 0
        for line in listed.stdout.splitlines():
            connection_pid, peer_port = line.split()
            if int(peer_port) not in own_ports:
                subprocess.run(["rabbitmqctl", "close_connection", connection_pid, "fault test"], check=True)
                dropped += 1
        return dropped
    raise AssertionError(f"no connections to drop on the {broker_kind()} broker")


def own_tcp_ports() -> set[int]:
    """Local ports of this process's TCP sockets: the test keeps its own broker connection."""
    inodes = set()
    for descriptor in os.listdir("/proc/self/fd"):
        target = (
            os.readlink(f"/proc/self/fd/{descriptor}")
            if os.path.exists(f"/proc/self/fd/{descriptor}")
            else ""
        )
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def other_backends(function: str) -> int:
    """Runs pg_cancel_backend or pg_terminate_backend on every other session of the test
    database (the workers'); returns how many it reached."""
    assert function in ("pg_cancel_backend", "pg_terminate_backend")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {function}(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return sum(1 for (reached,) in cursor.fetchall() if reached)
