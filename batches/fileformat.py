"""Reading a batch file line by line (SPEC section 5), streamed, never whole in memory.

JSON Lines by default; CSV with a header row when the upload's content type says so or the
first non-blank byte is not `{`; either may be gzip-compressed (detected by its magic bytes).
Line numbers are 1-based over the file as uploaded (after decompression), blank lines
counted; blank lines yield nothing.
"""

import codecs
import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
CSV_CONTENT_TYPES = ("text/csv", "application/csv")


@dataclass(frozen=True)
class ParsedLine:
    line: int
    data: dict | None = None
    error_subcode: str = ""
    error: str = ""


class FileUnreadable(Exception):
    """The file as a whole cannot be read (bad gzip, not UTF-8 text, no CSV header)."""


class PeekableStream(io.RawIOBase):
    """A binary stream whose first bytes were read to sniff the format, put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head = head
        self.rest = rest

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.head + self.rest.read(max(len(buffer) - len(self.head), 0))
        self.head = b""
        buffer[: len(data)] = data
        return len(data)


def open_decompressed(raw: BinaryIO) -> io.BufferedReader:
    head = raw.read(2)
    stream = io.BufferedReader(PeekableStream(head, raw), buffer_size=1 << 16)
    if head == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=stream), buffer_size=1 << 16)
    return stream


def first_meaningful_byte(stream: io.BufferedReader) -> bytes:
    """Peeks (without consuming) past blank space and a UTF-8 byte order mark."""
    window = stream.peek(4096)
    stripped = window.lstrip(b" \t\r\n")
    if stripped.startswith(codecs.BOM_UTF8):
        stripped = stripped[len(codecs.BOM_UTF8) :].lstrip(b" \t\r\n")
    return stripped[:1]


def parse_lines(raw: BinaryIO, *, content_type: str, max_line_bytes: int) -> Iterator[ParsedLine]:
    try:
        stream = open_decompressed(raw)
        is_csv = content_type.split(";")[0].strip().lower() in CSV_CONTENT_TYPES
        if not is_csv:
            first = first_meaningful_byte(stream)
            is_csv = bool(first) and first != b"{"
        if is_csv:
            yield from parse_csv(stream, max_line_bytes=max_line_bytes)
        else:
            yield from parse_json_lines(stream, max_line_bytes=max_line_bytes)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise FileUnreadable(f"The file could not be decompressed: {error}") from error


def parse_json_lines(stream: io.BufferedReader, *, max_line_bytes: int) -> Iterator[ParsedLine]:
    for number, raw_line in enumerate(read_raw_lines(stream, max_line_bytes=max_line_bytes), start=1):
        if raw_line is None:
            yield line_too_large(number, max_line_bytes)
            continue
        if number == 1 and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[len(codecs.BOM_UTF8) :]
        if not raw_line.strip():
            continue
        try:
            data = json.loads(raw_line)
        except UnicodeDecodeError:
            yield ParsedLine(number, error_subcode="invalid_encoding", error="The line is not UTF-8 text.")
            continue
        except ValueError as error:
            yield ParsedLine(
                number, error_subcode="invalid_json", error=f"The line is not valid JSON: {error}"
            )
            continue
        if not isinstance(data, dict):
            yield ParsedLine(number, error_subcode="invalid_json", error="The line must be a JSON object.")
            continue
        yield ParsedLine(number, data=data)


def read_raw_lines(stream: io.BufferedReader, *, max_line_bytes: int) -> Iterator[bytes | None]:
    """Each line's bytes without its line break; None for a line over the limit, whose bytes
    are skipped without being held."""
    while True:
        line = stream.readline(max_line_bytes + 2)
        if not line:
            return
        if line.endswith(b"\n") or len(line) <= max_line_bytes:
            yield line.rstrip(b"\r\n")
            continue
        while line and not line.endswith(b"\n"):
            line = stream.readline(1 << 16)
        yield None


def line_too_large(number: int, max_line_bytes: int) -> ParsedLine:
    return ParsedLine(
        number,
        error_subcode="line_too_large",
        error=f"The line is longer than {max_line_bytes} bytes.",
    )


def parse_csv(stream: io.BufferedReader, *, max_line_bytes: int) -> Iterator[ParsedLine]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    counted = LineCountingReader(text, max_line_bytes=max_line_bytes)
    reader = csv.reader(counted)
    try:
        header = None
        for row in reader:
            if row and any(cell.strip() for cell in row):
                header = [name.strip() for name in row]
                break
        if header is None:
            return
        if len(set(header)) != len(header) or not all(header):
            raise FileUnreadable("The CSV header must name every column once.")
        for row in reader:
            number = counted.record_start
            if counted.oversized:
                counted.oversized = False
                yield line_too_large(number, max_line_bytes)
                continue
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield ParsedLine(
                    number,
                    error_subcode="invalid_csv",
                    error=f"The row has {len(row)} cells; the header has {len(header)}.",
                )
                continue
            yield csv_row(number, header, row)
    except UnicodeDecodeError as error:
        raise FileUnreadable("The CSV file is not UTF-8 text.") from error
    except csv.Error as error:
        raise FileUnreadable(f"The CSV file is malformed: {error}") from error


def csv_row(number: int, header: list[str], row: list[str]) -> ParsedLine:
    data = {}
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        stripped = cell.strip()
        if stripped[:1] in ("{", "["):
            try:
                data[name] = json.loads(stripped)
            except ValueError:
                return ParsedLine(
                    number,
                    error_subcode="invalid_json",
                    error=f"The cell {name!r} looks like JSON but does not parse.",
                )
        else:
            data[name] = cell
    return ParsedLine(number, data=data)


class LineCountingReader:
    """Feeds the csv reader physical lines while keeping count, so each record knows the
    line it started on (a quoted cell may span lines); an over-long line is replaced by an
    empty one and flagged."""

    def __init__(self, text: io.TextIOWrapper, *, max_line_bytes: int):
        self.text = text
        self.max_line_bytes = max_line_bytes
        self.lines_read = 0
        self.record_start = 1
        self.in_record = False
        self.oversized = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.max_line_bytes + 2)
        if not line:
            raise StopIteration
        self.lines_read += 1
        if not self.in_record:
            self.record_start = self.lines_read
        if len(line) > self.max_line_bytes and not line.endswith("\n"):
            while line and not line.endswith("\n"):
                line = self.text.readline(1 << 16)
            self.oversized = True
            self.in_record = False
            return "\n"
        if line.count('"') % 2 == 1:
            self.in_record = not self.in_record
        return line
