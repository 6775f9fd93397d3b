"""Cutting a JSON Lines file into line ranges without parsing it (batches.fileformat), for
validation a chunk at a time: the ranges cover the file exactly, and the lines of each range,
parsed on their own, are the lines the whole file yields, numbers, data and errors alike."""

import gzip
import io
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batches import fileformat
from batches.fileformat import (
    FileUnreadable,
    cut_json_lines,
    default_limits,
    parse_json_lines_at,
    parse_lines,
)

MAX_LINE_BYTES = 64
LINES = st.lists(
    st.one_of(
        st.builds(lambda n: b'{"n": %d}' % n, st.integers(-5, 10**6)),
        st.sampled_from([b"", b"  ", b"\r", b"{broken", b"[1]", b'"text"', b'{"a": "\xff"}', b"{}"]),
        st.builds(lambda n: b'{"long": "' + b"x" * n + b'"}', st.integers(40, 200)),
    ),
    max_size=40,
)


def cut(content: bytes, lines_per_range: int, content_type: str = "application/x-ndjson", **limits):
    return cut_json_lines(
        io.BytesIO(content),
        content_type=content_type,
        lines_per_range=lines_per_range,
        max_range_bytes=lines_per_range * (MAX_LINE_BYTES + 2) + 1024,
        limits=default_limits(MAX_LINE_BYTES, **limits),
    )


def outcome(lines):
    """Each parsed line as a comparable tuple, and the reason the file became unreadable."""
    parsed, reason = [], ""
    try:
        for line in lines:
            parsed.append((line.line, line.data, line.error_subcode, line.error))
    except FileUnreadable as error:
        reason = str(error)
    return parsed, reason


def whole(content: bytes):
    return outcome(
        parse_lines(io.BytesIO(content), content_type="application/x-ndjson", max_line_bytes=MAX_LINE_BYTES)
    )


def by_ranges(content: bytes, ranges):
    parsed = []
    for part in ranges:
        lines, reason = outcome(
            parse_json_lines_at(
                io.BytesIO(content[part.start : part.end]),
                first_line=part.first_line,
                max_line_bytes=MAX_LINE_BYTES,
            )
        )
        parsed += lines
        if reason:
            return parsed, reason
    return parsed, ""


@settings(max_examples=150, deadline=None)
@given(
    lines=LINES,
    line_break=st.sampled_from([b"\n", b"\r\n"]),
    final_break=st.booleans(),
    bom=st.booleans(),
    lines_per_range=st.integers(1, 7),
    block_bytes=st.sampled_from([1, 2, 5, 64, fileformat.CUT_BLOCK_BYTES]),
)
def test_ranges_parse_to_what_the_whole_file_yields(
    lines, line_break, final_break, bom, lines_per_range, block_bytes
):
    content = (
        (b"\xef\xbb\xbf" if bom else b"") + line_break.join(lines) + (line_break if final_break else b"")
    )
    with mock.patch.object(fileformat, "CUT_BLOCK_BYTES", block_bytes):
        ranges = cut(content, lines_per_range)
    assert ranges is not None
    assert [part.start for part in ranges] == [0, *(part.end for part in ranges)][: len(ranges)]
    assert (ranges[-1].end if ranges else 0) == len(content)
    assert all(part.first_line == 1 + index * lines_per_range for index, part in enumerate(ranges))
    assert by_ranges(content, ranges) == whole(content)


def test_gzip_is_recognised_however_few_bytes_a_read_returns():
    with mock.patch.object(fileformat, "CUT_BLOCK_BYTES", 1):
        assert cut(gzip.compress(b'{"n": 1}\n'), 2) is None


def test_a_nul_byte_makes_the_file_unreadable_at_the_same_line():
    content = b'{"n": 1}\n{"n": 2}\n{"n": \x00 3}\n{"n": 4}\n'
    ranges = cut(content, 2)
    assert len(ranges) == 2
    assert by_ranges(content, ranges) == whole(content)
    assert "Line 3 holds a NUL byte" in whole(content)[1]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (gzip.compress(b'{"n": 1}\n'), "application/x-ndjson"),
        (b"name,value\nx,1\n", "text/csv"),
        (b"name,value\nx,1\n", ""),
        (b" " * 5000 + b'{"n": 1}\n', ""),
    ],
    ids=["gzip", "csv", "sniffed-csv", "sniffed-too-far-in"],
)
def test_files_that_cannot_be_cut_by_line_breaks_are_left_whole(content, content_type):
    assert cut(content, 2, content_type) is None


def test_a_file_past_a_limit_is_left_whole_for_the_single_pass_to_refuse():
    content = b'{"n": 1}\n' * 10
    assert cut(content, 3, max_lines=9) is None
    assert cut(content, 3, max_decompressed_bytes=50) is None
    assert cut(content, 3, max_lines=10) is not None


def test_a_range_over_its_byte_limit_is_left_whole():
    content = b'{"n": 1}\n' + b'{"long": "' + b"x" * 5000 + b'"}\n'
    assert (
        cut_json_lines(
            io.BytesIO(content),
            content_type="application/x-ndjson",
            lines_per_range=2,
            max_range_bytes=1000,
            limits=default_limits(MAX_LINE_BYTES),
        )
        is None
    )


def test_a_sniffed_json_lines_file_is_cut():
    content = b'\n\n{"n": 1}\n{"n": 2}\n{"n": 3}'
    ranges = cut(content, 2, "application/octet-stream")
    assert [(part.first_line, part.line_count) for part in ranges] == [(1, 2), (3, 2), (5, 1)]
    assert by_ranges(content, ranges) == whole(content)
