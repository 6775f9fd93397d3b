"""A tiny run of `make bench`'s harness (bench/pipeline_bench.py all): every measure runs on
real processes and the final key=value line names every measure and ratio. No target is
asserted here; sizes are far too small for the numbers to mean anything.

Needs PostgreSQL and Redis (the services mode of the suite): the harness drops and creates
its own database, named after the suite's with `_bench_smoke` added."""

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = os.environ.get("DATABASE_URL", "")
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATABASE_URL.startswith("postgres") and BROKER_URL.startswith("redis")),
        reason="the benchmark runs on PostgreSQL + Redis only",
    ),
]


@pytest.fixture
def bench_database_url():
    parts = urllib.parse.urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/") + "_bench_smoke"
    yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_bench_all_prints_every_measure_and_ratio(bench_database_url, tmp_path):
    sizes = "--lines 2000 --memory-small-lines 500 --cancel-lines 20000"
    sizes += " --update-lines 1000 --update-twins 100"
    sizes += " --scheduled-batches 200 --scheduled-waiting 20 --scheduled-repetitions 20 --scheduled-sweeps 2"
    sizes += " --scale-finished 2000 --scale-active 100 --scale-accounts 10 --scale-repetitions 2"
    durations = "--single-seconds 1 --api-seconds 1 --clients 4 --api-accounts 2 --threads 2 --web-workers 1"
    finished = subprocess.run(
        [
            sys.executable,
            "bench/pipeline_bench.py",
            f"--database-url={bench_database_url}",
            f"--broker-url={BROKER_URL}",
            "--keep-broker",
            "all",
            *sizes.split(),
            *durations.split(),
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_PORT": str(free_port()), "BENCH_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    final = dict(pair.split("=", 1) for pair in finished.stdout.strip().splitlines()[-1].split())
    for status in ("w1_status", "w2_status", "mixed_status", "update_status"):
        assert final[status] == "completed"
    for key in (
        "single_calls_per_s",
        "copy_rows_per_s",
        "w1_lines_per_s",
        "w2_lines_per_s",
        "w1_validate_s",
        "w2_process_s",
        "mixed_lines_per_s",
        "mixed_validate_s",
        "memory_small_mib",
        "memory_big_mib",
        "cancel_s",
        "update_lines_per_s",
        "api_create_p50_ms",
        "api_get_p99_ms",
        "api_healthz_p50_ms",
        "two_workers_vs_copy",
        "two_workers_vs_single",
        "one_worker_vs_copy",
        "two_vs_one_worker",
        "memory_big_vs_small",
        "create_vs_healthz_p50",
        "create_vs_healthz_p99",
        "update_vs_single",
        "scheduled_claim_vs_empty",
        "scheduled_sweep_vs_empty",
        "mixed_vs_plain",
        "scale_claim_ratio",
        "scale_sweep_ratio",
        "scale_list_ratio",
        "scale_create_ratio",
        "scale_usage_ratio",
        "scale_big_list_deep_ms",
    ):
        assert float(final[key]) > 0, key
    assert final["targets"] == "17"
    assert final["scale_batches"] == "2100"
    assert "scale_purge_s" in final
    assert "2 workers end to end / raw COPY" in finished.stdout
    assert "mixed 2,000 lines (667 devices), 2 workers" in finished.stdout
