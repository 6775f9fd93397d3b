"""An mkdocs hook: renders the batch state machine into the architecture page at build time,
from the transition table in batches/statuses.py, so the diagram cannot drift from the code.

The page holds the marker line; the hook replaces it with a Mermaid `stateDiagram-v2` block and
a plain table of the same moves (readable without JavaScript). A page without the marker fails
the build."""

import os
import sys
from pathlib import Path

PAGE = "architecture.md"
MARKER = "<!-- batch-state-diagram -->"


def transition_table(project_root: Path) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """The table and the terminal statuses; batches.statuses needs Django's app registry."""
    if str(project_root) not in sys.path:
        sys.path.insert(0, str(project_root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "batchsite.settings")
    import django

    django.setup()
    from batches.statuses import TERMINAL, TRANSITIONS

    return TRANSITIONS, TERMINAL


def moves(transitions: dict[str, frozenset[str]]) -> list[tuple[str, str]]:
    """Every (source, target) move, in the table's order of sources, targets sorted."""
    return [
        (str(source), str(target)) for source, targets in transitions.items() for target in sorted(targets)
    ]


def state_diagram_markdown(transitions: dict[str, frozenset[str]], terminal: frozenset[str]) -> str:
    first = str(next(iter(transitions)))
    ends = [str(status) for status, targets in transitions.items() if not targets]
    mermaid = [
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {first}",
        *(f"    {source} --> {target}" for source, target in moves(transitions)),
        *(f"    {status} --> [*]" for status in ends),
        "```",
    ]
    table = [
        "| from | to |",
        "|---|---|",
        *(f"| `{source}` | `{target}` |" for source, target in moves(transitions)),
    ]
    terminal_list = ", ".join(f"`{status}`" for status in transitions if status in terminal)
    return "\n".join(
        [
            *mermaid,
            "",
            f"Terminal statuses (a client's batch ends in one of them): {terminal_list}. "
            f"A batch in {', '.join(f'`{status}`' for status in ends)} is going away; it has no move.",
            "",
            *table,
        ]
    )


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker line {MARKER!r}: the state diagram has nowhere to go")
    project_root = Path(config.config_file_path).resolve().parent
    return markdown.replace(MARKER, state_diagram_markdown(*transition_table(project_root)))
