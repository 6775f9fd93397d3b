"""Batch file reading (docs/contract.md, section 5): JSON Lines, CSV, gzip, line numbers, limits."""

import gzip
import io
import subprocess
import sys
import time
import timeit

import pytest
from django.conf import settings
from django.test import override_settings

from batches.fileformat import FileUnreadable, parse_lines
from tests.support.process_memory import PeakMemory


def parse(content: bytes, content_type: str = "", max_line_bytes: int = 1024):
    return list(parse_lines(io.BytesIO(content), content_type=content_type, max_line_bytes=max_line_bytes))


def test_json_lines_count_blank_lines_and_skip_them():
    lines = parse(b'{"a": 1}\n\n   \n{"b": 2}\r\n{"c": 3}')
    assert [(line.line, line.data) for line in lines] == [(1, {"a": 1}), (4, {"b": 2}), (5, {"c": 3})]


def test_json_lines_report_bad_lines_with_their_numbers():
    lines = parse(b'{"a": 1}\n{broken\n[1, 2]\n"text"\n')
    assert [(line.line, line.error_subcode) for line in lines] == [
        (1, ""),
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "invalid_json"),
    ]
    assert "JSON object" in lines[2].error


def test_invalid_utf8_line_is_reported_not_fatal():
    lines = parse(b'{"a": 1}\n{"b": "\xff"}\n')
    assert [line.error_subcode for line in lines] == ["", "invalid_encoding"]


def test_a_line_over_the_limit_is_reported_and_skipped():
    long_line = b'{"a": "' + b"x" * 200 + b'"}'
    lines = parse(b'{"a": 1}\n' + long_line + b'\n{"b": 2}\n', max_line_bytes=100)
    assert [(line.line, line.error_subcode) for line in lines] == [(1, ""), (2, "line_too_large"), (3, "")]


def test_csv_by_first_byte_with_json_cells():
    content = b'twin,entries\n\nabc,"{""k"": {""value"": 1}}"\ndef,plain\n'
    lines = parse(content)
    assert [(line.line, line.data) for line in lines] == [
        (3, {"twin": "abc", "entries": {"k": {"value": 1}}}),
        (4, {"twin": "def", "entries": "plain"}),
    ]


def test_csv_by_content_type_even_when_first_byte_is_a_brace():
    lines = parse(b'{odd}\n"{""x"": 1}"\n', content_type="text/csv; charset=utf-8")
    assert [(line.line, line.data) for line in lines] == [(2, {"{odd}": {"x": 1}})]


def test_csv_record_spanning_lines_keeps_its_starting_line_number():
    content = b'name,description\nfirst,"{""a"":\n1}"\nsecond,"{}"\n'
    lines = parse(content)
    assert [(line.line, line.data) for line in lines] == [
        (2, {"name": "first", "description": {"a": 1}}),
        (4, {"name": "second", "description": {}}),
    ]


def test_csv_row_with_wrong_cell_count_is_a_bad_line():
    lines = parse(b"a,b\n1,2\n1,2,3\n")
    assert [line.error_subcode for line in lines] == ["", "invalid_csv"]


def test_csv_header_must_name_each_column_once():
    with pytest.raises(FileUnreadable):
        parse(b"a,a\n1,2\n")


def test_empty_cells_are_left_out():
    assert parse(b"twin,ledger\nabc,\n")[0].data == {"twin": "abc"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"a": 1}\n\n{"a": 2}\n', [(1, {"a": 1}), (3, {"a": 2})]),
        (b"a\n1\n\n2\n", [(2, {"a": "1"}), (4, {"a": "2"})]),
    ],
    ids=["jsonl", "csv"],
)
def test_gzip_of_either_form(content, expected):
    lines = parse(gzip.compress(content))
    assert [(line.line, line.data) for line in lines] == expected


def test_truncated_gzip_is_unreadable():
    with pytest.raises(FileUnreadable):
        parse(gzip.compress(b'{"a": 1}\n' * 1000)[:-20])


def test_gzip_members_concatenated_and_zero_padded_read_as_one_file():
    members = gzip.compress(b'{"a": 1}\n') + b"\x00" * 10 + gzip.compress(b"") + gzip.compress(b'{"b": 2}\n')
    lines = parse(members + b"\x00" * 100)
    assert [(line.line, line.data) for line in lines] == [(1, {"a": 1}), (2, {"b": 2})]


@override_settings(BATCH_GZIP_MAX_MEMBERS=1000)
def test_a_flood_of_empty_gzip_members_is_unreadable_past_the_member_limit():
    assert len(parse(gzip.compress(b'{"a": 1}\n') + gzip.compress(b"") * 999)) == 1
    with pytest.raises(FileUnreadable, match="more than 1000 gzip members"):
        parse(gzip.compress(b'{"a": 1}\n') + gzip.compress(b"") * 5000)


