"""The client's JSON gate (batchsite.jsonsafe) takes orjson's road only where it leads where
json's does: `parsed_encoded` gives exactly what `encoded` gives (the same bytes, or the same
refusal), and `loads` reads what json alone reads and refuses what it refuses, word for word."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from batchsite import fastjson, jsonsafe

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text()
    | st.sampled_from(["é", "\u2028", "\x7f", "\x00", "\x1f", "\t\n", "😀", "\ud800", "null", "1e-7"])
    | st.sampled_from([1e-05, 1e-07, 1e16, 1.5e300, 5e-324, -0.0, float("inf"), 2**64, 2**14_100])
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


def outcome(write, value):
    try:
        return write(value, depth_limit=6)
    except jsonsafe.JsonRefused as refused:
        return ("refused", refused.description, refused.subcode)


@settings(max_examples=500)
@given(values)
def test_parsed_encoded_gives_what_encoded_gives(value):
    assert outcome(jsonsafe.parsed_encoded, value) == outcome(jsonsafe.encoded, value)


def test_the_cases_orjson_would_write_otherwise_are_written_by_json():
    for value, written in [
        ({"a": [1e-05, 1e16]}, b'{"a":[1e-05,1e+16]}'),
        (["\x7f", "é"], '["\x7f","é"]'.encode()),
        ([2**64], b"[18446744073709551616]"),
    ]:
        assert jsonsafe.parsed_encoded(value) == written
    for value in ([float("nan")], {"a": "\ud800"}, ["\x00"], [[[[[[[[1]]]]]]]]):
        assert outcome(jsonsafe.parsed_encoded, value)[0] == "refused"


def read(text: bytes):
    """What `loads` gives, as something equal only for the same types and values (1 and 1.0,
    0.0 and -0.0 differ), or its refusal word for word."""
    try:
        return ("read", repr(jsonsafe.loads(text, depth_limit=6)))
    except ValueError as refused:
        return ("refused", type(refused).__name__, str(refused))


def read_by_json(text: bytes):
    """`loads` with orjson's road closed: the standard library's reader alone."""
    held = fastjson.holds_long_number
    fastjson.holds_long_number = lambda text: True
    try:
        return read(text)
    finally:
        fastjson.holds_long_number = held


json_texts = st.one_of(
    values.map(lambda value: json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")),
    values.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                '"',
                "\\",
                "\\u0000",
                "\\ud800",
                "1",
                "-0",
                "0.5",
                "1e5",
                "1E-99",
                "1e400",
                "123456789012345678901",
                "NaN",
                "Infinity",
                "true",
                "null",
                " ",
                "\t",
                "\n",
                "é",
                "\x00",
                "\ufeff",
                '"a"',
                "9" * 18,
                "123456789012345678.123456789012345678",
                "2.5e-320",
                "1e308",
                "0.1" + "0" * 16 + "1",
            ]
        ),
        max_size=12,
    ).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")),
    st.binary(max_size=20),
)


@settings(max_examples=1000)
@given(json_texts)
def test_loads_reads_what_json_reads_and_refuses_what_it_refuses(text):
    assert read(text) == read_by_json(text)
