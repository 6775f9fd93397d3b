"""Serving a large results file as CSV (docs/contract.md, section 15) against serving it as stored.

    .venv/bin/python bench/csv_download.py --lines 1000000

Writes a results file of `--lines` lines (with an id and two echoed fields, one line in ten
failed) into the storage of a data dir of its own (embedded mode: SQLite, local files), starts
gunicorn on it as `make web` does with one worker, and downloads the file through its signed
download URL as JSON Lines, then as CSV, `--rounds` times each, reading the body as a client
would. For each it reports the time, the bytes, and the peak resident memory of the gunicorn
processes (sampled every 50 ms) against their resident memory just before. The final download
endpoint reads no database row, so none is needed: the URLs are signed as the API signs them.
Appends one JSON line to bench/results/results.jsonl.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from pipeline_bench import WebServer, record

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / "var" / "csv-download"
BIN = Path(sys.executable).parent
RESULTS_NAME = "results/bench/results.jsonl"
ECHO_FIELDS = ["name", "qty"]
BLOCK_BYTES = 64 * 1024


def environment() -> dict:
    env = {
        key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "batchsite.settings",
        "DATA_DIR": str(DATA_DIR),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }


def setup_django() -> None:
    os.environ.update(environment())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def result_line(number: int) -> str:
    record = {
        "line": number,
        "status": 201,
        "id": f"rec-{number}",
        "input": {"name": f"Sensor {number}", "qty": number},
    }
    if number % 10 == 0:
        record |= {
            "status": 404,
            "error": {"subcode": "twin_not_found", "description": "No twin with this id."},
        }
    else:
        record["result"] = {
            "twin": str(uuid.UUID(int=number)),
            "status": "alive",
            "description": {"serial": number, "kind": "sensor"},
            "created_ts": 1764325200.123,
        }
    return json.dumps(record, separators=(",", ":")) + "\n"


def prepare_results(lines: int) -> str:
    """The results file in the data dir's storage, written once per size."""
    from django.core.files.storage import default_storage

    name = RESULTS_NAME.replace(".jsonl", f"-{lines}.jsonl")
    if not default_storage.exists(name):
        path = Path(default_storage.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("w") as out:
            for number in range(1, lines + 1):
                out.write(result_line(number))
        partial.rename(path)
    return name


def signed_urls(name: str, base_url: str) -> dict[str, str]:
    from batches.links import final_download_url
    from batches.models import Batch

    batch = Batch(results_file=name, echo_fields=ECHO_FIELDS)
    return {
        format: final_download_url(batch=batch, part="results", base_url=base_url, format=format).url
        for format in ("json", "csv")
    }


def resident_kib(pid: int) -> int:
    from tests.support.process_memory import PeakMemory

    sampler = PeakMemory(pid)
    time.sleep(0.2)
    return round(sampler.stop() * 1024)


def timed_download(url: str, pid: int) -> dict:
    import requests

    from tests.support.process_memory import PeakMemory

    before_kib = resident_kib(pid)
    sampler = PeakMemory(pid)
    started = time.perf_counter()
    size = 0
    with requests.get(url, stream=True, timeout=600) as response:
        response.raise_for_status()
        for block in response.iter_content(BLOCK_BYTES):
            size += len(block)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "bytes": size,
        "mib_per_s": round(size / 2**20 / seconds, 1),
        "rss_before_mib": round(before_kib / 1024, 1),
        "rss_peak_mib": round(sampler.stop(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads of its one worker")
    arguments = parser.parse_args()

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=environment(),
        check=True,
    )
    setup_django()
    name = prepare_results(arguments.lines)
    from django.core.files.storage import default_storage

    measures = {"lines": arguments.lines, "file_bytes": default_storage.size(name)}
    with WebServer(1, threads=arguments.threads, env=environment(), log_dir=DATA_DIR) as server:
        urls = signed_urls(name, server.base)
        for round_number in range(1, arguments.rounds + 1):
            for format, url in urls.items():
                measures[f"{format}_{round_number}"] = timed_download(url, server.process.pid)
    record({"measure": "csv_download", **measures})


if __name__ == "__main__":
    main()
