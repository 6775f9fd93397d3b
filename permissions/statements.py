"""What a role's statement grants, as a set of action names.

This is the only place that reads the statement JSON: services use it to materialise the
statement as guardian object permissions, and every check afterwards asks guardian.
"""

from collections.abc import Iterable

from permissions.actions import ACTIONS

EVERYTHING = {"effect": "deny", "actions": None}


def granted_actions(statement: dict | None, catalogue: Iterable[str] = ACTIONS) -> set[str]:
    """`allow` grants only the listed actions (none when the list is null); `deny` grants
    everything but the listed ones (everything when null); no statement grants everything."""
    statement = statement or EVERYTHING
    listed = set(statement.get("actions") or ())
    if statement["effect"] == "allow":
        return set(catalogue) & listed
    return set(catalogue) - listed
