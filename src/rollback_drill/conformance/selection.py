"""Finding a runbook command's result in a conformance report by where it is and what it says."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class _Command(Protocol):
    @property
    def section(self) -> str: ...

    @property
    def text(self) -> str: ...


class _Result(Protocol):
    @property
    def command(self) -> _Command: ...


R = TypeVar("R", bound=_Result)


def results_in_section(results: Iterable[R], section: str, *fragments: str) -> list[R]:
    """The results of the commands under a heading that starts with ``section`` whose text holds every fragment."""
    return [
        result
        for result in results
        if result.command.section.startswith(section) and all(part in result.command.text for part in fragments)
    ]
