"""Database session limits by role, so that no process, frozen, cut off or slow, holds a lock
for long, and no process waits for one without end.

Three limits, PostgreSQL's: how long a session may sit in an open transaction without sending a
statement before the server ends it (`idle_in_transaction_session_timeout`: a frozen or cut-off
process's locks go with its session), how long a statement waits for a lock (`lock_timeout`:
the waiter gets an OperationalError, its chunk or step rolls back and is retried) and how long a
statement runs (`statement_timeout`).

Every connection opens with the web's limits (DATABASE_*_SECONDS, in the connection's startup
options). A worker process's connections take the step's when they open; a chunk's and the
sweep's transactions set their own for their length (`SET LOCAL`). SQLite has one writer and no
such limits: none of this applies to it.
"""

from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created

# A step's statements include bulk ones over a whole batch (clearing ten thousand chunks'
# results as its results are published); a lost step is taken over by its lease, not this.
STEP_STATEMENT_SECONDS = 300
# The sweep skips a locked batch row and finds it again next time: it never needs to wait.
SWEEP_LOCK_SECONDS = 1


class Limits(NamedTuple):
    idle_in_transaction: float
    lock: float
    statement: float


def role_limits(role: str) -> Limits:
    """A chunk's session is ended once it sat idle for its lease (a holder that silent has lost
    the chunk anyway, and the locks of its uncommitted work must not outlive the lease).

    "stop" is a request that cancels or deletes a batch: it waits for the batch's row until any
    holder that froze has had its session ended (plus an ordinary lock wait), so the stop lands
    rather than fails."""
    chunk_lease = settings.BATCH_CHUNK_LEASE_SECONDS
    lock = settings.DATABASE_LOCK_TIMEOUT_SECONDS
    statement = settings.DATABASE_STATEMENT_TIMEOUT_SECONDS
    web_idle = settings.DATABASE_IDLE_IN_TRANSACTION_SECONDS
    roles = {
        "chunk": Limits(chunk_lease, lock, chunk_lease),
        "step": Limits(settings.BATCH_LEASE_SECONDS, lock, STEP_STATEMENT_SECONDS),
        "sweep": Limits(settings.BATCH_LEASE_SECONDS, SWEEP_LOCK_SECONDS, statement),
    }
    if role == "stop":
        longest_hold = max(web_idle, *(limits.idle_in_transaction for limits in roles.values()))
        return Limits(web_idle, longest_hold + lock, longest_hold + lock + statement)
    return roles[role]


def limits_set(cursor, limits: Limits, *, local: bool) -> None:
    milliseconds = [str(int(seconds * 1000)) for seconds in limits]
    cursor.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', %s, %s),"
        " set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
        [milliseconds[0], local, milliseconds[1], local, milliseconds[2], local],
    )


def is_lock_timeout(error: Exception) -> bool:
    """A statement that gave up waiting for a lock (PostgreSQL's lock_not_available)."""
    return getattr(error.__cause__, "sqlstate", None) == "55P03"


def role_set_local(role: str) -> None:
    """The role's limits for the rest of the current transaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            limits_set(cursor, role_limits(role), local=True)


def step_limits_on_open(sender, connection, **_) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            limits_set(cursor, role_limits("step"), local=False)


def worker_sessions_enable(**_) -> None:
    """From now on, this process's new database sessions have the step's limits."""
    connection_created.connect(step_limits_on_open, dispatch_uid="batches.pipeline.sessions.step")
