"""The database's clock: every time that another process compares (leases, heartbeats, the
sweep's claim, the status history) is read from it in the statement that writes or compares
it, never from the clock of the process, so a worker whose clock is wrong behaves like any
other."""

from datetime import timedelta

from django.db.models.functions import Now


class DatabaseNow(Now):
    """The database server's time when the statement runs (STATEMENT_TIMESTAMP on PostgreSQL,
    so a long transaction still reads the current time)."""

    def as_sqlite(self, compiler, connection, **extra_context):
        # Django writes datetimes to SQLite as text with six fractional digits; 'now' gives three.
        # Padded, one instant is the same text whichever wrote it, so equality and order hold.
        return self.as_sql(
            compiler,
            connection,
            template="(STRFTIME('%%%%Y-%%%%m-%%%%d %%%%H:%%%%M:%%%%f', 'NOW') || '000')",
            **extra_context,
        )


def database_now_plus(seconds: float):
    """The database's time `seconds` from now (negative: ago), as an expression."""
    return DatabaseNow() + timedelta(seconds=seconds)
