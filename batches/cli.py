"""Command-line client of the batch API: `batch COMMAND ...` (installed with the project) or
`python -m batches.cli COMMAND ...`.

It uses only the public HTTP API, so it works against any deployment, local files or S3:

    submit FILE --operation OP [--batch-dict KEY=VALUE ...] [--error-budget N|P%]
           (`batch submit --help` shows one example line per operation)
           [--not-before TIME] [--deadline TIME | --complete-within SECONDS] [--priority N]
           [--after BATCH[:REQUIRE] ...] [--validate-only] [--wait]
    wait BATCH
    status BATCH [--json]       (why it waits, its place in the queue, when it should end)
    summary BATCH [--json]      (totals, failures by subcode, the files' SHA-256)
    download BATCH [--errors] [--partial] [--csv] -o FILE
    cancel BATCH
    pause BATCH / resume BATCH
    list [--status STATUS] [--operation OP]

The base URL and the secret come from --url and --secret, or BATCH_API_URL and
BATCH_API_SECRET. Progress bars go to standard error when it is a terminal; what a script
wants (a batch id, a batch's JSON, a list) goes to standard output; `status` and `summary`
print for a person unless given --json.

Exit codes: 0 success; 1 the batch ended other than completed (hash_mismatch,
validation_failed, cancelled); 2 the API refused the request or could not be reached.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
from tqdm import tqdm

from batches.durations import time_since, time_until
from twins.examples import EXAMPLE_LINES, MIXED, MIXED_EXAMPLE_LINES, TWIN

BLOCK_BYTES = 1 << 20
TERMINAL = {"completed", "hash_mismatch", "validation_failed", "cancelled"}
TIMEOUT_SECONDS = 60
CREATE_ATTEMPTS = 3
CSV_SUFFIXES = {".csv"}
# Handlers are random UUIDs; the nil UUID is never one.
NO_HANDLER = "00000000-0000-0000-0000-000000000000"


class ApiError(Exception):
    def __init__(self, response: requests.Response):
        self.status_code = response.status_code
        try:
            body = response.json()
            detail = f"{body['subcode']}: {body['description']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200]
        super().__init__(f"{response.request.method} {response.url} answered {response.status_code} {detail}")


def progress(**options) -> tqdm:
    return tqdm(file=sys.stderr, disable=None, dynamic_ncols=True, **options)


class Api:
    def __init__(self, *, url: str, secret: str):
        self.base = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = secret

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.session.request(method, self.base + path, timeout=TIMEOUT_SECONDS, **kwargs)
        if not response.ok:
            raise ApiError(response)
        return response.json()


class ProgressReader:
    """A file read block by block for an upload, moving a progress bar; `len()` gives
    requests the Content-Length, so the body streams instead of being read whole."""

    def __init__(self, file, size: int, bar: tqdm):
        self.file = file
        self.size = size
        self.bar = bar

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = BLOCK_BYTES) -> bytes:
        block = self.file.read(size if size and size > 0 else BLOCK_BYTES)
        self.bar.update(len(block))
        return block


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file, progress(total=path.stat().st_size, unit="B", unit_scale=True) as bar:
        bar.set_description("hashing")
        while block := file.read(BLOCK_BYTES):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def content_type_of(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes if suffix.lower() != ".gz"]
    return "text/csv" if suffixes and suffixes[-1] in CSV_SUFFIXES else "application/x-ndjson"


def key_value(pair: str) -> tuple[str, object]:
    """KEY=VALUE of --batch-dict; a VALUE that parses as JSON is taken as JSON, else as a string."""
    key, sep, value = pair.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"wants KEY=VALUE, got {pair!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def error_budget(text: str) -> dict:
    """--error-budget: N (at most N failed lines) or P% (at most P percent of the lines run,
    judged from 100 lines on)."""
    try:
        if text.endswith("%"):
            return {"max_failed_ratio": float(text[:-1]) / 100}
        return {"max_failed": int(text)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants N or P%, got {text!r}") from None


def field_names(text: str) -> list[str]:
    """--echo: one name or a comma list; the service refuses an empty or repeated name."""
    return [name.strip() for name in text.split(",")]


def moment(text: str) -> float:
    """--not-before, --deadline: an ISO 8601 time (without a zone: this machine's) or +SECONDS
    from now; Unix seconds for the API."""
    try:
        if text.startswith("+"):
            seconds = float(text[1:])
            if not 0 <= seconds < 1e10:
                raise ValueError(text)
            return round(time.time() + seconds, 3)
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:
            when = when.astimezone()
        return round(when.astimezone(UTC).timestamp(), 3)
    except (ValueError, OverflowError, OSError):
        raise argparse.ArgumentTypeError(
            f"wants an ISO 8601 time (2026-12-24T18:00:00+01:00) or +SECONDS, got {text!r}"
        ) from None


def seconds_ahead(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 1e10:
        raise argparse.ArgumentTypeError(f"wants seconds above 0, got {text!r}")
    return seconds


def priority(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 9):
        raise argparse.ArgumentTypeError(f"wants an integer from 1 to 9, got {text!r}")
    return int(text)


REQUIREMENTS = ("completed", "no_failures", "terminal")


def requirement(text: str) -> dict:
    """--after BATCH[:REQUIRE], REQUIRE completed (the default), no_failures or terminal."""
    batch_id, _, require = text.partition(":")
    try:
        uuid.UUID(batch_id)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a batch id, got {batch_id!r}") from None
    require = require or "completed"
    if require not in REQUIREMENTS:
        raise argparse.ArgumentTypeError(f"REQUIRE is one of {', '.join(REQUIREMENTS)}, got {require!r}")
    return {"batch": batch_id, "require": require}


def upload(api: Api, path: Path) -> str:
    """PUTs the file to a fresh upload URL; returns its handler. The URL is the credential, so
    the secret is not sent with the file (it may go to S3, not to the service)."""
    issued = api.call("POST", "/cache")
    size = path.stat().st_size
    with path.open("rb") as file, progress(total=size, unit="B", unit_scale=True) as bar:
        bar.set_description("uploading")
        response = requests.put(
            issued["url"],
            data=ProgressReader(file, size, bar),
            headers={"Content-Type": content_type_of(path)},
            timeout=TIMEOUT_SECONDS,
        )
    if not response.ok:
        raise ApiError(response)
    return issued["handler"]


def wait(api: Api, batch_id: str, *, interval: float) -> dict:
    with progress(total=None, unit="line") as bar:
        while True:
            batch = api.call("GET", f"/batches/{batch_id}")
            counts = batch["progress"]
            bar.set_description(batch["status"], refresh=False)
            if counts["total"] is not None:
                bar.total = counts["total"]
            bar.set_postfix_str(f"succeeded={counts['succeeded']} failed={counts['failed']}", refresh=False)
            bar.n = counts["processed"]
            bar.refresh()
            if batch["status"] in TERMINAL:
                return batch
            time.sleep(interval)


def print_json(value) -> None:
    print(json.dumps(value, indent=2))


def finished(batch: dict) -> int:
    print_json(batch)
    return 0 if batch["status"] == "completed" else 1


def create_batch(api: Api, body: dict) -> dict:
    """POST /batches under one Idempotency-Key, sent again with the same key when the answer
    was lost or the server failed: a retry returns the batch the first request created
    instead of running every line twice."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    for attempt in range(1, CREATE_ATTEMPTS):
        try:
            return api.call("POST", "/batches", json=body, headers=headers)
        except requests.RequestException:
            pass
        except ApiError as error:
            if error.status_code < 500:
                raise
        time.sleep(attempt)
    return api.call("POST", "/batches", json=body, headers=headers)


def check_before_upload(api: Api, body: dict) -> None:
    """Asks the service to create the batch with a handler that no upload has. Every other rule
    (the operation, the caller's right to it, the hash, batch_dict) is checked before the
    handler, so `handler_unknown` means the real request will pass them: an unknown or
    forbidden operation stops here, before a byte is uploaded."""
    response = api.session.post(
        api.base + "/batches", json={**body, "handler": NO_HANDLER}, timeout=TIMEOUT_SECONDS
    )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not (
        response.status_code == 404
        and isinstance(answer, dict)
        and answer.get("subcode") == "handler_unknown"
    ):
        raise ApiError(response)


def command_submit(api: Api, args) -> int:
    path = Path(args.file)
    body = {"operation": args.operation, "hash": file_sha256(path)}
    if args.batch_dict:
        body["batch_dict"] = dict(args.batch_dict)
    if args.error_budget:
        body["error_budget"] = args.error_budget
    if args.validate_only:
        body["validate_only"] = True
    if args.id_field is not None:
        body["id_field"] = args.id_field
    if args.echo:
        body["echo_fields"] = [name for names in args.echo for name in names]
    schedule = {
        "not_before": args.not_before,
        "deadline_ts": args.deadline,
        "complete_within": args.complete_within,
        "priority": args.priority,
        "after": args.after or None,
    }
    body.update({name: value for name, value in schedule.items() if value is not None})
    check_before_upload(api, body)
    body["handler"] = upload(api, path)
    batch = create_batch(api, body)
    if args.wait:
        return finished(wait(api, batch["batch"], interval=args.interval))
    print(batch["batch"])
    return 0


def command_wait(api: Api, args) -> int:
    return finished(wait(api, args.batch, interval=args.interval))


def local_time(ts: float) -> str:
    """A timestamp in this machine's time zone, with the date when it is not today."""
    when = datetime.fromtimestamp(ts).astimezone()
    today = when.date() == datetime.now().astimezone().date()
    return when.strftime("%H:%M %Z" if today else "%Y-%m-%d %H:%M %Z")


def print_fields(fields: list[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name:<{width}}  {value}")


def progress_text(counts: dict) -> str:
    if counts["total"] is None:
        return (
            f"{counts['processed']} lines so far: {counts['succeeded']} succeeded, {counts['failed']} failed"
        )
    return (
        f"{counts['processed']} of {counts['total']} lines: "
        f"{counts['succeeded']} succeeded, {counts['failed']} failed"
    )


def waiting_fields(batch: dict) -> list[tuple[str, object]]:
    """Why a batch that has not ended waits, its place in the queue, when it should end and
    since when it stalled: each only when the batch has it."""
    fields = []
    if batch.get("status_reason"):
        fields.append(("reason", f"{batch['status_reason']} — {batch['status_reason_description']}"))
    if batch.get("queue"):
        fields.append(("queue", f"place {batch['queue']['position']} in the account's queue (1 starts next)"))
    counts = batch["progress"]
    if counts.get("eta_ts") is not None:
        rate = f", at {counts['rate_lps']:,.1f} lines/s" if counts.get("rate_lps") is not None else ""
        fields.append(
            ("ends", f"{local_time(counts['eta_ts'])} ({time_until(counts['eta_ts'] - time.time())}){rate}")
        )
    if batch.get("stalled_since") is not None:
        stalled = batch["stalled_since"]
        fields.append(("stalled", f"since {local_time(stalled)} ({time_since(time.time() - stalled)})"))
    return fields


def command_status(api: Api, args) -> int:
    batch = api.call("GET", f"/batches/{args.batch}")
    if args.json:
        print_json(batch)
        return 0
    fields = [
        ("batch", batch["batch"]),
        ("status", batch["status"]),
        ("progress", progress_text(batch["progress"])),
    ]
    if batch.get("reason"):
        fields.append(("stopped", batch["reason"]))
    print_fields(fields + waiting_fields(batch))
    return 0


def print_table(head: tuple[str, ...], rows: list[tuple], numbers: set[int]) -> None:
    """Columns as wide as their widest cell; the `numbers` columns aligned right."""
    widths = [max(len(str(row[column])) for row in [head, *rows]) for column in range(len(head))]
    for row in [head, *rows]:
        cells = [
            str(cell).rjust(width) if column in numbers else str(cell).ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def print_summary(summary: dict) -> None:
    so_far = " (so far: the batch is running)" if summary.get("partial") else ""
    total = "?" if summary["total"] is None else summary["total"]
    print_fields(
        [
            ("lines", f"{total}{so_far}"),
            ("succeeded", summary["succeeded"]),
            ("failed", summary["failed"]),
            ("not executed", summary["not_executed"]),
        ]
    )
    # The API lists the subcodes with the most lines first.
    by_subcode = summary["by_subcode"].items()
    if by_subcode:
        print()
        rows = [
            (
                subcode,
                counted["count"],
                ", ".join(map(str, counted["lines"]))
                + (", …" if counted["count"] > len(counted["lines"]) else ""),
            )
            for subcode, counted in by_subcode
        ]
        print_table(("subcode", "lines", "first lines"), rows, numbers={1})
    files = [(part, summary[part]) for part in ("results", "errors") if summary.get(part)]
    if files:
        print()
        rows = [(part, file["lines"], file["bytes"], file["sha256"]) for part, file in files]
        print_table(("file", "lines", "bytes", "sha256"), rows, numbers={1, 2})


def command_summary(api: Api, args) -> int:
    batch = api.call("GET", f"/batches/{args.batch}")
    summary = batch.get("summary")
    if args.json:
        print_json(summary)
    elif summary is None:
        print(f"no summary yet: the batch is {batch['status']}", file=sys.stderr)
    else:
        print_summary(summary)
    return 0


def command_download(api: Api, args) -> int:
    params = {
        "download": "true",
        "part": "errors" if args.errors else "results",
        "format": "csv" if args.csv else "json",
    }
    download = api.call("GET", f"/batches/{args.batch}", params=params)["download"]
    if download.get("partial") and not args.partial:
        print(
            "error: the batch is still running; --partial saves the lines run so far",
            file=sys.stderr,
        )
        return 2
    url = download["url"]
    # The download URL is its own credential (and may point at S3): no secret goes with it.
    with requests.get(url, stream=True, timeout=TIMEOUT_SECONDS) as response:
        if not response.ok:
            raise ApiError(response)
        size = int(response.headers.get("Content-Length", 0)) or None
        with open(args.output, "wb") as target, progress(total=size, unit="B", unit_scale=True) as bar:
            bar.set_description("downloading")
            for block in response.iter_content(BLOCK_BYTES):
                target.write(block)
                bar.update(len(block))
    return 0


def command_cancel(api: Api, args) -> int:
    print_json(api.call("PATCH", f"/batches/{args.batch}", json={"status": "cancel"}))
    return 0


def command_pause(api: Api, args) -> int:
    print_json(api.call("PATCH", f"/batches/{args.batch}", json={"status": "paused"}))
    return 0


def command_resume(api: Api, args) -> int:
    print_json(api.call("PATCH", f"/batches/{args.batch}", json={"status": "processing"}))
    return 0


def command_list(api: Api, args) -> int:
    params = {key: value for key, value in (("status", args.status), ("operation", args.operation)) if value}
    while True:
        page = api.call("GET", "/batches", params=params)
        for batch_id, status in page["batches"].items():
            print(f"{batch_id}\t{status}")
        if not page["cursor"]:
            return 0
        params["cursor"] = page["cursor"]


def example_lines_help() -> str:
    width = max(map(len, EXAMPLE_LINES))
    lines = [f"  {name:<{width}}  {json.dumps(line)}" for name, line in EXAMPLE_LINES.items()]
    mixed = "\n".join(f"  {json.dumps(line)}" for line in MIXED_EXAMPLE_LINES)
    return (
        "One line of a file, per OP (the project's examples/ folder has whole files; "
        f"{TWIN} stands for a twin's uuid):\n" + "\n".join(lines) + f"\n\nOP {MIXED}: each line names its "
        "operation (op), may be named (ref) and may use an earlier named line's result "
        '({"$ref": "name.path"}), e.g.:\n' + mixed
    )


def parser() -> argparse.ArgumentParser:
    # `batch` when installed as the project's console script, else `python -m batches.cli`.
    prog = "batch" if Path(sys.argv[0]).name == "batch" else "python -m batches.cli"
    main = argparse.ArgumentParser(prog=prog, description="Client of the batch API.")
    main.add_argument("--url", default=os.environ.get("BATCH_API_URL"), help="base URL (BATCH_API_URL)")
    main.add_argument("--secret", default=os.environ.get("BATCH_API_SECRET"), help="(BATCH_API_SECRET)")
    commands = main.add_subparsers(dest="command", required=True)

    submit = commands.add_parser(
        "submit",
        help="upload a file and create a batch; prints its id",
        description="Uploads FILE (JSON Lines, or CSV with a header row; gzip accepted) and creates a "
        "batch that runs OP on every line.",
        epilog=example_lines_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("file")
    submit.add_argument("--operation", required=True, metavar="OP")
    submit.add_argument("--batch-dict", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    submit.add_argument(
        "--error-budget",
        type=error_budget,
        metavar="N|P%",
        help="stop the batch once more than N lines (or P%% of the lines run) failed",
    )
    submit.add_argument(
        "--validate-only", action="store_true", help="a dry run: only check every line, run none"
    )
    submit.add_argument(
        "--id-field",
        metavar="NAME",
        help="the key or column holding each line's own id, given back as each result line's id",
    )
    submit.add_argument(
        "--echo",
        action="append",
        type=field_names,
        default=[],
        metavar="NAME[,NAME...]",
        help="fields copied from each line into its result line's input (repeat, or a comma list)",
    )
    submit.add_argument(
        "--not-before",
        type=moment,
        metavar="TIME",
        help="start no earlier than TIME: ISO 8601 (no zone: this machine's) or +SECONDS from now",
    )
    deadline = submit.add_mutually_exclusive_group()
    deadline.add_argument(
        "--deadline", type=moment, metavar="TIME", help="stop the batch if it has not ended by TIME"
    )
    deadline.add_argument(
        "--complete-within",
        type=seconds_ahead,
        metavar="SECONDS",
        help="stop the batch if it has not ended SECONDS after it is created",
    )
    submit.add_argument(
        "--priority", type=priority, metavar="N", help="1 to 9 (default 5): higher starts first"
    )
    submit.add_argument(
        "--after",
        action="append",
        type=requirement,
        default=[],
        metavar="BATCH[:REQUIRE]",
        help="start once BATCH completed (REQUIRE completed, the default), completed with no "
        "failed line (no_failures) or ended at all (terminal); repeat for more",
    )
    submit.add_argument("--wait", action="store_true", help="then wait as `wait` does")
    submit.set_defaults(run=command_submit)

    wait_ = commands.add_parser("wait", help="show progress until the batch ends; prints it")
    wait_.add_argument("batch")
    wait_.set_defaults(run=command_wait)

    status = commands.add_parser(
        "status",
        help="the batch's status and progress, why it waits and when it should end",
        description="Prints the batch's status and progress and, while it has not ended, why it waits "
        "(its status reason), its place in the queue before a worker starts it, when it should end at "
        "the current rate (in this machine's time zone) and since when it stalled.",
    )
    status.add_argument("batch")
    status.set_defaults(run=command_status)

    summary = commands.add_parser(
        "summary",
        help="the batch's totals, failed lines by subcode and its files' SHA-256",
        description="Prints the batch's summary: lines succeeded, failed and not executed, the "
        "subcodes of the lines that did not succeed (with the first line numbers of each) and, once "
        "it ended, the results and errors files' lines, bytes and SHA-256, which a downloaded file "
        "can be checked against. While it runs, the counts so far.",
    )
    summary.add_argument("batch")
    summary.set_defaults(run=command_summary)

    for command in (status, summary):
        command.add_argument("--json", action="store_true", help="print it as the API gives it")

    download = commands.add_parser("download", help="save the results file (or only the failed lines)")
    download.add_argument("batch")
    download.add_argument("--errors", action="store_true", help="only the lines that failed or never ran")
    download.add_argument(
        "--partial", action="store_true", help="while the batch runs: the lines run so far, in line order"
    )
    download.add_argument(
        "--csv",
        action="store_true",
        help="as CSV (line,id,status,subcode,description,result, then input.<name> per echoed field)",
    )
    download.add_argument("-o", "--output", required=True)
    download.set_defaults(run=command_download)

    cancel = commands.add_parser("cancel", help="ask the batch to stop")
    cancel.add_argument("batch")
    cancel.set_defaults(run=command_cancel)

    pause = commands.add_parser("pause", help="pause a processing batch: running chunks finish, none start")
    pause.add_argument("batch")
    pause.set_defaults(run=command_pause)

    resume = commands.add_parser("resume", help="resume a paused batch")
    resume.add_argument("batch")
    resume.set_defaults(run=command_resume)

    list_ = commands.add_parser("list", help="every batch of the account: id and status")
    list_.add_argument("--status")
    list_.add_argument("--operation")
    list_.set_defaults(run=command_list)

    for command in (submit, wait_):
        command.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.url or not args.secret:
        print("error: give --url and --secret, or set BATCH_API_URL and BATCH_API_SECRET", file=sys.stderr)
        return 2
    try:
        return args.run(Api(url=args.url, secret=args.secret), args)
    except (ApiError, requests.RequestException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
