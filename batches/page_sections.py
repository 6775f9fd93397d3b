"""Sections of a batch's page that other apps fill, registered in their AppConfig.ready()
(notifications: the batch's webhook deliveries): the page shows them without importing those
apps."""

from collections.abc import Callable
from typing import Any

from batches.models import Batch

# Context name -> what it holds for a batch.
SECTIONS: dict[str, Callable[[Batch], Any]] = {}


def batch_page_section_register(*, name: str, section: Callable[[Batch], Any]) -> None:
    SECTIONS[name] = section


def batch_page_sections(batch: Batch) -> dict[str, Any]:
    return {name: section(batch) for name, section in SECTIONS.items()}
