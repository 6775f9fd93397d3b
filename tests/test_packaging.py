"""The project installs as a package with its `batch` command, as `make install` does it
(`pip install -e .` after the requirements), and the command works from any folder. The
install goes into a throwaway virtualenv that sees this one's packages, so the shared
environment is left as it was."""

import subprocess
import sys
import sysconfig

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow


def run(command: list, *, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


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
