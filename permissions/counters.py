"""Counts in fixed windows, shared by every process: the one primitive under the API throttle,
the PIN exchange's throttles and the sign-in lockout.

A window begins at a key's first hit and lasts `seconds`; each hit adds one atomically and
returns the new count, so N parallel requests see the counts 1..N and exactly `limit` of them
are admitted. (A read followed by a write, as the cache's incr() is on the database cache,
lets parallel requests read the same count.)

Where: on Redis when the shared cache is Redis (CACHE_URL=redis://…), so the database carries
no write per API call; otherwise in the WindowCounter table, one upsert per hit. Times are the
server's (the database's or Redis's), never a process's clock. Call outside a transaction:
on PostgreSQL the upsert holds the key's row until the transaction ends.
"""

import functools
import math
import re
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from permissions.models import WindowCounter

DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
KEY_PREFIX = "counter:"

# Seconds since the epoch, one value for the whole statement.
DATABASE_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM STATEMENT_TIMESTAMP())::float8",
    "sqlite": "((JULIANDAY('now') - 2440587.5) * 86400.0)",
}

# Both CASEs read the row as it was: an ended window starts again at one.
UPSERT = """
INSERT INTO {table} AS counter (key, count, ends_at) VALUES (%s, 1, {now} + %s)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN counter.ends_at <= {now} THEN 1 ELSE counter.count + 1 END,
    ends_at = CASE WHEN counter.ends_at <= {now} THEN excluded.ends_at ELSE counter.ends_at END
RETURNING count, ends_at - {now}
"""
RELEASE = "UPDATE {table} SET count = count - 1 WHERE key = %s AND count > 0 AND ends_at > {now}"
PRUNE = "DELETE FROM {table} WHERE ends_at <= {now}"

REDIS_RELEASE = """
local count = tonumber(redis.call('get', KEYS[1]))
if count and count > 0 then return redis.call('decr', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Window:
    """A key's count after a hit, and the seconds until its window ends."""

    count: int
    seconds_left: float

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.seconds_left))


@dataclass(frozen=True)
class Tally:
    """A hit measured against a rate's limit."""

    count: int
    limit: int
    retry_after: int

    @property
    def over(self) -> bool:
        return self.limit > 0 and self.count > self.limit


def parse_rate(rate: str | None) -> tuple[int, int]:
    """ "6000/min" → (6000, 60); an empty rate → (0, 0), no limit."""
    if not rate:
        return 0, 0
    count, _, period = rate.partition("/")
    return int(count), DURATIONS[period.strip()[:1]]


def rate_hit(key: str, *, rate: str | None) -> Tally:
    """One hit in the key's window of a rate such as "30/min"; an empty rate counts nothing."""
    limit, seconds = parse_rate(rate)
    if not limit:
        return Tally(0, 0, 0)
    window = counter_hit(key, seconds=seconds)
    return Tally(window.count, limit, window.retry_after)


def counter_hit(key: str, *, seconds: int) -> Window:
    """Adds one to the key's window (opening one of `seconds` if none is open)."""
    client = redis_client()
    if client is not None:
        # SET NX EX opens the window with its expiry; MULTI makes the three one step.
        with client.pipeline(transaction=True) as pipe:
            pipe.set(KEY_PREFIX + key, 0, ex=seconds, nx=True)
            pipe.incr(KEY_PREFIX + key)
            pipe.pttl(KEY_PREFIX + key)
            _, count, milliseconds = pipe.execute()
        return Window(count, milliseconds / 1000)
    with connection.cursor() as cursor:
        cursor.execute(sql(UPSERT), [key, seconds])
        count, seconds_left = cursor.fetchone()
    return Window(count, seconds_left)


def counter_release(key: str) -> None:
    """Takes back one hit (an attempt that turned out not to count) from an open window."""
    client = redis_client()
    if client is not None:
        client.eval(REDIS_RELEASE, 1, KEY_PREFIX + key)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql(RELEASE), [key])


def counter_clear(key: str) -> None:
    client = redis_client()
    if client is not None:
        client.delete(KEY_PREFIX + key)
        return
    WindowCounter.objects.filter(key=key).delete()


def counters_prune() -> int:
    """Drops ended windows from the table (Redis expires its own)."""
    with connection.cursor() as cursor:
        cursor.execute(sql(PRUNE))
        return cursor.rowcount


def sql(template: str) -> str:
    try:
        now = DATABASE_NOW[connection.vendor]
    except KeyError:
        raise ImproperlyConfigured(f"permissions.counters has no SQL for {connection.vendor}") from None
    return template.format(table=connection.ops.quote_name(WindowCounter._meta.db_table), now=now)


def redis_client() -> redis.Redis | None:
    cache = settings.CACHES["default"]
    if cache["BACKEND"] != REDIS_CACHE:
        return None
    location = cache["LOCATION"]
    # As Django's RedisCache: several servers are a primary (the first) and replicas.
    primary = re.split("[;,]", location)[0] if isinstance(location, str) else location[0]
    return redis_for(primary)


@functools.cache
def redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)
