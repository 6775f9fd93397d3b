"""deploy/ validated as far as this machine allows (deploy/check.py, also `make deploy-check`):
a check whose tool is missing is skipped, saying which. The image's command is run for real,
with this checkout's virtualenv standing in for the image's."""

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.support.ports import free_port

ROOT = settings.BASE_DIR
spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy" / "check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

GUNICORN_CONFIG = " -c batchsite/gunicorn_conf.py"


@pytest.fixture
def deploy_copy(tmp_path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}: the test would change nothing"
    path.write_text(text.replace(old, new, 1))


def deploy_check(*arguments: str) -> subprocess.CompletedProcess:
    # -o install-dev: the tests run in the installed virtualenv; never reinstall from here.
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-o", "install-dev", "deploy-check", *arguments],
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if not key.startswith("MAKE")},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("name", list(check.CHECKS))
def test_deploy_files_pass(name):
    outcome = check.CHECKS[name]()
    if outcome.status == "skipped":
        pytest.skip(outcome.detail)
    assert outcome.status == "ok", outcome.detail


def test_make_deploy_check_fails_when_the_image_drops_the_gunicorn_config(deploy_copy):
    passing = deploy_check()
    assert passing.returncode == 0 and "ok commands" in passing.stdout, passing.stdout + passing.stderr

    edit(deploy_copy / "Dockerfile", f"gunicorn batchsite.wsgi{GUNICORN_CONFIG}", "gunicorn batchsite.wsgi")
    failing = deploy_check(f"DEPLOY_DIR={deploy_copy}")
    assert failing.returncode != 0
    assert (
        "FAILED commands: Dockerfile (web) lacks `--config batchsite/gunicorn_conf.py`, which Makefile has"
        in failing.stdout
    ), failing.stdout


@pytest.mark.parametrize(
    ("file", "old", "new", "reported"),
    [
        (
            "systemd/batches-worker@.service",
            "--queues=pipeline,chunks",
            "--queues=pipeline",
            "systemd/batches-worker@.service (worker) has `--queues pipeline` where Makefile has "
            "`--queues chunks,pipeline`",
        ),
        (
            "compose.yaml",
            "--concurrency=${WEBHOOK_WORKERS:-4}",
            "--concurrency=4",
            "compose.yaml (webhooks) has `--concurrency 4` where Makefile has "
            "`--concurrency $WEBHOOK_WORKERS`",
        ),
        (
            "systemd/batches-web.service",
            "-c batchsite/gunicorn_conf.py ",
            "-c batchsite/gunicorn_conf.py --threads 8 ",
            "systemd/batches-web.service (web) has `--threads 8`, which Makefile has not",
        ),
        (
            "systemd/batches-metrics.service",
            "--bind 0.0.0.0",
            "--bind 127.0.0.1",
            "systemd/batches-metrics.service (metrics) has `--bind 127.0.0.1` where compose.yaml has "
            "`--bind 0.0.0.0`",
        ),
    ],
)
def test_the_commands_check_names_the_file_and_the_difference(deploy_copy, file, old, new, reported):
    edit(deploy_copy / file, old, new)
    outcome = check.commands(deploy_copy)
    assert outcome.status == "FAILED" and reported in outcome.detail, outcome.detail


def test_the_images_command_runs_gunicorn_with_the_projects_config(tmp_path):
    """The Dockerfile's CMD as written, from the checkout (the image's WORKDIR holds the same
    files) with the virtualenv's programs on the PATH: its access log redacts credentials,
    which only batchsite/gunicorn_conf.py's logger does (gunicorn's own prints the URL)."""
    command = check.dockerfile_cmd(ROOT / "deploy")
    port = free_port()
    services = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "AWS_STORAGE_BUCKET_NAME")
    env = {key: value for key, value in os.environ.items() if key not in services}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        DATA_DIR=str(tmp_path / "data"),
        PORT=str(port),
        WEB_WORKERS="1",
        LOG_FORMAT="plain",
    )
    token = f"upload-token-{uuid.uuid4().hex}"
    log = tmp_path / "web.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/uploads/{token}", timeout=5)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        # The access line comes after the answer.
        while "GET /uploads/" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Using worker: batchsite.serving.DeadlineThreadWorker" in text, text
    assert "/uploads/[redacted]" in text and token not in text, text


def test_the_rules_catch_a_process_that_starts_before_migrations(deploy_copy):
    edit(
        deploy_copy / "compose.yaml",
        "condition: service_completed_successfully",
        "condition: service_started",
    )
    outcome = check.compose_rules(deploy_copy)
    assert outcome.status == "FAILED" and "without condition service_completed_successfully" in outcome.detail


def test_the_rules_catch_compose_workers_that_share_one_node_name(deploy_copy):
    """On the host's network every container has the host's name: `--scale worker=3` would make
    three nodes named celery@HOST, whose heartbeats and replies mix."""
    edit(deploy_copy / "compose.yaml", " --hostname=worker-$$(head -c 8 /proc/sys/kernel/random/uuid)@%h", "")
    outcome = check.compose_rules(deploy_copy)
    assert outcome.status == "FAILED", outcome.detail
    assert "worker: every container is the node celery@%h" in outcome.detail


def test_the_rules_catch_worker_containers_whose_sample_files_collide(deploy_copy):
    edit(deploy_copy / "compose.yaml", "  pid: host\n", "")
    outcome = check.compose_rules(deploy_copy)
    assert outcome.status == "FAILED" and "worker: pid is not host" in outcome.detail, outcome.detail


def test_the_rules_catch_a_unit_that_leaves_a_worker_down_after_a_clean_exit(deploy_copy):
    edit(deploy_copy / "systemd" / "batches-worker@.service", "Restart=always", "Restart=on-failure")
    outcome = check.systemd_rules(deploy_copy)
    assert outcome.status == "FAILED" and "Restart=on-failure, not always" in outcome.detail


def test_the_rules_catch_a_metrics_unit_reading_other_settings_than_the_workers(deploy_copy):
    edit(
        deploy_copy / "systemd" / "batches-metrics.service",
        "EnvironmentFile=/srv/batches/.env",
        "EnvironmentFile=/srv/batches/metrics.env",
    )
    outcome = check.systemd_rules(deploy_copy)
    assert outcome.status == "FAILED" and "the units read different EnvironmentFiles" in outcome.detail
