"""The batch state machine's table (docs/contract.md, section 4): every allowed transition, declared once,
and the sets of statuses derived from it. A leaf module: anything may read it; only
batches.states moves a batch."""

from batches.models import BatchStatus

S = BatchStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.COPYING, S.CANCEL}),
    # copying -> validation_failed: a retry whose original's files were deleted before its
    # first step read them (batches.pipeline.retrying).
    S.COPYING: frozenset({S.COPIED, S.HASH_MISMATCH, S.VALIDATION_FAILED, S.CANCEL}),
    S.HASH_MISMATCH: frozenset({S.DELETING}),
    S.COPIED: frozenset({S.VALIDATING, S.CANCEL}),
    # validating -> completed: a dry run (validate_only) stops after validation, its results
    # file (every line validate_only) published by this one move.
    S.VALIDATING: frozenset({S.PROCESSING, S.VALIDATION_FAILED, S.COMPLETED, S.CANCEL}),
    S.VALIDATION_FAILED: frozenset({S.DELETING}),
    S.PROCESSING: frozenset({S.PROCESSED, S.PAUSED, S.CANCEL}),
    # A paused batch holds no worker; it resumes, or is cancelled, or its deadline cancels it.
    S.PAUSED: frozenset({S.PROCESSING, S.CANCEL}),
    S.PROCESSED: frozenset({S.WRITING_RESULTS}),
    S.WRITING_RESULTS: frozenset({S.COMPLETED}),
    S.COMPLETED: frozenset({S.DELETING}),
    S.CANCEL: frozenset({S.CANCELLING}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.CANCELLED: frozenset({S.DELETING}),
    S.DELETING: frozenset(),
}

TERMINAL = frozenset({S.HASH_MISMATCH, S.VALIDATION_FAILED, S.COMPLETED, S.CANCELLED})
CANCELLABLE = frozenset(status for status, targets in TRANSITIONS.items() if S.CANCEL in targets)
CANCEL_REQUESTED = frozenset({S.CANCEL, S.CANCELLING})
# Still moving on its own: a worker owes it a next step.
ACTIVE = frozenset(TRANSITIONS) - TERMINAL - {S.DELETING}


def can_move(source: str, target: str) -> bool:
    return target in TRANSITIONS.get(source, ())