def test_a_member_whose_checksum_is_wrong_is_unreadable():
    member = bytearray(gzip.compress(b'{"a": 1}\n'))
    member[-8] ^= 0xFF
    with pytest.raises(FileUnreadable, match="decompressed"):
        parse(bytes(member))


def test_byte_order_mark_is_ignored():
    assert parse(b'\xef\xbb\xbf{"a": 1}\n')[0].data == {"a": 1}
    assert parse(b"\xef\xbb\xbfa,b\n1,2\n")[0].data == {"a": "1", "b": "2"}


# Hostile files (docs/security.md#hostile-input) -----------------------------------------


def parse_with(content: bytes, content_type: str = "", **limits):
    options = {"max_line_bytes": 1024, **limits}
    return list(parse_lines(io.BytesIO(content), content_type=content_type, **options))


def errors(lines) -> list[tuple[int, str]]:
    return [(line.line, line.error_subcode) for line in lines]


def test_a_32000_deep_array_is_the_lines_error_not_a_recursion_error():
    deep = '{"description": {"a": ' + "[" * 32000 + "]" * 32000 + "}}\n"
    lines = parse_with(deep.encode() + b'{"ok": 1}\n', max_line_bytes=64 * 1024)
    assert errors(lines) == [(1, "malformed_body"), (2, "")]
    assert "64 levels" in lines[0].error


def test_depth_is_counted_outside_strings_only():
    inside_a_string = '{"a": "' + "[" * 500 + '\\"["}'
    assert parse_with(inside_a_string.encode(), max_json_depth=3)[0].data == {"a": "[" * 500 + '"['}
    assert errors(parse_with(b'{"a": [[[1]]]}', max_json_depth=3)) == [(1, "malformed_body")]
    assert parse_with(b'{"a": [[1]]}', max_json_depth=3)[0].data == {"a": [[1]]}


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '"x\\udfff"', '["\\ud800"]']
)
def test_values_no_json_body_may_carry_are_malformed_body(value):
    lines = parse_with(b'{"a": ' + value.encode() + b"}\n")
    assert errors(lines) == [(1, "malformed_body")]


def test_surrogate_pairs_and_huge_integers_within_pythons_limit_are_data():
    assert parse_with(b'{"a": "\\ud83d\\ude00"}')[0].data == {"a": "\U0001f600"}
    assert parse_with(b'{"a": ' + b"9" * 500 + b"}", max_line_bytes=4096)[0].data == {"a": int("9" * 500)}


def test_an_integer_past_pythons_limit_is_malformed_body_as_in_a_request_body():
    lines = parse_with(b'{"a": ' + b"9" * 5000 + b"}", max_line_bytes=8192)
    assert errors(lines) == [(1, "malformed_body")]
    assert "too long" in lines[0].error


def corrupt(content: bytes) -> bytes:
    broken = bytearray(content)
    broken[20:60] = bytes(byte ^ 0xFF for byte in broken[20:60])
    return bytes(broken)


@pytest.mark.parametrize(
    "content",
    [
        corrupt(gzip.compress(b'{"a": 1}\n' * 1000 + b'{"b": "' + b"x" * 5000 + b'"}\n')),
        gzip.compress(b'{"a": 1}\n' * 1000)[:-10],
        gzip.compress(b'{"a": 1}\n') + b"trailing garbage",
        b"\x1f\x8b",
    ],
    ids=["corrupt-deflate", "truncated", "trailing-garbage", "magic-only"],
)
def test_broken_gzip_is_unreadable(content):
    with pytest.raises(FileUnreadable, match="decompressed"):
        parse_with(content)


def test_decompressed_bytes_are_limited():
    bomb = gzip.compress(b'{"a": 1}\n' * 100_000)
    with pytest.raises(FileUnreadable, match=r"more than 100000 bytes \(BATCH_DECOMPRESSED_MAX_BYTES\)"):
        parse_with(bomb, max_decompressed_bytes=100_000)


def test_blank_lines_count_towards_the_line_limit():
    with pytest.raises(FileUnreadable, match=r"more than 50 lines .*blank lines included.*line 51"):
        parse_with(b'{"a": 1}\n' + b"\n" * 60, max_lines=50)
    with pytest.raises(FileUnreadable, match="line 51"):
        parse_with(b"a\n" + b"\n" * 60, "text/csv", max_lines=50)
    assert len(parse_with(b'{"a": 1}\n' + b"\n" * 48 + b'{"a": 2}\n', max_lines=50)) == 2


