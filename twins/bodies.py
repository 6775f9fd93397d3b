"""Response bodies in Trusted Twin's shapes, built as plain dicts (see twins.serializers for
their schema)."""

from batchsite.timestamps import to_ts
from twins.models import Identity, Twin, TwinStatus


def twin_body(twin: Twin) -> dict:
    owner = str(twin.account_id)
    updated = to_ts(twin.updated_at)
    # A new twin's two times are one value: converted once (a batch makes a million).
    created = updated if twin.created_at is twin.updated_at else to_ts(twin.created_at)
    body = {
        "status": twin.status,
        "owner": owner,
        "updated_ts": updated,
        "creation_certificate": {"uuid": str(twin.uuid), "created_ts": created, "creator": owner},
    }
    if twin.description is not None:
        body["description"] = twin.description
    if twin.status == TwinStatus.TERMINATED:
        body["termination_certificate"] = {
            "issuer": str(twin.account_id),
            "terminated_ts": to_ts(twin.terminated_at),
        }
    return body


def identity_body(identity: Identity, *, creator) -> dict:
    return {
        "validity_ts": to_ts(identity.validity_at),
        "visibility": identity.visibility,
        "created_ts": to_ts(identity.created_at),
        "updated_ts": to_ts(identity.updated_at),
        "creation_certificate": {
            "created_ts": to_ts(identity.created_at),
            "creator": str(creator),
            "identity": identity.identity,
        },
    }


def identity_summary_body(identity: Identity) -> dict:
    return {
        "validity_ts": to_ts(identity.validity_at),
        "created_ts": to_ts(identity.created_at),
        "updated_ts": to_ts(identity.updated_at),
    }


def entry_body(entry) -> dict:
    """A ledger entry, or a snapshot of one with the same fields."""
    return {
        "value": entry.value,
        "visibility": entry.visibility,
        "entry_created_ts": to_ts(entry.created_at),
        "entry_updated_ts": to_ts(entry.updated_at),
        "value_changed_ts": to_ts(entry.value_changed_at),
    }


def entries_body(entries: dict) -> dict:
    return {"entries": {key: entry_body(entry) for key, entry in entries.items()}}
