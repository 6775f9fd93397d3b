"""The pipeline's own infrastructure faults (retried: the whole chunk or step runs again
later), beside the database's and the storage's in batchsite.faults; a line's own errors fail
that line and the batch goes on."""

from batchsite.faults import RetriedFault


class ChunkIncomplete(RetriedFault):
    """A chunk read fewer lines than it owns: the prepared file is not what validation wrote.
    The chunk is not committed."""


class StorageReadError(RetriedFault):
    """Reading the batch's own file from storage failed (not the file's content): retried."""
