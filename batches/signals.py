"""What batches tell the apps that listen (notifications writes its outbox, operating counts
usage and metrics), so that batches imports none of them. Each is sent inside the transaction
of the change it reports: a receiver's writes commit or roll back with it, and a receiver that
raises rolls the change back."""

from django.dispatch import Signal

# Sent by batches.states.batch_transition once the history row is written, with `batch` (as it
# is after the move), `source`, `target` and `source_entered_at` (when the batch entered
# `source`).
batch_transitioned = Signal()

# Sent by a chunk once its lines ran, in the transaction that marks it done, with `batch`,
# `lines`, `failed` and `seconds` (the time the chunk took).
chunk_lines_ran = Signal()

# Sent by the sweep (batches.pipeline.maintenance.stalls_record) once per stall, in the
# transaction that sets the batch's `stalled_since`, with `batch` (as it is then).
batch_stalled = Signal()
