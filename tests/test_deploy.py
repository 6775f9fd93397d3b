"""deploy/ validated as far as this machine allows (deploy/check.py, also `make deploy-check`):
a check whose tool is missing is skipped, saying which."""

import importlib.util

import pytest
from django.conf import settings

spec = importlib.util.spec_from_file_location("deploy_check", settings.BASE_DIR / "deploy" / "check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


@pytest.mark.parametrize("name", list(check.CHECKS))
def test_deploy_files_pass(name):
    outcome = check.CHECKS[name]()
    if outcome.status == "skipped":
        pytest.skip(outcome.detail)
    assert outcome.status == "ok", outcome.detail


def test_the_rules_catch_a_process_that_starts_before_migrations():
    compose = (settings.BASE_DIR / "deploy" / "compose.yaml").read_text()
    racing = compose.replace("condition: service_completed_successfully", "condition: service_started", 1)
    outcome = check.compose_rules(racing)
    assert outcome.status == "FAILED" and "without condition service_completed_successfully" in outcome.detail


def test_the_rules_catch_a_unit_that_leaves_a_worker_down_after_a_clean_exit():
    worker = (settings.BASE_DIR / "deploy" / "systemd" / "batches-worker@.service").read_text()
    outcome = check.systemd_rules(
        {"batches-worker@.service": worker.replace("Restart=always", "Restart=on-failure")}
    )
    assert outcome.status == "FAILED" and "Restart=on-failure, not always" in outcome.detail
