"""One example batch line per batchable operation: shown on the upload form and in `batch
--help`, and the first line of `examples/<operation>.jsonl` (a test holds them together and
runs every example file through a batch). Plain data, importable without Django, for the
command-line client.

`TWIN_UUID` stands for a twin of the caller's account: replace it with one that
`create_twin` made (its results give `creation_certificate.uuid`).

A mixed batch (`operation: "mixed"`) needs no such stand-in: its lines name their operation
and refer to the twin an earlier line creates (`MIXED_EXAMPLE_LINES`, the start of
`examples/mixed.jsonl`)."""

TWIN = "TWIN_UUID"

EXAMPLE_LINES: dict[str, dict] = {
    "create_twin": {"description": {"kind": "sensor", "site": "north"}},
    "get_twin": {"twin": TWIN},
    "update_twin": {"twin": TWIN, "description": {"site": "south"}},
    "terminate_twin": {"twin": TWIN},
    "create_twin_identity": {"twin": TWIN, "identities": {"RFID#A0001": {}}},
    "get_twin_identities": {"twin": TWIN},
    "delete_twin_identity": {"twin": TWIN, "identity": "RFID#A0001"},
    "resolve_twin_identity": {"identity": "RFID#A0001"},
    "add_twin_ledger_entry": {"twin": TWIN, "entries": {"temperature": {"value": 21.5}}},
    "get_twin_ledger_entry": {"twin": TWIN, "entries": ["temperature"]},
    "update_twin_ledger_entry": {"twin": TWIN, "entries": {"temperature": {"value": 22.0}}},
    "delete_twin_ledger_entry": {"twin": TWIN, "entries": ["temperature"]},
}

MIXED = "mixed"
MIXED_EXAMPLE_LINES: list[dict] = [
    {"op": "create_twin", "ref": "pump1", "description": {"kind": "pump", "site": "north"}},
    {
        "op": "create_twin_identity",
        "ref": "pump1_rfid",
        "twin": {"$ref": "pump1.creation_certificate.uuid"},
        "identities": {"RFID#P0001": {}},
    },
    {
        "op": "add_twin_ledger_entry",
        "twin": {"$ref": "pump1.creation_certificate.uuid"},
        "entries": {"temperature": {"value": 21.5}},
    },
]


def device_import(device: int) -> list[dict]:
    """One device of the import issue 29 names, as mixed lines: a twin named `t<device>`, then
    its identity and a ledger entry, both on the twin the first line creates. The tests and the
    benchmark run files of these."""
    twin = {"$ref": f"t{device}.creation_certificate.uuid"}
    return [
        {"op": "create_twin", "ref": f"t{device}", "description": {"serial": device, "kind": "sensor"}},
        {"op": "create_twin_identity", "twin": twin, "identities": {f"RFID#D{device}": {}}},
        {"op": "add_twin_ledger_entry", "twin": twin, "entries": {"installed": {"value": device}}},
    ]
