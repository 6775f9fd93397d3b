"""Reading a batch file line by line (docs/contract.md, section 5), streamed, never whole in memory.

The format is the one the upload's Content-Type names: JSON Lines for
`application/x-ndjson`, `application/json` (and the other JSON Lines types below), CSV with
a header row for `text/csv`. Only a type that names no format (none,
`application/octet-stream`, `application/gzip`, ...) is sniffed: CSV when the first non-blank
byte is not `{`. Either may be gzip-compressed (detected by its magic bytes). Line numbers
are 1-based over the file as uploaded (after decompression), blank lines counted; blank
lines yield nothing.

Any file can be read: `parse_lines` yields a `ParsedLine` per non-blank line (the data, or
the line's own error) and raises `FileUnreadable` - never anything else - when the file as a
whole cannot be taken. The limits bind the work, not only the upload
(docs/security.md#hostile-input): decompressed bytes, physical lines (blank ones included),
bytes per line and per CSV record (a quoted cell may span lines), cells per CSV record, JSON
nesting depth.
"""

import codecs
import csv
import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings

from batchsite import jsonsafe

GZIP_MAGIC = b"\x1f\x8b"
CSV_CONTENT_TYPES = frozenset({"text/csv", "application/csv"})
JSON_LINES_CONTENT_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/json",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
# How often, in decompressed bytes, the caller's `on_progress` hears from the reader.
PROGRESS_EVERY_BYTES = 1 << 16
SKIP_BLOCK_BYTES = 1 << 16
# A read is what a leased step does between two renewals of its lease: at 1 MiB, storage slower
# than a third of a MiB a second let a 3 s lease lapse during one read of the cut, and another
# worker took the validation over (tests/batches/pipeline/test_clock_skew.py's soak cases).
CUT_BLOCK_BYTES = 1 << 16
# `cut_json_lines` trusts a sniffed format only within this many bytes of the start, as far as
# `parse_lines` is sure to look (its peek returns at least this much).
SNIFF_WINDOW_BYTES = 4096


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, a
# cost a million lines feel; validation puts a line's validated input in place of its data.
@dataclass(slots=True)
class ParsedLine:
    line: int
    data: dict | None = None
    error_subcode: str = ""
    error: str = ""


class FileUnreadable(Exception):
    """The file as a whole cannot be read (bad gzip, no CSV header, binary, past a file-level
    limit); the message says why and, where it applies, at which line."""


@dataclass(frozen=True)
class ReadProgress:
    """How far the reader is: physical lines read (blank ones included) and decompressed
    bytes read so far."""

    physical_lines: int
    decompressed_bytes: int


@dataclass(frozen=True)
class Limits:
    line_bytes: int
    decompressed_bytes: int
    physical_lines: int
    csv_cells: int
    json_depth: int
    gzip_members: int


class _Passthrough(Exception):
    """An exception that is not the file's fault - the caller's progress callback's, or the
    storage's the bytes come from (a network error is no reason to fail a batch) - carried
    past the reader's own error handling, to come out unchanged."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


def read_source(source: BinaryIO, size: int) -> bytes:
    try:
        return source.read(size)
    except Exception as error:
        raise _Passthrough(error) from error


class PeekableStream(io.RawIOBase):
    """A binary stream whose first bytes were read to sniff the format, put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head = head
        self.rest = rest

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.head + read_source(self.rest, max(len(buffer) - len(self.head), 0))
        self.head = b""
        buffer[: len(data)] = data
        return len(data)


