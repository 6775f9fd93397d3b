"""JSON from clients, read so that no text can make the server fail: the one place that
decides which JSON is refused, for request bodies (`batchsite.parsers`) and batch lines
(`batches.fileformat`) alike, so a batch line and the single call give the same verdict.

Refused, beyond what `json` itself refuses: nesting deeper than `BATCH_JSON_MAX_DEPTH`
(checked before parsing, without recursion), the constants `NaN`/`Infinity`/`-Infinity`,
numbers too large for a double (`1e400`), integers of more than 4,300 digits, `\\uD800`-style
escapes that leave a lone surrogate (text that cannot be encoded as UTF-8), and `\\u0000`
(PostgreSQL cannot store it).
"""

import json
import math
import re
from itertools import accumulate
from typing import Any

import orjson
from django.conf import settings

from batchsite import fastjson

MALFORMED = "malformed_body"

# A JSON string literal, escapes included. An unterminated one runs to the end of the text:
# a match never fails, so no start is tried twice and the scan stays linear.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# Each bracket as a signed byte: +1 opens a level, -1 (0xFF) closes one.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
# An escape of a surrogate code point or of NUL: only then can json give text that cannot be
# stored (a raw NUL byte or control character is not valid JSON).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


class JsonRefused(ValueError):
    """JSON refused for a reason a client can fix; `subcode` is the single call's subcode."""

    def __init__(self, description: str, *, subcode: str = MALFORMED):
        super().__init__(description)
        self.description = description
        self.subcode = subcode


def max_depth() -> int:
    return settings.BATCH_JSON_MAX_DEPTH


def nesting_depth_exceeds(text: bytes, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` in this JSON text, without
    parsing it: two byte counts for a text with few brackets; otherwise the running depth
    over the brackets outside strings, computed at C speed."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    steps = _STRING.sub(b"", text).translate(_DEPTH_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0) > limit


def _refuse_constant(name: str):
    raise JsonRefused(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"The number {text[:40]} is too large.")
    return value


# One decoder for every call: json.loads with options builds a new one each time.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(text: bytes | str, *, depth_limit: int | None = None) -> Any:
    """The parsed JSON text, or `JsonRefused` (hostile but well-formed JSON) or another
    `ValueError` (not JSON, not UTF-8). Never anything else for any input."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    limit = max_depth() if depth_limit is None else depth_limit
    if nesting_depth_exceeds(raw, limit):
        raise JsonRefused(f"The JSON nests deeper than {limit} levels.")
    # orjson reads a line in a fifth of json's time and reads what json reads, but for an
    # integer past 64 bits, which it gives as a float. Text that may hold one goes to json, as
    # does any text orjson refuses, so a refusal is always json's, word for word.
    if not fastjson.holds_long_number(raw):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            return _checked_escapes(raw, value, limit)
    decoded = raw.decode("utf-8")
    try:
        value = _DECODER.decode(decoded)
    except RecursionError:
        # Only if the depth limit is set above what the interpreter can recurse.
        raise JsonRefused(f"The JSON nests deeper than {limit} levels.") from None
    except (json.JSONDecodeError, JsonRefused):
        raise
    except ValueError:
        # Well-formed JSON the decoder cannot turn into a value: an integer past Python's
        # digit limit for conversion (4,300).
        raise JsonRefused("An integer is too long (over 4,300 digits).") from None
    return _checked_escapes(raw, value, limit)


def _checked_escapes(raw: bytes, value: Any, limit: int) -> Any:
    if _SUSPECT_ESCAPE.search(raw):
        refusal = refusal_of_value(value, depth_limit=limit)
        if refusal:
            raise JsonRefused(refusal)
    return value


def encoded(value: Any, *, depth_limit: int | None = None) -> bytes:
    """The value as compact UTF-8 JSON, or `JsonRefused` when no JSON body could carry it:
    too deep, NaN or Infinity, an integer too long to write, a lone surrogate or a NUL in its
    text, or not JSON at all. C speed on the way through; the reason is looked for only
    when there is one."""
    limit = max_depth() if depth_limit is None else depth_limit
    try:
        result = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        raise JsonRefused(refusal_of_value(value, depth_limit=limit) or "The value is not JSON.") from None
    suspect = b"\\u0000" in result
    if suspect or nesting_depth_exceeds(result, limit):
        refusal = refusal_of_value(value, depth_limit=limit)
        if refusal:
            raise JsonRefused(refusal)
    return result


def parsed_encoded(value: Any, *, depth_limit: int | None = None) -> bytes:
    """`encoded` of a value parsed from JSON text (dicts, lists, text, numbers, booleans and
    None only), written by orjson where that gives the same bytes, in less than half the time
    (4.3 -> 1.8 us for a small description): a batch measures every description and entry
    value it checks. `encoded` writes the rest: where fastjson's checks say orjson writes
    otherwise (floats under 1e-4 or with a one-digit negative exponent, DEL), where a `null`
    may be a NaN or an Infinity (orjson writes those as null; json refuses them), and what
    orjson does not take (an integer past 64 bits, a lone surrogate). Only for parsed values:
    orjson would also write a UUID or an Enum, which json refuses."""
    try:
        result = orjson.dumps(value, option=fastjson.PASSTHROUGH | orjson.OPT_PASSTHROUGH_SUBCLASS)
    except TypeError:
        return encoded(value, depth_limit=depth_limit)
    if b"null" in result or fastjson.orjson_differs(result) or b"\\u0000" in result:
        return encoded(value, depth_limit=depth_limit)
    limit = max_depth() if depth_limit is None else depth_limit
    if nesting_depth_exceeds(result, limit):
        return encoded(value, depth_limit=depth_limit)
    return result


def refusal_of_value(value: Any, *, depth_limit: int | None = None) -> str | None:
    """Why an already parsed value could not be taken as JSON (too deep, not finite, a lone
    surrogate or NUL in its text, an integer too long to write), or None; without recursion."""
    limit = max_depth() if depth_limit is None else depth_limit
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= limit:
                return f"The value nests deeper than {limit} levels."
            children = item.items() if isinstance(item, dict) else ((None, child) for child in item)
            for key, child in children:
                if isinstance(key, str) and _text_refusal(key):
                    return f"A key {_text_refusal(key)}"
                stack.append((child, depth + 1))
        else:
            refusal = _scalar_refusal(item)
            if refusal:
                return refusal
    return None


def _scalar_refusal(item: Any) -> str | None:
    """Why a value that holds no others could not be taken as JSON, or None."""
    if isinstance(item, str):
        refusal = _text_refusal(item)
        return f"A string {refusal}" if refusal else None
    if isinstance(item, float):
        return None if math.isfinite(item) else f"{item} is not a JSON number."
    if isinstance(item, int) and item.bit_length() > 14_000:
        # About 4,200 digits: past Python's own 4,300 it could not be written as JSON.
        return "The integer is too long."
    return None


def _text_refusal(value: str) -> str:
    if "\x00" in value:
        return "holds a NUL character (\\u0000), which cannot be stored."
    try:
        value.encode()
    except UnicodeEncodeError:
        return "holds a lone surrogate, which is not text."
    return ""
