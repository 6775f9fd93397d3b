"""The contents of batch files."""

import json
import uuid

from twins.services import twins_create


def jsonl(records) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def twin_lines(count: int) -> bytes:
    """create_twin lines, each a twin with its own description."""
    return jsonl({"description": {"serial": n}} for n in range(count))


def updates(caller, count: int, *, bad_every: int = 0, first_bad: int = 0) -> bytes:
    """update_twin lines: line n updates an existing twin, except the bad ones, which name a
    twin that does not exist (valid input, 404 when run)."""
    twins = twins_create(account=caller.account, descriptions=[{"n": 0}] * count)
    records = []
    for number, twin in enumerate(twins, start=1):
        bad = (bad_every and number % bad_every == 0) or number == first_bad
        records.append({"twin": str(uuid.uuid4()) if bad else str(twin.uuid), "description": {"n": number}})
    return jsonl(records)
