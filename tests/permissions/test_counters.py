"""The shared counters under every throttle and lockout: parallel hits from separate
connections each get a count of their own, on the database's table and on Redis alike; a
window ends on the server's clock and the next hit opens a new one."""

import shutil
import subprocess
import time

import pytest
import redis

from operating.services import usage_prune
from permissions.counters import counter_clear, counter_hit, counter_release
from permissions.models import WindowCounter
from tests.support.parallel_calls import in_parallel
from tests.support.ports import free_port

REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


@pytest.fixture(scope="module")
def redis_url():
    """A redis-server of this module's own, on a free loopback port, keeping nothing on disk."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    port = free_port()
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(params=["database", "redis"])
def backend(request, settings):
    """Where the counts live: the table (no Redis cache configured), or the Redis cache."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {"BACKEND": REDIS_CACHE, "LOCATION": request.getfixturevalue("redis_url")}
        }
    return request.param


@pytest.mark.django_db(transaction=True)
def test_parallel_hits_each_get_a_count_of_their_own(backend):
    counts = in_parallel(lambda n: counter_hit("parallel", seconds=60).count, 200)
    assert sorted(counts) == list(range(1, 201))
    assert counter_hit("parallel", seconds=60).count == 201
    assert WindowCounter.objects.filter(key="parallel").exists() == (backend == "database")


@pytest.mark.django_db
def test_a_window_ends_on_time_and_the_next_hit_opens_another(backend):
    first = counter_hit("ending", seconds=1)
    assert (first.count, first.retry_after) == (1, 1)
    assert counter_hit("ending", seconds=1).count == 2
    time.sleep(1.2)
    reopened = counter_hit("ending", seconds=30)
    assert reopened.count == 1 and 29 < reopened.seconds_left <= 30


@pytest.mark.django_db
def test_release_takes_back_one_hit_and_clear_all(backend):
    for _ in range(3):
        counter_hit("taken-back", seconds=60)
    counter_release("taken-back")
    assert counter_hit("taken-back", seconds=60).count == 3
    counter_clear("taken-back")
    counter_release("taken-back")  # no open window: nothing to take back, and none opened
    assert counter_hit("taken-back", seconds=60).count == 1


@pytest.mark.django_db
def test_housekeeping_drops_ended_windows_only():
    counter_hit("ended", seconds=1)
    counter_hit("open", seconds=60)
    time.sleep(1.2)
    assert usage_prune()["ended_counter_windows"] == 1
    assert list(WindowCounter.objects.values_list("key", flat=True)) == ["open"]
