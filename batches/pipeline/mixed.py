"""Mixed batches (docs/contract.md, section 16): each line names its operation (`op`), may be
named (`ref`), and may hold `{"$ref": "name.path"}` values, each the value at `path` of the 2xx
result body of the earlier line called `name`.

Names live in the database, not in a worker's memory (`LineRef`): validation records a block of
lines' names with one insert and reads the names the block defines or refers to with one query,
so a repeated name and a reference to a name no earlier line has are found at any size; a
large file is checked in chunks, the references across chunks resolved when they are merged
(`batches.pipeline.validating.mixed_chunks_merge`). Each line is checked by its own
operation's validator (the registry's; no second copy), its references standing in for values
of the right kind (`PLACEHOLDERS`), and its `op` against the creator's role.

Running: a chunk whose lines refer to lines of earlier chunks waits until those chunks are done
(`Chunk.waits`, counted down in each one's commit), and chunks are cut where no reference
crosses a boundary when that can be had (`batches.pipeline.validating.ChunkCutter`), so the usual
file (a twin, then the lines that use it) runs in fully parallel chunks. Inside a chunk, a
group of lines runs in waves: the lines whose references are resolved, grouped by operation,
each group through its operation's bulk path. A named line's outcome is recorded in its
chunk's transaction, so a reference reads committed results only and exactly-once holds as for
any chunk.
"""

import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection

from batches.models import Batch, LineRef
from batchsite import fastjson
from batchsite.errors import VALIDATION_ERRORS
from permissions.selectors import actions_held, may
from twins.registry import Operation, OperationError, OperationResult, operation_get

MIXED = "mixed"
OP_KEY, REF_KEY, REFERENCE_KEY = "op", "ref", "$ref"
MIXED_KEYS = (OP_KEY, REF_KEY)
# What may hold a reference: a reference is an object, and objects and lists hold values.
CONTAINERS = (dict, list)
# Names looked up by one query: a line may hold thousands of references, and a statement's
# parameters are limited (PostgreSQL 65,535; SQLite 32,766).
NAMES_PER_QUERY = 1000
# A list index in a path: longer digit strings cannot index anything (and int() of thousands
# of digits raises).
INDEX_MAX_DIGITS = 9
REF_NAME = re.compile(r"[A-Za-z_][0-9A-Za-z_]{0,63}")
# What a reference stands for while its line is checked, tried in turn per input field: a
# UUID (also a ledger and a text), an identity, a number, a boolean. Where a field takes any
# JSON (description and entry values) the first serves.
PLACEHOLDERS = ("00000000-0000-4000-8000-000000000000", "ref#0", 0, True)


class Reference(NamedTuple):
    name: str
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join((self.name, *self.path))


class MixedLine(NamedTuple):
    """A mixed line taken apart: its operation, its name ("" for none), the operation's input
    and the references in it."""

    operation: Operation
    name: str
    body: dict
    references: list[Reference]


def may_batch(user, operation: str, account) -> bool:
    """Whether the role allows a batch of `operation` (create_batch aside): a mixed batch's
    lines are each checked against the role when it is validated."""
    return operation == MIXED or may(user, operation, account)


def invalid(subcode: str, description: str) -> OperationError:
    return OperationError(400, subcode, description)


def reference_of(value: Any) -> Reference | None:
    """The reference `value` is, None when it is no reference; raises ValueError for a
    malformed one."""
    if not (isinstance(value, dict) and len(value) == 1 and REFERENCE_KEY in value):
        return None
    text = value[REFERENCE_KEY]
    if not isinstance(text, str):
        raise ValueError(f"A {REFERENCE_KEY} must be a string, not {type(text).__name__}.")
    name, *path = text.split(".")
    if not REF_NAME.fullmatch(name) or not all(path):
        raise ValueError(
            f"{REFERENCE_KEY} {text[:100]!r} is not name.path (a name matching ^{REF_NAME.pattern}$, "
            "then dot-separated keys)."
        )
    return Reference(name, tuple(path))


def references_in(body: Any) -> list[Reference]:
    """Every reference anywhere in the body (raises ValueError for a malformed one). Only
    objects and lists are looked into: most values of a line are neither."""
    found, pending = [], [body]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if REFERENCE_KEY in value and len(value) == 1:
                found.append(reference_of(value))
                continue
            value = value.values()
        elif not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, CONTAINERS):
                pending.append(item)
    return found


