"""Results as CSV (docs/contract.md, section 15): the results file's JSON Lines turned into CSV
rows as they stream by, so a download of any size holds a few rows in memory, and the same
bytes in give the same CSV out whatever storage they were read from.

The header is `line,id,status,subcode,description,result` and one `input.<name>` column per
echoed field, in the batch's order. A null status or id is an empty cell; `result` is the result
body as JSON, empty for a failed line; an echoed value that is not a string is written as JSON.
A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
carriage return) is prefixed with `'`.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence

import orjson

from batchsite import fastjson

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
HEADER = ("line", "id", "status", "subcode", "description", "result")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Rows are written to a small text buffer and handed on once it holds this much.
FLUSH_CHARS = 64 * 1024


def formula_safe(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def as_json(value) -> str:
    """Compact JSON, text beyond ASCII as it is (orjson; json.dumps for what orjson does not
    take, an integer past 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def cell_text(value) -> str:
    """A value as a cell: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else as_json(value)


def result_row(record: dict, echo_fields: Sequence[str]) -> list[str]:
    error = record.get("error") or {}
    line_id = record.get("id")
    status = record.get("status")
    echoed = record.get("input") or {}
    # The line and the status are numbers the service wrote: never a formula.
    return [
        str(record["line"]),
        "" if line_id is None else formula_safe(cell_text(line_id)),
        "" if status is None else str(status),
        formula_safe(error.get("subcode", "")),
        formula_safe(error.get("description", "")),
        formula_safe(as_json(record["result"])) if "result" in record else "",
        *(formula_safe(cell_text(echoed[name])) if name in echoed else "" for name in echo_fields),
    ]


def result_records(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a JSON Lines stream cut into blocks anywhere (a file's reads, a bucket
    object's body, a chunk's results)."""
    rest = b""
    for block in blocks:
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    yield rest


def results_csv(blocks: Iterable[bytes], echo_fields: Sequence[str]) -> Iterator[bytes]:
    """CSV bytes, the header first, then one row per result line of the JSON Lines `blocks`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*HEADER, *(f"input.{name}" for name in echo_fields)])
    for record in result_records(blocks):
        if not record.strip():
            continue
        writer.writerow(result_row(fastjson.loads(record), echo_fields))
        if buffer.tell() >= FLUSH_CHARS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
