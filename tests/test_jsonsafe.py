"""The client's JSON gate (batchsite.jsonsafe): `parsed_encoded`, orjson's road for values
parsed from JSON, gives exactly what `encoded`, the standard library's, gives: the same
bytes, or the same refusal."""

from hypothesis import given, settings
from hypothesis import strategies as st

from batchsite import jsonsafe

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