def substituted(value: Any, value_of: Callable[[Reference], Any]) -> Any:
    """A copy of the value with each reference replaced by `value_of(reference)`."""
    if isinstance(value, dict):
        if REFERENCE_KEY in value and len(value) == 1:
            return value_of(reference_of(value))
        return {
            key: substituted(item, value_of) if isinstance(item, CONTAINERS) else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [substituted(item, value_of) if isinstance(item, CONTAINERS) else item for item in value]
    return value


def mixed_line(data: Any) -> tuple[MixedLine | None, OperationError | None]:
    """The line taken apart, or why it cannot be."""
    if not isinstance(data, dict):
        return None, invalid("invalid_input", "A line of a mixed batch must be a JSON object.")
    name = data.get(OP_KEY)
    operation = operation_get(name) if isinstance(name, str) else None
    if operation is None:
        return None, invalid("operation_unknown", f"The line's {OP_KEY!r} names no operation.")
    if not operation.batchable:
        return None, invalid("operation_not_batchable", f"The operation {name!r} cannot run in a batch.")
    ref = data.get(REF_KEY, "")
    if ref != "" and not (isinstance(ref, str) and REF_NAME.fullmatch(ref)):
        return None, invalid("invalid_ref", f"The line's {REF_KEY!r} must match ^{REF_NAME.pattern}$.")
    body = dict(data)
    del body[OP_KEY]
    body.pop(REF_KEY, None)
    try:
        references = references_in(body)
    except ValueError as error:
        return None, invalid("invalid_ref", str(error))
    return MixedLine(operation, ref, body, references), None


def refused_fields(operation: Operation, data: dict) -> set | None:
    """The input fields the operation refuses in `data` (empty when it is valid; None when the
    refusal names no field)."""
    try:
        operation.validate_input(data)
    except VALIDATION_ERRORS as error:
        detail = getattr(error, "detail", None)
        return set(detail) if isinstance(detail, dict) else None
    return set()


def body_error(line: MixedLine) -> OperationError | None:
    """Why the line's input is invalid, its references standing in for values of the kind
    each field takes; None when for every field some placeholder makes it valid (fields are
    checked independently). The error reported is the first placeholder's."""
    if not line.references:
        return line.operation.checked(line.body)[1]
    error = line.operation.checked(with_placeholder(line.body, PLACEHOLDERS[0]))[1]
    if error is None:
        return None
    still_refused = refused_fields(line.operation, with_placeholder(line.body, PLACEHOLDERS[0]))
    for placeholder in PLACEHOLDERS[1:]:
        if not still_refused:
            break
        refused = refused_fields(line.operation, with_placeholder(line.body, placeholder))
        still_refused = None if refused is None else still_refused & refused
    return None if still_refused == set() else error


def with_placeholder(body: dict, placeholder: Any) -> dict:
    return substituted(body, lambda reference: placeholder)


def names_record(batch_id, names: list[tuple[int, str]]) -> set[str]:
    """Records (line, name) pairs and returns the names recorded now; a name recorded before
    keeps its first line (a step that runs again over the same file records the same pairs).
    One statement for the block: on PostgreSQL the names and lines go as two arrays, since a
    statement of thousands of placeholders costs the driver more to prepare than the database
    to run."""
    if not names:
        return set()
    batch = LineRef._meta.get_field("batch").target_field.get_db_prep_value(batch_id, connection)
    table = LineRef._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} (batch_id, name, line, body)"
                " SELECT %s, name, line, '' FROM unnest(%s::text[], %s::bigint[]) AS named(name, line)"
                " ON CONFLICT (batch_id, name) DO NOTHING RETURNING name",
                [batch, [name for _, name in names], [line for line, _ in names]],
            )
        else:
            cursor.execute(
                f"INSERT INTO {table} (batch_id, name, line, body) VALUES "
                + ", ".join(["(%s, %s, %s, '')"] * len(names))
                + " ON CONFLICT (batch_id, name) DO NOTHING RETURNING name",
                [value for line, name in names for value in (batch, name, line)],
            )
        return {name for (name,) in cursor.fetchall()}


def names_forget(batch_id) -> None:
    """Drops the names validation recorded, when the batch ends in validation (nothing ran)."""
    LineRef.objects.filter(batch_id=batch_id).delete()


