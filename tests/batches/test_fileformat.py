"""Batch file reading (SPEC section 5): JSON Lines, CSV, gzip, line numbers, limits."""

import gzip
import io

import pytest

from batches.fileformat import FileUnreadable, parse_lines


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


def test_byte_order_mark_is_ignored():
    assert parse(b'\xef\xbb\xbf{"a": 1}\n')[0].data == {"a": 1}
    assert parse(b"\xef\xbb\xbfa,b\n1,2\n")[0].data == {"a": "1", "b": "2"}