class GzipMembers(io.RawIOBase):
    """gzip's format (one or more members, zero bytes of padding between or after them) read
    with zlib, the members counted: an empty member yields no byte, so a file of nothing but
    empty members would pass every limit on what it decompresses to while it costs a worker
    seconds per 100 MB. Each member's CRC and length are checked, as `gzip.GzipFile` does."""

    def __init__(self, source: BinaryIO, *, max_members: int):
        self.source = source
        self.max_members = max_members
        self.members = 0
        self.decompressor = None
        self.compressed = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while True:
            if self.decompressor is None and not self._next_member():
                return 0
            if not self.compressed:
                self.compressed = self.source.read(SKIP_BLOCK_BYTES)
                if not self.compressed:
                    raise EOFError("the file ends inside a gzip member")
            data = self.decompressor.decompress(self.compressed, len(buffer))
            self.compressed = self.decompressor.unconsumed_tail
            if self.decompressor.eof:
                self.compressed = self.decompressor.unused_data
                self.decompressor = None
            if data:
                buffer[: len(data)] = data
                return len(data)

    def _next_member(self) -> bool:
        """Starts the next member; False at the end of the file."""
        while True:
            self.compressed = self.compressed.lstrip(b"\x00")
            if self.compressed:
                break
            self.compressed = self.source.read(SKIP_BLOCK_BYTES)
            if not self.compressed:
                return False
        if self.members >= self.max_members:
            raise FileUnreadable(
                f"The file holds more than {self.max_members} gzip members (BATCH_GZIP_MAX_MEMBERS)."
            )
        self.members += 1
        # wbits=31: one gzip member, header and trailer checked; anything else is zlib.error.
        self.decompressor = zlib.decompressobj(wbits=31)
        return True


class CountedStream(io.RawIOBase):
    """The decompressed bytes: counted against the limit, a decompression failure turned
    into `FileUnreadable`, and the caller told of the progress every 64 KiB."""

    def __init__(self, source, *, limits: Limits, on_progress: Callable[[ReadProgress], None] | None):
        self.source = source
        self.limits = limits
        self.on_progress = on_progress
        self.bytes_read = 0
        self.physical_lines = 0
        self.reported_at = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        try:
            data = self.source.read(len(buffer))
        except (FileUnreadable, _Passthrough):
            raise
        except Exception as error:  # zlib.error, EOFError, BadGzipFile: the bytes are not gzip
            where = f" after line {self.physical_lines}" if self.physical_lines else ""
            raise FileUnreadable(
                f"The file could not be decompressed{where}: {type(error).__name__}: {error}"
            ) from error
        self.bytes_read += len(data)
        if self.bytes_read > self.limits.decompressed_bytes:
            raise FileUnreadable(
                f"The file decompresses to more than {self.limits.decompressed_bytes} bytes "
                f"(BATCH_DECOMPRESSED_MAX_BYTES); the limit was passed after line {self.physical_lines}."
            )
        buffer[: len(data)] = data
        if self.on_progress is not None and self.bytes_read - self.reported_at >= PROGRESS_EVERY_BYTES:
            self.report()
        return len(data)

    def report(self) -> None:
        self.reported_at = self.bytes_read
        try:
            self.on_progress(ReadProgress(self.physical_lines, self.bytes_read))
        except Exception as error:
            raise _Passthrough(error) from error


def open_decompressed(
    raw: BinaryIO, *, limits: Limits, on_progress=None
) -> tuple[io.BufferedReader, CountedStream]:
    head = read_source(raw, 2)
    source = io.BufferedReader(PeekableStream(head, raw), buffer_size=SKIP_BLOCK_BYTES)
    if head == GZIP_MAGIC:
        source = GzipMembers(source, max_members=limits.gzip_members)
    counted = CountedStream(source, limits=limits, on_progress=on_progress)
    return io.BufferedReader(counted, buffer_size=SKIP_BLOCK_BYTES), counted


def first_meaningful_byte(stream: io.BufferedReader) -> bytes:
    """Peeks (without consuming) past blank space and a UTF-8 byte order mark."""
    return sniffed_byte(stream.peek(SNIFF_WINDOW_BYTES))


def sniffed_byte(window: bytes) -> bytes:
    stripped = window.lstrip(b" \t\r\n")
    if stripped.startswith(codecs.BOM_UTF8):
        stripped = stripped[len(codecs.BOM_UTF8) :].lstrip(b" \t\r\n")
    return stripped[:1]