def named_rows(batch_id, names: Iterable[str], columns: str, *, succeeded: bool = False) -> Iterator[tuple]:
    """(name, *columns) of each recorded name among `names` (only those whose line succeeded,
    if `succeeded`), NAMES_PER_QUERY names a query; on PostgreSQL the names go as one array."""
    names = sorted(set(names))
    batch = LineRef._meta.get_field("batch").target_field.get_db_prep_value(batch_id, connection)
    outcome = " AND status >= 200 AND status < 300" if succeeded else ""
    with connection.cursor() as cursor:
        for start in range(0, len(names), NAMES_PER_QUERY):
            some = names[start : start + NAMES_PER_QUERY]
            if connection.vendor == "postgresql":
                among, parameters = "= ANY(%s)", [batch, some]
            else:
                among, parameters = f"IN ({', '.join(['%s'] * len(some))})", [batch, *some]
            cursor.execute(
                f"SELECT name, {columns} FROM {LineRef._meta.db_table}"
                f" WHERE batch_id = %s AND name {among}{outcome}",
                parameters,
            )
            yield from cursor.fetchall()


def named_lines(batch_id, names: Iterable[str]) -> dict[str, int]:
    return dict(named_rows(batch_id, names, "line"))


def creator_actions(batch: Batch) -> tuple[Any, set[str]]:
    """The batch's creator and the actions their role allows now, read once (a permission
    check costs about 10 ms; a mixed chunk asks for several operations)."""
    account_user = batch.created_by
    user = account_user.user if account_user else None
    if user is None or not user.is_active:
        return user, set()
    return user, actions_held(user=user, account=batch.account)


# What a line's references point to: line numbers, and, for a chunk checked on its own, the
# names defined before the chunk (their lines are looked up when the chunks are merged).
Referred = tuple[int | str, ...]


class MixedCheck:
    """Checks a mixed batch's lines a block at a time (`block`), for validation: the whole file
    in one pass, or one chunk of it on its own (`chunk_only`). A chunk's references to its own
    earlier lines are resolved here; those to names it does not define are left to the merge,
    and a name another chunk recorded first is counted in `repeated` (the merge then checks
    the file again in one pass, which names the lines at fault)."""

    def __init__(self, batch: Batch, actions: set[str], *, chunk_only: bool = False):
        self.batch_id = batch.pk
        self.actions = actions
        self.chunk_only = chunk_only
        self.defined: dict[str, int] = {}
        self.repeated = 0

    def may(self, operation: Operation) -> bool:
        return operation.name in self.actions

    def block(self, requests: list[tuple[int, Any]]) -> list[tuple[OperationError | None, Referred]]:
        """For each (line, request) (None for a line already refused): why it cannot run (or
        None) and what its references point to."""
        lines = [(number, data if data is None else mixed_line(data)) for number, data in requests]
        parts = [(number, split[0]) for number, split in lines if split and split[0]]
        named = [(number, line.name) for number, line in parts if line.name]
        recorded = names_record(self.batch_id, named)
        if self.chunk_only:
            self.repeated += sum(1 for _, name in named if name not in recorded and name not in self.defined)
            return [self.chunk_line_check(number, split) for number, split in lines]
        wanted = {name for _, name in named}
        wanted.update(reference.name for _, line in parts for reference in line.references)
        recorded = named_lines(self.batch_id, wanted)
        return [self.line_check(number, split, recorded) for number, split in lines]

    def checkable(self, split) -> tuple[MixedLine | None, OperationError | None]:
        """The line to check, or why it is refused before its references are looked at (None
        and None for a line refused already)."""
        if split is None:
            return None, None
        line, error = split
        if error is None and not self.may(line.operation):
            error = OperationError(
                403, "action_not_allowed", f"The role does not allow {line.operation.name}."
            )
        return (None, error) if error is not None else (line, None)

    def chunk_line_check(self, number: int, split) -> tuple[OperationError | None, Referred]:
        line, error = self.checkable(split)
        if line is None:
            return error, ()
        referred = tuple(self.defined.get(reference.name, reference.name) for reference in line.references)
        if line.name:
            if line.name in self.defined:
                return duplicate_ref(line.name, self.defined[line.name]), ()
            self.defined[line.name] = number
        return body_error(line), referred

    def line_check(self, number: int, split, recorded: dict[str, int]):
        line, error = self.checkable(split)
        if line is None:
            return error, ()
        referred = []
        for reference in line.references:
            target = recorded.get(reference.name)
            if target is None or target >= number:
                later = "" if target is None else f" (line {target} has it, which is not earlier)"
                return invalid(
                    "ref_unknown", f"No line before this one has ref {reference.name!r}{later}."
                ), ()
            referred.append(target)
        if line.name and recorded.get(line.name) != number:
            return duplicate_ref(line.name, recorded[line.name]), ()
        return body_error(line), tuple(referred)


