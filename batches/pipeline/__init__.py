"""The batch pipeline (docs/contract.md, sections 4 to 7): copy, validate, process in chunks, write results,
cancel and delete.

`driver` is the entry point: Celery tasks call it and nothing else. One module per step:
`reading` (lines of the input and of the prepared file), `copying`, `validating`, `chunks`
(claiming and running chunks, fairly across accounts), `results` (the results file, and
finishing a cancel), `maintenance` (resuming, expiry, purging). `lease` gives a single-worker
step its one owner, `faults` says which errors are retried.
"""

from batches.pipeline.reading import input_lines, prepared_name_of

__all__ = ["input_lines", "prepared_name_of"]
