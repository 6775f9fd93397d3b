"""Lines the client can correlate (docs/contract.md, section 15): each line's own id, taken out
before the operation sees the line, and the fields echoed from it into its result line.

Prepared records keep the whole line as the client sent it, so a chunk run or a retry reads
the id and the echoed fields from them; the id is taken out only when a line is checked or run.

An id is a string of at most ID_MAX_LENGTH characters or an integer (not a boolean). Ids are
compared as JSON: the string "7" and the integer 7 are different ids. Repeated ids are found by
the database, not in a worker's memory: validation records each id in `LineId` (a block of
lines, or a chunk, at a time) and asks which lines reuse an earlier line's id. A line reports
its own fault first (unparsable, no id, a bad id, a bad request); `duplicate_id` is reported on
lines that are valid on their own.
"""

import hashlib

from django.db import connection, transaction
from django.db.models import Count, Max, OuterRef, Subquery

from batches.models import Batch, LineId
from batchsite import fastjson
from twins.registry import OperationError

ID_MAX_LENGTH = 128
KEY_MAX_LENGTH = LineId._meta.get_field("key").max_length
# Lines checked together in one pass: their ids recorded by one insert, their repeats found by
# one query.
ID_BLOCK_LINES = 1000
FORGET_LINES = 50_000


def id_refusal(value) -> str:
    """Why `value` cannot be a line's id, or ""."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"must be a string or an integer, not {type(value).__name__}"
    if isinstance(value, str) and len(value) > ID_MAX_LENGTH:
        return f"is {len(value)} characters long; the limit is {ID_MAX_LENGTH}"
    return ""


def id_key(value: int | str) -> str:
    """The id as `LineId` stores it: its JSON text, or, when that is too long for the column
    (escaped characters, a long integer), `#` and its SHA-256 (no JSON text starts with `#`)."""
    text = fastjson.dumps(value)
    if len(text) <= KEY_MAX_LENGTH:
        return text
    return "#" + hashlib.sha256(text.encode()).hexdigest()


class Correlation:
    """A batch's id field ("" for none) and echoed fields ([] for none)."""

    def __init__(self, id_field: str, echo_fields: list[str]):
        self.id_field = id_field
        self.echo_fields = echo_fields

    @classmethod
    def of(cls, batch: Batch) -> "Correlation | None":
        """The batch's correlation, or None when its result lines carry neither."""
        if not (batch.id_field or batch.echo_fields):
            return None
        return cls(batch.id_field, batch.echo_fields or [])

    def tag(self, data) -> dict:
        """What the line's result line carries between its status and its outcome: `id` (null
        when the line has none, or not a valid one) and `input`, from the line as sent."""
        line = data if isinstance(data, dict) else {}
        tag = {}
        if self.id_field:
            value = line.get(self.id_field)
            tag["id"] = value if value is not None and not id_refusal(value) else None
        if self.echo_fields:
            tag["input"] = {name: line[name] for name in self.echo_fields if name in line}
        return tag

    def request(self, data):
        """The line as the operation sees it: without the id field."""
        if self.id_field and isinstance(data, dict) and self.id_field in data:
            data = dict(data)
            del data[self.id_field]
        return data

    def id_error(self, data) -> OperationError | None:
        """Why the line's id is missing or not an id, or None. A line that is not an object is
        left to the operation's check, which says so."""
        if not self.id_field or not isinstance(data, dict):
            return None
        if self.id_field not in data:
            return OperationError(400, "id_missing", f"The line has no {self.id_field!r} (the id field).")
        refusal = id_refusal(data[self.id_field])
        if refusal:
            return OperationError(400, "invalid_id", f"The id ({self.id_field!r}) {refusal}.")
        return None


def line_ids_record(batch_id, ids: list[tuple[int, int | str]]) -> None:
    """Records (line, id) pairs; a line recorded before (a chunk checked twice, a step run
    again over the same file) keeps its row. One statement run over the rows: bulk_create
    builds a model and compiles SQL per row, which cost more than checking the lines."""
    if not ids:
        return
    batch = LineId._meta.get_field("batch").target_field.get_db_prep_value(batch_id, connection)
    # One transaction for the rows: SQLite in autocommit would commit (and sync) each one.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {LineId._meta.db_table} (batch_id, line, key) VALUES (%s, %s, %s)"
            " ON CONFLICT (batch_id, line) DO NOTHING",
            [(batch, line, id_key(value)) for line, value in ids],
        )


def duplicates_between(batch_id, first_line: int, last_line: int) -> dict[int, int]:
    """The lines from `first_line` to `last_line` whose id an earlier line has, each with the
    first line that has it."""
    first_use = (
        LineId.objects.filter(batch_id=batch_id, key=OuterRef("key"), line__lt=OuterRef("line"))
        .order_by("line")
        .values("line")[:1]
    )
    return dict(
        LineId.objects.filter(batch_id=batch_id, line__gte=first_line, line__lte=last_line)
        .annotate(first_use=Subquery(first_use))
        .filter(first_use__isnull=False)
        .values_list("line", "first_use")
    )


def duplicates_exist(batch_id) -> bool:
    return (
        LineId.objects.filter(batch_id=batch_id)
        .values("key")
        .annotate(uses=Count("pk"))
        .filter(uses__gt=1)
        .exists()
    )


def duplicate_error(value, first_line: int) -> OperationError:
    return OperationError(
        400, "duplicate_id", f"The id {fastjson.dumps(value)} is already used by line {first_line}."
    )


def line_ids_forget(batch_id) -> None:
    """Drops the ids validation recorded: it has ended. A range of lines at a time: SQLite
    holds the row ids a DELETE removes in memory until the statement ends."""
    recorded = LineId.objects.filter(batch_id=batch_id)
    last_line = recorded.aggregate(last=Max("line"))["last"]
    if last_line is None:
        return
    for start in range(0, last_line + 1, FORGET_LINES):
        recorded.filter(line__gte=start, line__lt=start + FORGET_LINES).delete()
