"""Where a batch's files live in storage (Django's default storage: local files or S3)."""


def upload_file_name(*, account_id, handler) -> str:
    return f"uploads/{account_id}/{handler}"


def batch_file_name(*, account_id, batch_id, name: str) -> str:
    """`name` is one of: input (the batch's own copy), prepared.jsonl (validated, normalised
    lines), results.jsonl, errors.jsonl."""
    return f"batches/{account_id}/{batch_id}/{name}"