def sniffed_kind(first_byte: bytes) -> str:
    return "csv" if first_byte and first_byte != b"{" else "jsonl"


def default_limits(max_line_bytes: int, **given) -> Limits:
    def pick(name, setting):
        value = given.get(name)
        return getattr(settings, setting) if value is None else value

    return Limits(
        line_bytes=max_line_bytes,
        decompressed_bytes=pick("max_decompressed_bytes", "BATCH_DECOMPRESSED_MAX_BYTES"),
        physical_lines=pick("max_lines", "BATCH_MAX_LINES"),
        csv_cells=pick("max_csv_cells", "BATCH_CSV_MAX_CELLS"),
        json_depth=pick("max_json_depth", "BATCH_JSON_MAX_DEPTH"),
        gzip_members=pick("max_gzip_members", "BATCH_GZIP_MAX_MEMBERS"),
    )


def format_of(content_type: str) -> str:
    """`csv`, `jsonl`, or `` when the type names no format and the content decides."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type in CSV_CONTENT_TYPES:
        return "csv"
    if media_type in JSON_LINES_CONTENT_TYPES:
        return "jsonl"
    return ""


def parse_lines(
    raw: BinaryIO,
    *,
    content_type: str,
    max_line_bytes: int,
    max_decompressed_bytes: int | None = None,
    max_lines: int | None = None,
    max_csv_cells: int | None = None,
    max_json_depth: int | None = None,
    on_progress: Callable[[ReadProgress], None] | None = None,
) -> Iterator[ParsedLine]:
    """Each non-blank line of the file, parsed, with its 1-based physical line number.

    Raises `FileUnreadable` and nothing else whatever the bytes; what `on_progress` or
    reading `raw` itself raises (a storage error) comes out unchanged. The limits not given
    come from the settings `BATCH_DECOMPRESSED_MAX_BYTES`, `BATCH_MAX_LINES` (physical
    lines, blank ones included), `BATCH_CSV_MAX_CELLS` and `BATCH_JSON_MAX_DEPTH`.

    `on_progress(ReadProgress)` is called every 64 KiB of decompressed bytes read, from
    inside the iteration, including while a blank-line flood or an over-long line is read
    and skipped (stretches that yield nothing): the place for a heartbeat or a look at a
    cancel. To stop reading, raise from it; the exception comes out of the iteration as is.
    """
    limits = default_limits(
        max_line_bytes,
        max_decompressed_bytes=max_decompressed_bytes,
        max_lines=max_lines,
        max_csv_cells=max_csv_cells,
        max_json_depth=max_json_depth,
    )
    counted = None
    try:
        stream, counted = open_decompressed(raw, limits=limits, on_progress=on_progress)
        kind = format_of(content_type) or sniffed_kind(first_meaningful_byte(stream))
        lines = read_raw_lines(stream, counted, limits, keep_blank=kind == "csv")
        if kind == "csv":
            yield from parse_csv(lines, limits)
        else:
            yield from parse_json_lines(lines, limits)
    except Exception as error:
        raise reading_error(error, counted) from error


def reading_error(error: Exception, counted: "CountedStream | None") -> Exception:
    """What a failure while reading comes out as: FileUnreadable, or what the storage or the
    progress callback raised, unchanged."""
    if isinstance(error, FileUnreadable):
        return error
    if isinstance(error, _Passthrough):
        return error.error
    where = counted.physical_lines if counted is not None else 0
    return FileUnreadable(f"The file could not be read after line {where}: {type(error).__name__}: {error}")


def parse_json_lines_at(raw: BinaryIO, *, first_line: int, max_line_bytes: int) -> Iterator[ParsedLine]:
    """The lines of one range of an uncompressed JSON Lines file, as `cut_json_lines` cut it,
    numbered from `first_line`: each line exactly as `parse_lines` parses it in the whole file.
    Raises what `parse_lines` raises."""
    limits = default_limits(max_line_bytes)
    counted = CountedStream(raw, limits=limits, on_progress=None)
    counted.physical_lines = first_line - 1
    try:
        stream = io.BufferedReader(counted, buffer_size=SKIP_BLOCK_BYTES)
        lines = read_raw_lines(stream, counted, limits, keep_blank=False, first_line=first_line)
        yield from parse_json_lines(lines, limits)
    except Exception as error:
        raise reading_error(error, counted) from error


@dataclass(frozen=True)
class LineRange:
    """Physical lines `first_line` to `first_line + line_count - 1`: bytes `start` to `end`."""

    first_line: int
    line_count: int
    start: int
    end: int


def json_lines_head(raw: BinaryIO, content_type: str) -> bytes | None:
    """The first block `cut_json_lines` cuts (the whole sniff window, unless the file is
    shorter), or None when the file is gzip or not JSON Lines."""
    block = read_source(raw, CUT_BLOCK_BYTES)
    while 0 < len(block) < SNIFF_WINDOW_BYTES:
        more = read_source(raw, CUT_BLOCK_BYTES)
        if not more:
            break
        block += more
    first_byte = sniffed_byte(block[:SNIFF_WINDOW_BYTES])
    kind = format_of(content_type) or (sniffed_kind(first_byte) if first_byte else "")
    if block.startswith(GZIP_MAGIC) or kind != "jsonl":
        return None
    return block


def cut_json_lines(
    raw: BinaryIO, *, content_type: str, lines_per_range: int, max_range_bytes: int, limits: Limits
) -> list[LineRange] | None:
    """An uncompressed JSON Lines file cut at line breaks into ranges of `lines_per_range`
    physical lines, without parsing it (one pass counting line breaks); None for a file that
    cannot be cut so: gzip, CSV, one past a file-level limit, or a range over
    `max_range_bytes` (an over-long line). Such a file is read whole by `parse_lines`, which
    also says what is wrong with it."""
    block = json_lines_head(raw, content_type)
    if block is None:
        return None
    ranges: list[LineRange] = []
    first_line, start, lines_in, offset, last_byte = 1, 0, 0, 0, b"\n"
    while block:
        position, breaks = 0, block.count(b"\n")
        while breaks >= lines_per_range - lines_in:
            for _ in range(lines_per_range - lines_in):
                position = block.index(b"\n", position) + 1
            breaks -= lines_per_range - lines_in
            if offset + position - start > max_range_bytes:
                return None
            ranges.append(LineRange(first_line, lines_per_range, start, offset + position))
            first_line, start, lines_in = first_line + lines_per_range, offset + position, 0
        lines_in += breaks
        offset += len(block)
        last_byte = block[-1:]
        if offset - start > max_range_bytes or offset > limits.decompressed_bytes:
            return None
        block = read_source(raw, CUT_BLOCK_BYTES)
    if last_byte != b"\n":
        lines_in += 1
    if lines_in:
        ranges.append(LineRange(first_line, lines_in, start, offset))
    if first_line - 1 + lines_in > limits.physical_lines:
        return None
    return ranges


# Physical lines ------------------------------------------------------------------------


# A physical line: (number, content without its line break or None when it is over the
# limit - its bytes were skipped, not held -, count of its `"` bytes, for CSV). Tuples: a
# file may have ten million of them.
RawLine = tuple[int, bytes | None, int]


def read_raw_lines(
    stream: io.BufferedReader,
    counted: CountedStream,
    limits: Limits,
    *,
    keep_blank: bool,
    first_line: int = 1,
) -> Iterator[RawLine]:
    limit, max_lines = limits.line_bytes, limits.physical_lines
    readline = stream.readline
    number = first_line - 1
    while True:
        line = readline(limit + 2)
        if not line:
            return
        number += 1
        if number > max_lines:
            counted.physical_lines = number
            raise FileUnreadable(
                f"The file has more than {max_lines} lines (BATCH_MAX_LINES, blank lines "
                f"included); line {number} is past the limit."
            )
        if line == b"\n" and not keep_blank:
            if not number & 0x3FF:
                counted.physical_lines = number
            continue
        counted.physical_lines = number
        if b"\x00" in line:
            refuse_nul(number)
        if line[-1:] == b"\n":
            content = line[:-2] if line[-2:] == b"\r\n" else line[:-1]
            complete = True
        else:
            content, complete = line, len(line) < limit + 2
        if complete and len(content) <= limit:
            yield number, content, content.count(b'"')
            continue
        yield number, None, over_long_line_skip(readline, line, number)


def over_long_line_skip(readline: Callable[[int], bytes], line: bytes, number: int) -> int:
    """Reads past the rest of an over-long line that began with `line`, without holding it;
    the count of its `"` bytes, for CSV."""
    quotes = line.count(b'"')
    while line and line[-1:] != b"\n":
        line = readline(SKIP_BLOCK_BYTES)
        if b"\x00" in line:
            refuse_nul(number)
        quotes += line.count(b'"')
    return quotes


def refuse_nul(number: int):
    raise FileUnreadable(f"Line {number} holds a NUL byte: the file is binary, not text.")


def line_too_large(number: int, max_line_bytes: int) -> ParsedLine:
    return ParsedLine(
        number,
        error_subcode="line_too_large",
        error=f"The line is longer than {max_line_bytes} bytes (BATCH_LINE_MAX_BYTES).",
    )


# JSON Lines ----------------------------------------------------------------------------


def parse_json_lines(lines: Iterator[RawLine], limits: Limits) -> Iterator[ParsedLine]:
    for number, content, _ in lines:
        if content is None:
            yield line_too_large(number, limits.line_bytes)
            continue
        if number == 1 and content.startswith(codecs.BOM_UTF8):
            content = content[len(codecs.BOM_UTF8) :]
        if not content.strip():
            continue
        yield json_line(number, content, limits)


def json_line(number: int, content: bytes, limits: Limits) -> ParsedLine:
    try:
        data = jsonsafe.loads(content, depth_limit=limits.json_depth)
    except jsonsafe.JsonRefused as error:
        return ParsedLine(number, error_subcode=error.subcode, error=error.description)
    except UnicodeDecodeError:
        return ParsedLine(number, error_subcode="invalid_encoding", error="The line is not UTF-8 text.")
    except ValueError as error:
        return ParsedLine(number, error_subcode="invalid_json", error=f"The line is not valid JSON: {error}")
    except Exception as error:  # noqa: BLE001 - whatever a line does is that line's failure
        return ParsedLine(
            number, error_subcode="invalid_json", error=f"The line cannot be read: {type(error).__name__}."
        )
    if not isinstance(data, dict):
        return ParsedLine(number, error_subcode="invalid_json", error="The line must be a JSON object.")
    return ParsedLine(number, data=data)


# CSV -----------------------------------------------------------------------------------


class RecordAborted(Exception):
    """A CSV record refused before the csv module held all of it; its rest was skipped."""

    def __init__(self, parsed: ParsedLine):
        super().__init__(parsed.error)
        self.parsed = parsed


class CsvFeeder:
    """Feeds the csv reader physical lines, keeping the line each record starts on and the
    bytes it has taken so far. A record that passes the line limit (a quoted cell may span
    lines), or holds a line that is not UTF-8, is aborted: the rest of it is skipped by
    counting quotes, without holding it, and the reader is started afresh."""

    def __init__(self, lines: Iterator[RawLine], limits: Limits):
        self.lines = lines
        self.limits = limits
        self.record_start: int | None = None
        self.record_bytes = 0
        self.quotes = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        number, content, quotes = next(self.lines)
        if self.record_start is None:
            self.record_start = number
        self.quotes += quotes
        start = self.record_start
        if content is None:
            self.abort(line_too_large(start, self.limits.line_bytes))
        if number == 1 and content.startswith(codecs.BOM_UTF8):
            content = content[len(codecs.BOM_UTF8) :]
        self.record_bytes += len(content) + 1
        if self.record_bytes > self.limits.line_bytes + 1:
            self.abort(
                ParsedLine(
                    start,
                    error_subcode="line_too_large",
                    error=f"The CSV record starting on line {start} is longer than "
                    f"{self.limits.line_bytes} bytes (BATCH_LINE_MAX_BYTES).",
                )
            )
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            self.abort(
                ParsedLine(start, error_subcode="invalid_encoding", error="The line is not UTF-8 text.")
            )
        return text + "\n"

    def end_record(self) -> int:
        """The first line of the record the reader has just returned."""
        start = self.record_start
        self.record_start, self.record_bytes, self.quotes = None, 0, 0
        return start if start is not None else 0

    def skip_rest_of_record(self) -> None:
        """Reads on, holding nothing, to the end of the line where the record's quotes close."""
        while self.quotes % 2:
            raw_line = next(self.lines, None)
            if raw_line is None:
                break
            self.quotes += raw_line[2]
        self.end_record()

    def abort(self, parsed: ParsedLine):
        self.skip_rest_of_record()
        raise RecordAborted(parsed)


