"""Results while running (docs/contract.md, section 11): the lines run so far, in line order, in the results
file's format, downloadable before the final file exists.

No file is written for it. The download URL is always this server's own endpoint, signed like
the local download URLs (the signature and its expiry are the only credential), and the body is
streamed from the done chunks' `results`, a few chunk rows at a time in index order: nothing is
stored, nothing is held whole in memory, and it works the same with local storage and S3. Each
fetch answers with the lines committed by then.

A partial URL works only while the batch runs: once it ended (its final file published, the
chunks' results cleared) the URL answers 410 `download_url_ended`, so a URL that leaked (a log,
a shared screen) cannot fetch the final results; the final file takes a fresh URL from
GET /batches/{batch}?download=true. A fetch that started while running and finds the chunks'
results cleared half-way goes on from the final file with the run lines after the last one it
sent.
"""

import json
from collections.abc import Iterator
from typing import NamedTuple

from django.core.files.storage import default_storage
from django.http import Http404

from batches.models import Batch, BatchStatus, Chunk
from batches.pipeline.results import is_success_line
from batches.statuses import TERMINAL
from batches.storage import unsign_local
from batchsite.errors import ApplicationError

S = BatchStatus
PARTIAL_SALT = "batches.partial-download"
# While lines run (or wait, paused), and in the moments between the last chunk and the final file.
PARTIAL_STATUSES = frozenset({S.PROCESSING, S.PAUSED, S.CANCEL, S.CANCELLING, S.PROCESSED, S.WRITING_RESULTS})
CHUNK_ROWS_PER_QUERY = 4
PARTS = ("results", "errors")


class PartialGrant(NamedTuple):
    batch: str
    part: str
    format: str


def partial_grant(token: str) -> PartialGrant:
    """The batch id, part and format (`json`, or `csv` for batches.csv_results) a signed partial
    URL (batches.links) grants; refuses a forged or expired one."""
    payload = unsign_local(token, salt=PARTIAL_SALT, what="download")
    if payload["part"] not in PARTS:
        raise ApplicationError(
            "This download URL has expired.", subcode="download_url_expired", status_code=403
        )
    return PartialGrant(payload["batch"], payload["part"], payload.get("format", "json"))


def _kept(block: str, part: str) -> str:
    if part == "results":
        return block
    return "".join(line for line in block.splitlines(keepends=True) if not is_success_line(line))


def _final_lines_after(batch_id, part: str, after_line: int) -> Iterator[bytes]:
    """The run lines of the final file past `after_line` (lines that never ran are left out)."""
    name = Batch.objects.filter(pk=batch_id).values_list("results_file", flat=True).first()
    if not name:
        return
    with default_storage.open(name, "rb") as final:
        for record in final:
            parsed = json.loads(record)
            ran = parsed["line"] > after_line and parsed["status"] is not None
            if ran and (part == "results" or not is_success_line(record.decode())):
                yield record


def partial_source(batch_id) -> Batch:
    """The running batch a partial URL was issued for: 404 once it is gone or being deleted,
    410 once it ended."""
    batch = Batch.objects.filter(pk=batch_id).exclude(status=S.DELETING).first()
    if batch is None:
        raise Http404("The batch is gone.")
    if batch.status in TERMINAL:
        raise ApplicationError(
            f"The batch has ended ({batch.status}): this URL only gave the lines run so far. "
            f"Ask GET /batches/{batch.pk}?download=true for a URL of the final file.",
            subcode="download_url_ended",
            status_code=410,
        )
    return batch


def partial_lines(batch_id, part: str) -> Iterator[bytes]:
    """The run lines so far, a chunk's worth at a time, in line order."""
    last_index = -1
    last_line = 0
    while True:
        rows = list(
            Chunk.objects.filter(batch_id=batch_id, done=True, index__gt=last_index)
            .order_by("index")
            .values_list("index", "last_line", "executed_count", "results")[:CHUNK_ROWS_PER_QUERY]
        )
        if not rows:
            return
        for index, chunk_last_line, executed, results in rows:
            if executed and not results:
                # The final file was published meanwhile and the chunks' copies cleared.
                yield from _final_lines_after(batch_id, part, last_line)
                return
            kept = _kept(results, part)
            if kept:
                yield kept.encode()
            last_index, last_line = index, chunk_last_line
