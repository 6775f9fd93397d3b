"""Reading a batch's lines: the input as uploaded (parsed by `batches.fileformat`), and the
prepared file validation writes (`<line>\\t<json>` per valid line) that chunks read by offset."""

from django.conf import settings
from django.core.files.storage import default_storage

from batches.fileformat import parse_lines
from batches.models import Batch, Chunk
from batches.pipeline.faults import ChunkIncomplete, StorageReadError
from batches.storage import read_range


class StorageSource:
    """The stored input, read through this wrapper so that a failing read of storage is told
    apart from a file whose content cannot be parsed. Each read keeps the step's lease (when
    given) alive, however much the parser makes of few bytes."""

    closed = False

    def __init__(self, name: str, lease=None):
        self.lease = lease
        try:
            self.file = default_storage.open(name, "rb")
        except Exception as error:
            raise StorageReadError(f"cannot open {name}: {error}") from error

    def read(self, size=-1):
        if self.lease is not None:
            self.lease.tick()
        try:
            return self.file.read(size)
        except Exception as error:
            raise StorageReadError(f"reading the batch file failed: {error}") from error

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def input_name_of(batch: Batch) -> str:
    """The batch's own copy once copied; before that, the upload it was created from."""
    return batch.input_file or (batch.upload.file_name if batch.upload else "")


def input_lines(batch: Batch, lease=None):
    """The stored input, opened, and its parsed lines; the caller closes the source. With a
    lease, reading keeps it alive and notices a cancel (the reader reports progress every
    64 KiB of decompressed bytes, blank lines included)."""
    # A batch without an upload is a retry, whose input its first step wrote as JSON Lines.
    content_type = batch.upload.content_type if batch.upload else "application/x-ndjson"
    source = StorageSource(input_name_of(batch), lease)
    lines = parse_lines(
        source,
        content_type=content_type,
        max_line_bytes=settings.BATCH_LINE_MAX_BYTES,
        on_progress=(lambda _: lease.tick()) if lease is not None else None,
    )
    return source, lines


def prepared_name_of(batch: Batch) -> str:
    return batch.prepared_file


def prepared_record(line: int, text: str) -> str:
    return f"{line}\t{text}\n"


def chunk_records(batch: Batch, chunk: Chunk) -> str:
    """The chunk's prepared records: its own when it was validated on its own, else its
    range of the batch's prepared file."""
    if not batch.prepared_file:
        return chunk.prepared
    return read_range(batch.prepared_file, chunk.start_offset, chunk.end_offset).decode()


def read_chunk_lines(batch: Batch, chunk: Chunk) -> list[tuple[int, str]]:
    """The chunk's (line number, JSON text) pairs. Raises ChunkIncomplete unless exactly the
    chunk's lines are there."""
    pairs = []
    for record in chunk_records(batch, chunk).splitlines():
        number, _, text = record.partition("\t")
        pairs.append((int(number), text))
    if len(pairs) != chunk.line_count or (
        pairs and (pairs[0][0], pairs[-1][0]) != (chunk.first_line, chunk.last_line)
    ):
        raise ChunkIncomplete(
            f"chunk {chunk.index} of batch {batch.pk} owns lines {chunk.first_line}-{chunk.last_line} "
            f"({chunk.line_count}) but read {len(pairs)} from {batch.prepared_file or 'its own records'}"
        )
    return pairs


def prepared_line_numbers(batch: Batch, chunk: Chunk, skip: int) -> list[int]:
    """Line numbers of a chunk's lines after the first `skip`."""
    return [int(record.split("\t", 1)[0]) for record in chunk_records(batch, chunk).splitlines()[skip:]]
