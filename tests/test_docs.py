"""The docs: the site builds with every warning an error (broken links and anchors included),
the state diagram it draws holds every move of the transition table, and README.md stays a
short front door whose links all lead somewhere."""

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from batches.statuses import TRANSITIONS

BASE_DIR = Path(settings.BASE_DIR)
README = BASE_DIR / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=BASE_DIR,
        env={**os.environ, "DATA_DIR": str(tmp_path_factory.mktemp("data"))},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return site_dir


def table_moves() -> set[tuple[str, str]]:
    return {(str(source), str(target)) for source, targets in TRANSITIONS.items() for target in targets}


def test_the_site_builds_strict_without_a_warning(site):
    assert (site / "index.html").exists()
    assert (site / "architecture" / "index.html").exists()


def test_the_state_diagram_and_its_table_hold_every_move_of_the_transition_table(site):
    page = html.unescape((site / "architecture" / "index.html").read_text())
    mermaid = page.split('<code class="language-mermaid">', 1)[1].split("</code>", 1)[0]
    assert mermaid.startswith("stateDiagram-v2")
    drawn = set(re.findall(r"^\s+([a-z_]+) --> ([a-z_]+)$", mermaid, re.M))
    tabled = set(re.findall(r"<td><code>([a-z_]+)</code></td>\s*<td><code>([a-z_]+)</code></td>", page))
    assert drawn == table_moves()
    assert tabled == table_moves()


def test_the_readme_is_a_short_front_door():
    assert len(README.read_text().splitlines()) <= 150


def test_every_relative_link_of_the_readme_leads_to_a_file():
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [target for target in targets if not re.match(r"[a-z]+:|#", target)]
    assert relative
    missing = [target for target in relative if not (BASE_DIR / target.split("#", 1)[0]).exists()]
    assert missing == []
