"""One source of settings: a make target and a management command, run in their own processes
with nothing but an env file, resolve the same data; the environment wins over the file; a
database server without SECRET_KEY is warned about."""

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest
from django.conf import settings

BASE_DIR = settings.BASE_DIR
# Every variable of the configuration table (.env.example names each one), and make's own.
CONFIGURATION = set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M))
SCRUBBED = CONFIGURATION | {"ENV_FILE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}


def clean_env(**variables: str) -> dict:
    """This process's environment without any setting (the test run's own DATA_DIR,
    DATABASE_URL, broker, S3 variables), plus `variables`."""
    return {**{k: v for k, v in os.environ.items() if k not in SCRUBBED}, **variables}


def run(command: list[str], *, env: dict, cwd) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_config(env: dict, cwd) -> dict:
    printed = run(["make", "-s", "-C", str(BASE_DIR), "print-config"], env=env, cwd=cwd)
    return dict(line.split("=", 1) for line in printed.splitlines())


def manage(*args: str, env: dict, cwd) -> str:
    return run([sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, cwd=cwd)


def test_configuration_table_and_example_name_the_same_variables():
    operations = (BASE_DIR / "docs" / "operations.md").read_text()
    table = operations.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    # One table: no blank line cuts rows out of it.
    assert "\n\n|" not in table.split("| variable |", 1)[1].rstrip()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", "".join(row.split("|")[1] for row in rows)))
    assert documented == CONFIGURATION
    assert {"WEB_WORKERS", "PORT", "DATA_DIR"} <= CONFIGURATION


@pytest.mark.slow
def test_make_and_manage_py_use_the_data_dir_of_the_env_file(tmp_path):
    data_dir = tmp_path / "data"
    env_file = tmp_path / "batch.env"
    env_file.write_text(f'DATA_DIR="{data_dir}"\nPORT=8123\nWEB_WORKERS=3\n')
    env = clean_env(ENV_FILE=str(env_file))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    config = make_config(env, cwd=elsewhere)
    assert config["DATA_DIR"] == str(data_dir)
    assert config["DATABASE"] == f"sqlite3 {data_dir / 'db.sqlite3'}"
    assert (config["PORT"], config["WEB_WORKERS"]) == ("8123", "3")

    manage("migrate", "--noinput", "--verbosity", "0", env=env, cwd=elsewhere)
    account = json.loads(manage("create_account", "Acme", "--json", env=env, cwd=elsewhere))["account"]
    with sqlite3.connect(config["DATABASE"].split(" ", 1)[1]) as database:
        stored = database.execute(
            "select name from permissions_account where uuid = ?", [account.replace("-", "")]
        )
        assert stored.fetchall() == [("Acme",)]


def test_the_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / "batch.env"
    env_file.write_text(f"DATA_DIR={tmp_path / 'from-file'}\nPORT=8123\n")
    env = clean_env(ENV_FILE=str(env_file), DATA_DIR=str(tmp_path / "from-env"))
    printed = run([sys.executable, "-m", "batchsite.config", "DATA_DIR", "PORT"], env=env, cwd=BASE_DIR)
    assert printed.splitlines() == [f"DATA_DIR={tmp_path / 'from-env'}", "PORT=8123"]


def test_gunicorn_takes_its_threads_and_deadlines_from_the_env_file(tmp_path):
    env_file = tmp_path / "batch.env"
    env_file.write_text("WEB_THREADS=7\nWEB_TIMEOUT=45\nWEB_HEADER_TIMEOUT=3\n")
    env = clean_env(ENV_FILE=str(env_file), DATA_DIR=str(tmp_path / "data"))
    # The config file first, as gunicorn's master reads it, before anything loads the settings.
    script = (
        "import runpy; conf = runpy.run_path('batchsite/gunicorn_conf.py'); "
        "from batchsite import serving; print(conf['threads'], conf['timeout'], serving.HEADER_TIMEOUT)"
    )
    assert run([sys.executable, "-c", script], env=env, cwd=BASE_DIR).split() == ["7", "45", "3.0"]


@pytest.mark.parametrize(
    "database_url, secret_key, warned",
    [
        ("postgres://postgres@127.0.0.1:5432/anything", "", True),
        ("postgres://postgres@127.0.0.1:5432/anything", "a-shared-key", False),
        ("", "", False),
    ],
)
def test_a_database_server_without_secret_key_is_warned_about(tmp_path, database_url, secret_key, warned):
    variables = {"DATA_DIR": str(tmp_path), "ENV_FILE": str(tmp_path / "none.env")}
    variables |= {"DATABASE_URL": database_url} if database_url else {}
    variables |= {"SECRET_KEY": secret_key} if secret_key else {}
    done = subprocess.run(
        [sys.executable, "-m", "batchsite.config", "PORT"],
        env=clean_env(**variables),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert ("WARNING: SECRET_KEY is not set" in done.stderr) is warned