def duplicate_ref(name: str, first_line: int) -> OperationError:
    return invalid("duplicate_ref", f"The ref {name!r} is already line {first_line}'s.")


MISSING = object()


def value_at(body: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(body, dict):
            body = body.get(key, MISSING)
        elif (
            isinstance(body, list)
            and key.isascii()
            and key.isdigit()
            and len(key) <= INDEX_MAX_DIGITS
            and int(key) < len(body)
        ):
            body = body[int(key)]
        else:
            return MISSING
        if body is MISSING:
            return MISSING
    return body


def ref_failed(number: int, reference: Reference, why: str) -> OperationError:
    return OperationError(
        424, "ref_failed", f"Line {number} ({reference.name}) {why}; this line was not run."
    )


RETRY_BLOCK_LINES = 1000


def references_settled(original: Batch, retried: set[int], records: Iterable[bytes]) -> Iterator[bytes]:
    """A retry's records (JSON Lines) with each reference to a line of `original` that is not
    retried (it succeeded) replaced by its value, read from that line's recorded result: the
    retry's file names only lines it holds. A reference to a retried line stays."""
    records = iter(records)
    while block := list(itertools.islice(records, RETRY_BLOCK_LINES)):
        lines = []
        for record in block:
            try:
                data = fastjson.loads(record)
                lines.append((record, data, references_in(data)))
            except ValueError:
                lines.append((record, None, []))
        names = {reference.name for _, _, references in lines for reference in references}
        rows = named_rows(original.pk, names, "line, body", succeeded=True)
        settled = {name: fastjson.loads(body) for name, line, body in rows if line not in retried}
        for record, data, references in lines:
            if not any(reference.name in settled for reference in references):
                yield record
                continue
            yield fastjson.dumps(substituted(data, partial(settled_value, settled))).encode() + b"\n"


def settled_value(settled: dict, reference: Reference) -> Any:
    if reference.name in settled:
        found = value_at(settled[reference.name], reference.path)
        if found is not MISSING:
            return found
    return {REFERENCE_KEY: reference.text}


class RefOutcome(NamedTuple):
    line: int
    status: int | None
    body: Any


class MixedRun:
    """Runs a chunk's lines of a mixed batch, a group at a time (`__call__`), in waves; keeps
    the outcome of each named line of the chunk for later lines and for `outcomes_record`."""

    def __init__(self, batch: Batch, first_line: int, last_line: int, correlation, *, run_lines):
        self.batch = batch
        self.first_line, self.last_line = first_line, last_line
        self.correlation = correlation
        self.run_lines = run_lines
        self.named: dict[str, RefOutcome] = {}
        self.sizes: dict[str, int] = {}
        self.ran_names: list[tuple[str, RefOutcome]] = []

    def outcomes_of(self, names: set[str]) -> None:
        """Reads the named lines not known yet: lines of earlier chunks (committed) and of
        this chunk (to run in this chunk)."""
        unknown = names - self.named.keys()
        for name, line, status, body in named_rows(self.batch.pk, unknown, "line, status, body"):
            in_chunk = self.first_line <= line <= self.last_line
            self.named[name] = RefOutcome(line, None if in_chunk else status, None if in_chunk else body)

    def resolved(self, line: MixedLine) -> dict | OperationError:
        """The line's input with its references replaced by their values, or why it cannot
        run: a reference failed, or the values make the line longer than a line may be (a
        thousand references to one large value would otherwise build gigabytes)."""
        if not line.references:
            return line.body
        failure = None
        size = 0

        def value_of(reference: Reference):
            nonlocal failure, size
            found, why = self.value_at(reference)
            if why:
                failure = failure or why
                return None
            size += self.value_size(reference.text, found)
            return found

        body = substituted(line.body, value_of)
        if failure is None and size > settings.BATCH_LINE_MAX_BYTES:
            failure = invalid(
                "line_too_large",
                f"With its references resolved the line is longer than {settings.BATCH_LINE_MAX_BYTES} "
                "bytes (BATCH_LINE_MAX_BYTES).",
            )
        return failure or body

    def value_at(self, reference: Reference) -> tuple[Any, OperationError | None]:
        target = self.named.get(reference.name)
        if target is None or target.status is None:
            return None, ref_failed(target.line if target else 0, reference, "did not run")
        if not 200 <= target.status < 300:
            return None, ref_failed(target.line, reference, f"failed ({target.status})")
        if isinstance(target.body, str):
            target = target._replace(body=fastjson.loads(target.body))
            self.named[reference.name] = target
        found = value_at(target.body, reference.path)
        if found is MISSING:
            missing = f"has no {'.'.join(reference.path)} in its result"
            return None, ref_failed(target.line, reference, missing)
        return found, None

    def value_size(self, text: str, value: Any) -> int:
        if text not in self.sizes:
            self.sizes[text] = len(fastjson.dumps(value))
        return self.sizes[text]

    def __call__(self, pairs: list[tuple[int, str]]) -> list[tuple[int, Any]]:
        lines: dict[int, MixedLine] = {}
        for number, text in pairs:
            data = fastjson.loads(text)
            if self.correlation is not None:
                data = self.correlation.request(data)
            lines[number] = mixed_line(data)[0]
        # The group's own names are known from its lines: only names of other chunks are read.
        for number, line in lines.items():
            if line.name:
                self.named.setdefault(line.name, RefOutcome(number, None, None))
        self.outcomes_of({r.name for line in lines.values() for r in line.references})
        outcomes: dict[int, Any] = {}
        pending = list(lines)
        while pending:
            # Every line refers to earlier lines only, so some line is always ready; were
            # none, each would run now and find its reference unresolved (424), not loop.
            wave = [n for n in pending if all(self.ready(r) for r in lines[n].references)] or pending
            chosen = set(wave)
            pending = [n for n in pending if n not in chosen]
            self.wave_run({n: lines[n] for n in wave}, outcomes)
        return [(number, outcomes[number]) for number, _ in pairs]

    def ready(self, reference: Reference) -> bool:
        """Whether the referenced line's outcome is known: it ran, or it is no line of this
        chunk (an earlier chunk's, committed)."""
        target = self.named.get(reference.name)
        if target is None or target.status is not None:
            return True
        return not self.first_line <= target.line <= self.last_line

    def wave_run(self, wave: dict[int, MixedLine], outcomes: dict) -> None:
        by_operation: dict[str, list[tuple[int, str]]] = defaultdict(list)
        operations = {}
        for number, line in wave.items():
            request = self.resolved(line)
            if isinstance(request, OperationError):
                outcomes[number] = request
                continue
            operations[line.operation.name] = line.operation
            by_operation[line.operation.name].append((number, request))
        for name, requests in by_operation.items():
            outcomes.update(self.run_lines(operations[name], requests))
        for number, line in wave.items():
            if line.name:
                outcome = outcomes[number]
                body = outcome.body if isinstance(outcome, OperationResult) else None
                ran = RefOutcome(number, outcome.status, body)
                self.named[line.name] = ran
                self.ran_names.append((line.name, ran))

    def outcomes_record(self) -> None:
        """Inside the chunk's transaction: the outcomes of the chunk's named lines that ran, in
        one statement on PostgreSQL (row by row, a chunk's thousand names took a second)."""
        if not self.ran_names:
            return
        batch = LineRef._meta.get_field("batch").target_field.get_db_prep_value(self.batch.pk, connection)
        table = LineRef._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # One JSON parameter, each body inside it as JSON: a text array's encoding
                # escapes every element through a regex (49 ms a chunk). A `json` column keeps
                # the body's text as written.
                outcomes = [
                    {"name": name, "status": ran.status, **({} if ran.body is None else {"body": ran.body})}
                    for name, ran in self.ran_names
                ]
                cursor.execute(
                    f"UPDATE {table} AS named SET status = ran.status, body = COALESCE(ran.body::text, '')"
                    " FROM json_to_recordset(%s::json) AS ran(name text, status int, body json)"
                    " WHERE named.batch_id = %s AND named.name = ran.name",
                    [fastjson.dumps(outcomes), batch],
                )
                return
            cursor.executemany(
                f"UPDATE {table} SET status = %s, body = %s WHERE batch_id = %s AND name = %s",
                [
                    (ran.status, "" if ran.body is None else fastjson.dumps(ran.body), batch, name)
                    for name, ran in self.ran_names
                ],
            )
