"""The project installs as a package with its `batch` command, as `make install` does it
(`pip install -e .` after the requirements), and the command works from any folder. The
install goes into a throwaway virtualenv that sees this one's packages, so the shared
environment is left as it was. And requirements.txt alone holds what the service imports."""

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata

import pytest
from django.conf import settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow


def run(command: list, *, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_batch_command_runs_from_any_folder(tmp_path):
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site_packages = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path
    )
    # The requirements are already installed here: the throwaway environment borrows them.
    (tmp_path / site_packages.stdout.strip() / "borrowed.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )

    installed = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-e",
            str(settings.BASE_DIR),
        ],
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    helped = run([str(venv / "bin" / "batch"), "--help"], cwd=elsewhere)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: batch ") and "submit" in helped.stdout
    # Without a URL it refuses as the module does (exit 2), having imported everything it needs.
    refused = run([str(venv / "bin" / "batch"), "list"], cwd=elsewhere)
    assert refused.returncode == 2 and "BATCH_API_URL" in refused.stderr


def test_python_dash_m_keeps_working_from_the_checkout():
    helped = run([sys.executable, "-m", "batches.cli", "--help"], cwd=settings.BASE_DIR)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m batches.cli ")


# Run with every module outside the runtime requirements hidden, as on a host where only
# `make install` ran: a library's optional import (pygments, jinja2, ...) finds nothing, as
# it would there; a needed one fails.
RUNTIME_IMPORTS = """
import importlib, json, sys

hidden = set(json.loads(sys.argv[1]))


class RuntimeOnly:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, RuntimeOnly())
import django

django.setup()
import batchsite.wsgi
from batchsite.celery import app

app.loader.import_default_modules()
for name in ("kombu.transport.redis", "kombu.transport.pyamqp", "kombu.transport.filesystem",
             "storages.backends.s3", "gunicorn.workers.gthread", "batchsite.serving",
             "batchsite.gunicorn_conf", "batches.cli"):
    importlib.import_module(name)
"""


def runtime_distributions() -> set[str]:
    """requirements.txt's pins with what they require, extras included, as pip installs them."""
    pending = [
        Requirement(line)
        for line in (settings.BASE_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    found: set[str] = set()
    seen: set[tuple] = set()
    while pending:
        requirement = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(key[0])
        for text in metadata.distribution(requirement.name).requires or []:
            needed = Requirement(text)
            extras = [*requirement.extras, ""]
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(needed)
    return found


def test_the_runtime_requirements_hold_everything_the_service_imports():
    """The web, the workers and every broker and storage the service supports import with
    only requirements.txt installed (the Redis transport once needed `packaging`, which only
    pytest brought in, so a production host's worker could not reach Redis)."""
    project = tomllib.loads((settings.BASE_DIR / "pyproject.toml").read_text())["project"]["name"]
    runtime = runtime_distributions() | {canonicalize_name(project)}
    hidden = sorted(
        module
        for module, owners in metadata.packages_distributions().items()
        if not any(canonicalize_name(owner) in runtime for owner in owners)
    )
    assert "pytest" in hidden and "django" not in hidden
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "batchsite.settings"}
    imported = run(
        [sys.executable, "-c", RUNTIME_IMPORTS, json.dumps(hidden)], cwd=settings.BASE_DIR, env=env
    )
    assert imported.returncode == 0, imported.stderr
