"""schemathesis, the OpenAPI fuzzer, against a live server with a secret: every check, the
stateful phase included (links from POST /cache to the upload and from POST /batches to the
batch's operations), a fixed seed and a bounded number of examples. Zero failures means the
published schema states every status each route answers and every constraint it enforces.

tests/schemathesis.toml holds the few expectations where the API's documented behaviour
differs from schemathesis's defaults, each with its reason."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from permissions import services

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(settings.BASE_DIR)
# Installed beside the interpreter running the tests, wherever its virtualenv lives.
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CONFIG = str(ROOT / "tests" / "schemathesis.toml")


def fuzz(live_server, tmp_path, *, seed: int, examples: int, max_time: int | None = None) -> None:
    """One run; with `max_time`, fuzzing and stateful testing repeat until it is spent."""
    secret = services.account_bootstrap(name="Fuzzed").secret
    command = [
        SCHEMATHESIS,
        "--config-file",
        CONFIG,
        "--no-color",
        "run",
        f"{live_server.url}/schema",
        "--header",
        f"Authorization: {secret}",
        "--seed",
        str(seed),
        "--max-examples",
        str(examples),
        "--generation-unique-inputs",
        "--generation-database",
        "none",
        *(["--max-time", str(max_time)] if max_time else []),
        "--report-dir",
        str(tmp_path / "report"),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=(max_time or 300) + 120)
    (tmp_path / "schemathesis.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, (run.stdout + run.stderr)[-12000:]
    assert "failures" not in run.stdout.splitlines()[-1], run.stdout[-3000:]


def test_the_schema_holds_under_schemathesis(live_server, tmp_path):
    fuzz(live_server, tmp_path, seed=1, examples=20)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [2, 3])
def test_the_schema_holds_under_a_longer_schemathesis_run(live_server, tmp_path, seed):
    fuzz(live_server, tmp_path, seed=seed, examples=200, max_time=900)
