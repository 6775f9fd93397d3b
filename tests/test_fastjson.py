"""The pipeline's JSON (batchsite.fastjson) writes and reads exactly what the standard library
does, so result and prepared files are the same bytes whichever library wrote them."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from batchsite import fastjson

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["é", "\u2028", "\u0085", "\x1c", "\t\n", "😀", "\ud800"])
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


def standard(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


@settings(max_examples=300)
@given(values)
def test_dumps_and_loads_agree_with_the_standard_library(value):
    text = fastjson.dumps(value)
    assert text == standard(value)
    assert text.isascii()
    assert standard(fastjson.loads(text)) == standard(json.loads(text))


def test_the_cases_orjson_handles_differently():
    assert fastjson.dumps({1: 2}) == '{"1":2}'
    floats = [1e-05, 9.9e-05, -2.5e-05, 1e-07, 1.192092896e-07, 2.5e-10, 5e-324, 0.0001, 1e16]
    written = "[1e-05,9.9e-05,-2.5e-05,1e-07,1.192092896e-07,2.5e-10,5e-324,0.0001,1e+16]"
    assert fastjson.dumps(floats) == written
    assert fastjson.dumps("0.00001 e-7") == '"0.00001 e-7"'
    assert fastjson.dumps({"\x7f": "\x7f"}) == '{"\\u007f":"\\u007f"}'
    assert fastjson.dumps([2**64]) == "[18446744073709551616]"
    assert fastjson.loads("[123456789012345678901234567890]") == [123456789012345678901234567890]
    assert fastjson.loads(b"[18446744073709551616]") == [2**64]
    assert math.isinf(fastjson.loads("[1e400]")[0])
    assert fastjson.dumps({"at": __import__("datetime").date(2026, 11, 28)}) == '{"at":"2026-11-28"}'
