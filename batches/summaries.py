"""A batch's summary (docs/contract.md, accounting): its lines counted by outcome, its failed
and never-run lines by subcode, and the lines, bytes and SHA-256 of its results and errors
files. Everything is counted as the pipeline writes it, never by reading a file back.

`succeeded + failed + not_executed == total` in a final summary; in a partial one (a batch
still running) the three add up to the lines done so far."""

import hashlib

FIRST_LINES = 5


class SubcodeTally:
    """Lines by subcode, `{subcode: {"count", "lines": [the first FIRST_LINES line numbers]}}`,
    added in line order."""

    def __init__(self):
        self.counts: dict[str, dict] = {}

    def add(self, subcode: str, line: int) -> None:
        entry = self.counts.get(subcode)
        if entry is None:
            self.counts[subcode] = {"count": 1, "lines": [line]}
            return
        entry["count"] += 1
        if len(entry["lines"]) < FIRST_LINES:
            entry["lines"].append(line)

    def add_lines(self, subcode: str, lines: list[int]) -> None:
        if lines:
            self.merge({subcode: {"count": len(lines), "lines": lines[:FIRST_LINES]}})

    def merge(self, counts: dict) -> None:
        """Adds another tally's counts, of lines that come after this tally's."""
        for subcode, other in counts.items():
            entry = self.counts.setdefault(subcode, {"count": 0, "lines": []})
            entry["count"] += other["count"]
            entry["lines"] = (entry["lines"] + other["lines"])[:FIRST_LINES]

    def total(self) -> int:
        return sum(entry["count"] for entry in self.counts.values())


class FileDigest:
    """The lines, bytes and SHA-256 of a file, counted from the bytes as they are written (or
    as storage reads them to store them)."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.lines = 0

    def update(self, data: bytes, lines: int | None = None) -> None:
        """Adds `data`, holding `lines` lines when the writer knows (counted otherwise)."""
        self.sha256.update(data)
        self.bytes += len(data)
        self.lines += data.count(b"\n") if lines is None else lines

    def as_dict(self) -> dict:
        return {"lines": self.lines, "bytes": self.bytes, "sha256": self.sha256.hexdigest()}


def summary_final(
    *,
    succeeded: int,
    failed: int,
    not_executed: int,
    subcodes: SubcodeTally,
    results: FileDigest | None,
    errors: FileDigest | None,
) -> dict:
    """A terminal batch's summary, stored with the transition that publishes its files."""
    return {
        "total": succeeded + failed + not_executed,
        "succeeded": succeeded,
        "failed": failed,
        "not_executed": not_executed,
        "by_subcode": subcodes.counts,
        "results": results.as_dict() if results else None,
        "errors": errors.as_dict() if errors else None,
    }


def summary_without_lines() -> dict:
    """The summary of a batch that ended before it read a line (a hash mismatch, a retry whose
    original's files were gone): it holds no lines and has no files."""
    return summary_final(
        succeeded=0, failed=0, not_executed=0, subcodes=SubcodeTally(), results=None, errors=None
    )


def summary_partial(*, total: int, succeeded: int, failed: int, subcodes: SubcodeTally) -> dict:
    """A running batch's summary: the lines done so far, no files yet. Lines are not_executed
    only once the batch has stopped, so none are here."""
    return {
        "total": total,
        "succeeded": succeeded,
        "failed": failed,
        "not_executed": 0,
        "by_subcode": subcodes.counts,
        "partial": True,
    }


def summary_shown(summary: dict) -> dict:
    """The summary in the order the API shows it (a JSON column on PostgreSQL keeps no key
    order): its keys as documented, subcodes by count, most first."""
    ordered = {key: summary[key] for key in ("total", "succeeded", "failed", "not_executed")}
    entries = sorted(summary["by_subcode"].items(), key=lambda item: (-item[1]["count"], item[0]))
    ordered["by_subcode"] = {
        subcode: {"count": entry["count"], "lines": entry["lines"]} for subcode, entry in entries
    }
    for key in ("results", "errors"):
        if key in summary:
            files = summary[key]
            ordered[key] = files and {name: files[name] for name in ("lines", "bytes", "sha256")}
    if summary.get("partial"):
        ordered["partial"] = True
    return ordered