def test_nul_bytes_make_the_file_unreadable():
    with pytest.raises(FileUnreadable, match="Line 1 holds a NUL byte"):
        parse_with(b"\x00" * 10_000)
    with pytest.raises(FileUnreadable, match="Line 2 holds a NUL byte"):
        parse_with(b'{"a": 1}\n{"a": "\x00"}\n', "application/x-ndjson")


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/json; charset=utf-8"])
def test_a_json_lines_content_type_is_never_read_as_csv(content_type):
    assert errors(parse_with(b'"abc"\n"def"\n', content_type)) == [(1, "invalid_json"), (2, "invalid_json")]


@pytest.mark.parametrize("content_type", ["", "application/octet-stream", "application/gzip"])
def test_sniffing_only_without_a_format_in_the_content_type(content_type):
    assert parse_with(b"a\n1\n", content_type)[0].data == {"a": "1"}
    assert parse_with(b'{"a": 1}\n', content_type)[0].data == {"a": 1}


@pytest.mark.parametrize("content", [b"", b"\n\n\r\n", b'\n""\n'])
def test_a_csv_without_a_header_is_unreadable(content):
    with pytest.raises(FileUnreadable, match="no header"):
        parse_with(content, "text/csv")


def test_an_over_long_line_before_the_csv_header_is_reported_on_that_line():
    lines = parse_with(b"x" * 2000 + b"\na,b\n1,2\n", "text/csv")
    assert errors(lines) == [(1, "line_too_large"), (3, "")]


def test_a_csv_record_spanning_lines_is_limited_as_one_line():
    bomb = b'a,b\n"' + b"xy\n" * 1000 + b'",1\n3,4\n'
    lines = parse_with(bomb, max_line_bytes=100)
    assert errors(lines) == [(2, "line_too_large"), (1003, "")]
    assert "starting on line 2" in lines[0].error and "100 bytes" in lines[0].error
    assert lines[1].data == {"a": "3", "b": "4"}


def test_the_multi_line_record_bomb_is_one_bad_line():
    bomb = b"a\n" + b'"xy\n",' * 20_000 + b"x\n" + b"next\n"
    assert errors(parse_with(gzip.compress(bomb), "text/csv")) == [(2, "line_too_large"), (20_003, "")]


def test_cells_per_record_are_limited():
    with pytest.raises(FileUnreadable, match=r"101 columns; the limit is 100 \(BATCH_CSV_MAX_CELLS\)"):
        parse_with(",".join(f"c{n}" for n in range(101)).encode() + b"\n", "text/csv", max_csv_cells=100)
    header = ",".join(f"c{n}" for n in range(5)).encode()
    lines = parse_with(header + b"\n" + b"1," * 10 + b"1\n", "text/csv", max_csv_cells=5)
    assert errors(lines) == [(2, "invalid_csv")] and "BATCH_CSV_MAX_CELLS" in lines[0].error


def test_a_bad_csv_line_is_that_lines_error_and_reading_goes_on():
    lines = parse_with(b'a,b\n1,\xff\n"x\ny",2\n3,"{""n"": NaN}"\n5,6\r\n', "text/csv")
    assert errors(lines) == [(2, "invalid_encoding"), (3, ""), (5, "malformed_body"), (6, "")]
    assert lines[1].data == {"a": "x\ny", "b": "2"}


def test_progress_is_reported_while_nothing_is_yielded():
    seen = []
    lines = parse_with(gzip.compress(b"\n" * 1_000_000 + b'{"a": 1}\n'), on_progress=seen.append)
    assert [line.line for line in lines] == [1_000_001]
    assert len(seen) >= 10
    assert seen[-1].decompressed_bytes >= 900_000 and seen[-1].physical_lines >= 900_000
    skipped = []
    parse_with(b"x" * 1_000_000 + b"\n", "application/x-ndjson", on_progress=skipped.append)
    assert len(skipped) >= 10


def test_an_exception_from_the_progress_callback_comes_out_unchanged():
    class Cancelled(Exception):
        pass

    def cancel(progress):
        raise Cancelled(progress.physical_lines)

    with pytest.raises(Cancelled):
        parse_with(gzip.compress(b'{"a": 1}\n' * 100_000), on_progress=cancel)


# Memory: the bombs of the issue, scaled down, read in a process of their own -----------

