"""orjson where the pipeline writes and reads millions of lines, giving what the standard
library gives: `dumps` is `json.dumps(value, separators=(",", ":"), default=str)` (so ASCII
only: a result or prepared line never holds a raw U+2028 or U+0085 that `str.splitlines`
would cut at) and falls back to it for what orjson writes otherwise or does not take (text
beyond ASCII, an integer past 64 bits); `loads` falls back to `json.loads` the same way.

Only for data the service itself made or already validated: `batchsite.jsonsafe` stays the
gate for a client's JSON (orjson writes NaN as null, which the gate must refuse).
"""

import json
import re
from typing import Any

import orjson

# Objects json.dumps would give to `default`, given to it here too.
PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


# Where orjson's ASCII output differs from json.dumps: DEL, written raw for \u007f, and a
# float under 1e-4, written 0.00001 or 1e-7 for 1e-05 and 1e-07 (larger ones agree). Text that
# may hold one goes to json.dumps; a string holding the same characters only takes the slower
# path. Plain substring tests first: they are cheaper than any one regex for all three.
SHORT_NEGATIVE_EXPONENT = re.compile(rb"e-[0-9](?:[,\]}]|$)")


def orjson_differs(encoded: bytes) -> bool:
    return b"\x7f" in encoded or b".0000" in encoded or SHORT_NEGATIVE_EXPONENT.search(encoded) is not None


def dumps(value: Any) -> str:
    try:
        encoded = orjson.dumps(value, default=str, option=PASSTHROUGH)
    except TypeError:
        encoded = b"\x80"
    if encoded.isascii() and not orjson_differs(encoded):
        return encoded.decode("ascii")
    return json.dumps(value, separators=(",", ":"), default=str)


# orjson reads an integer past 64 bits as a float; text that may hold one goes to json.loads.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_DIGIT_RUN = b"0" * 19


def holds_long_number(text: str | bytes) -> bool:
    """Whether 19 digits follow each other in the text: every digit made "0", then one find,
    at C speed (a regex took three times as long as orjson's read of the line)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return raw.translate(_DIGITS_AS_ZERO).find(_LONG_DIGIT_RUN) != -1


def loads(text: str | bytes) -> Any:
    if holds_long_number(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