def parse_csv(lines: Iterator[RawLine], limits: Limits) -> Iterator[ParsedLine]:
    feeder = CsvFeeder(lines, limits)
    header = None
    finished = False
    while not finished:
        try:
            for row in csv.reader(feeder):
                number = feeder.end_record()
                if not row or not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = csv_header(row, number, limits)
                    continue
                yield csv_record(number, header, row, limits)
            finished = True
        except RecordAborted as aborted:
            yield aborted.parsed
        except csv.Error as error:
            number = feeder.record_start or 0
            feeder.skip_rest_of_record()
            yield ParsedLine(
                number, error_subcode="invalid_csv", error=f"The CSV record is malformed: {error}"
            )
    if header is None:
        raise FileUnreadable("The CSV file has no header row.")


def csv_header(row: list[str], number: int, limits: Limits) -> list[str]:
    if len(row) > limits.csv_cells:
        raise FileUnreadable(
            f"The CSV header on line {number} has {len(row)} columns; the limit is {limits.csv_cells} "
            "(BATCH_CSV_MAX_CELLS)."
        )
    header = [name.strip() for name in row]
    if len(set(header)) != len(header) or not all(header):
        raise FileUnreadable(f"The CSV header (line {number}) must name every column once.")
    return header


def csv_record(number: int, header: list[str], row: list[str], limits: Limits) -> ParsedLine:
    if len(row) > limits.csv_cells:
        return ParsedLine(
            number,
            error_subcode="invalid_csv",
            error=f"The row has {len(row)} cells; the limit is {limits.csv_cells} (BATCH_CSV_MAX_CELLS).",
        )
    if len(row) != len(header):
        return ParsedLine(
            number,
            error_subcode="invalid_csv",
            error=f"The row has {len(row)} cells; the header has {len(header)}.",
        )
    return csv_row(number, header, row, limits)


def csv_row(number: int, header: list[str], row: list[str], limits: Limits) -> ParsedLine:
    data = {}
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        stripped = cell.strip()
        if stripped[:1] in ("{", "["):
            try:
                data[name] = jsonsafe.loads(stripped, depth_limit=limits.json_depth)
            except jsonsafe.JsonRefused as error:
                return ParsedLine(
                    number, error_subcode=error.subcode, error=f"The cell {name!r}: {error.description}"
                )
            except Exception:  # noqa: BLE001 - a cell's failure is its line's, never the batch's
                return ParsedLine(
                    number,
                    error_subcode="invalid_json",
                    error=f"The cell {name!r} looks like JSON but does not parse.",
                )
        else:
            data[name] = cell
    return ParsedLine(number, data=data)