READ_IN_A_PROCESS = """
import sys
from batches.fileformat import FileUnreadable, parse_lines
from tests.support.process_memory import PeakMemory

counts = {"lines": 0, "errors": 0}
try:
    with open(sys.argv[1], "rb") as source:
        for parsed in parse_lines(
            source,
            content_type=sys.argv[2],
            max_line_bytes=65536,
            max_decompressed_bytes=4 * 1024**3,
            max_lines=10_000_000,
            max_csv_cells=1000,
            max_json_depth=64,
        ):
            counts["lines"] += 1
            counts["errors"] += parsed.data is None
    print("read", counts["lines"], counts["errors"])
except FileUnreadable as error:
    print("unreadable", error)
"""


def gzip_file(path, parts, repeat: int) -> None:
    head, body, tail = parts
    with gzip.open(path, "wb", compresslevel=6) as packed:
        packed.write(head)
        block = body * 10_000
        for _ in range(repeat // 10_000):
            packed.write(block)
        packed.write(tail)


def peak_of_reading(path, content_type: str) -> tuple[float, float, str]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", READ_IN_A_PROCESS, str(path), content_type],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    memory = PeakMemory(process.pid)
    output, _ = process.communicate(timeout=120)
    peak = memory.stop()
    assert process.returncode == 0
    return peak, time.monotonic() - started, output.strip()


@pytest.mark.parametrize(
    ("parts", "repeat", "content_type", "expected"),
    [
        # One CSV record of two million short quoted multi-line cells (the 10 million:
        # 764 MB before; it grew with the cell count).
        ((b"a\n", b'"xy\n",', b"x\n"), 2_000_000, "text/csv", "read 1 1"),
        # Blank lines: stopped at the line limit, blank lines included.
        ((b'{"a": 1}\n', b"\n", b""), 12_000_000, "application/x-ndjson", "unreadable"),
        # Lines of 32,000-deep arrays, each refused without recursion.
        ((b"", b'{"a": ' + b"[" * 32000 + b"]" * 32000 + b"}\n", b""), 500, "", "read 500 500"),
    ],
    ids=["csv-record-bomb", "blank-line-bomb", "deep-nesting"],
)
def test_bombs_are_read_in_bounded_memory_and_time(tmp_path, parts, repeat, content_type, expected):
    path = tmp_path / "bomb.gz"
    if repeat < 10_000:
        path.write_bytes(gzip.compress(parts[0] + parts[1] * repeat + parts[2]))
    else:
        gzip_file(path, parts, repeat)
    peak, seconds, output = peak_of_reading(path, content_type)
    assert output.startswith(expected), output
    assert peak < 100, f"{peak:.0f} MiB"
    assert seconds < 30


def test_a_storage_error_is_not_the_files_fault():
    class Flaky(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise ConnectionResetError("the bucket went away")

    with pytest.raises(ConnectionResetError):
        list(parse_lines(io.BufferedReader(Flaky()), content_type="", max_line_bytes=100))
    with pytest.raises(ConnectionResetError):
        source = io.BytesIO(gzip.compress(b'{"a": 1}\n' * 100_000))
        source.read = lambda size=-1, read=source.read: (
            read(size) if source.tell() < 1000 else Flaky().read(size)
        )
        list(parse_lines(source, content_type="", max_line_bytes=100))


def parse_one_line(line: bytes) -> list:
    return parse_with(line + b"\n", "application/x-ndjson", max_line_bytes=1024**2)


def seconds_per_parse(line: bytes, number: int) -> float:
    """The fastest of five timings of `number` parses each: load from other processes on a
    shared machine only ever adds time, so the fastest is the one closest to the code's own."""
    return min(timeit.repeat(lambda: parse_one_line(line), repeat=5, number=number)) / number


@pytest.mark.parametrize(
    "line_of_size",
    [
        lambda n: b"[" * 70 + b'"' + b'\\"' * n,  # an unterminated string full of escaped quotes
        lambda n: b"[" * n + b"]" * n,
        lambda n: b"[" + b"[]," * n + b"[]]",
        lambda n: b'{"a": [' + b'"[[[[{{{{",' * (n // 3) + b"1]}",
    ],
    ids=["escaped-quotes", "deep", "wide", "brackets-in-strings"],
)
def test_the_depth_check_is_linear(line_of_size):
    # Timed against itself at an eighth of the size, in this run, so the machine's speed and
    # load cancel out: linear time gives a ratio near 8 (3 to 10 measured on a loaded 2-core
    # machine), quadratic near 64 (the old string pattern on an unterminated string: a 40 KB
    # line took 3.7 s).
    small, large = line_of_size(2_500), line_of_size(20_000)
    number = max(1, int(0.01 / timeit.timeit(lambda: parse_one_line(small), number=1)))
    ratio = seconds_per_parse(large, number) / seconds_per_parse(small, number)
    assert ratio < 24, f"8 times the line took {ratio:.1f} times as long"
    assert len(parse_one_line(large)) == 1
