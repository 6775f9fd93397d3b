"""Mixed batch files of devices (docs/contract.md, section 16), and what a run of one must leave."""

from twins.examples import device_import
from twins.models import Identity, LedgerEntry, Twin


def device_lines(count: int, *, first: int = 0) -> list[dict]:
    """The import issue 29 names: per device a twin, its identity and a ledger entry."""
    return [line for device in range(first, first + count) for line in device_import(device)]


def by_kind(lines: list[dict]) -> list[dict]:
    """Device lines laid out as every twin, then every identity, then every entry: each chunk
    of identities or entries refers to lines of earlier chunks and waits for them."""
    return lines[0::3] + lines[1::3] + lines[2::3]


def assert_devices_whole(caller, count: int) -> None:
    """Each device's twin has exactly its own identity and entry."""
    twins = {twin.description["serial"]: twin for twin in Twin.objects.filter(account=caller.account)}
    assert len(twins) == Twin.objects.filter(account=caller.account).count()
    assert sorted(twins) == list(range(count))
    identities = Identity.objects.filter(twin__account=caller.account).values_list("identity", "twin")
    entries = LedgerEntry.objects.filter(twin__account=caller.account).values_list("twin", "value")
    assert sorted(identities) == sorted((f"RFID#D{n}", twin.uuid) for n, twin in twins.items())
    assert sorted(entries, key=lambda entry: entry[1]) == [(twins[n].uuid, n) for n in range(count)]
