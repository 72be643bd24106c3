"""A pytest plugin for CI: green means it ran.

A test that skips because a package was not installed is a hole in the suite, not a pass.
With ``--allowed-skips FILE`` the session fails when

- a test skipped that the file does not list (one ``fnmatch`` pattern of node ids per line,
  each with a ``#`` comment saying why it may skip), or
- nothing passed at all (everything skipped or deselected).

It is loaded by ``make test`` (``-p tools.skip_policy``); plain ``pytest`` runs are unaffected.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class AllowedSkip:
    pattern: str
    why: str


def read_allowed_skips(path: Path) -> tuple[AllowedSkip, ...]:
    """Parse the list; an entry without a reason is refused, so every exception stays explained."""
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, why = line.partition("#")
        if not why.strip():
            raise pytest.UsageError(f"{path}:{number}: {pattern.strip()!r} has no '# reason'; say why it may skip")
        entries.append(AllowedSkip(pattern.strip(), why.strip()))
    return tuple(entries)


class SkipPolicy:
    """Registered by ``pytest_configure`` when ``--allowed-skips`` is given; judges the session at its end."""

    def __init__(self, allowed: tuple[AllowedSkip, ...]) -> None:
        self.allowed = allowed
        self.passed = 0
        self.unlisted: list[tuple[str, str]] = []
        self.judged = False

    def allows(self, nodeid: str) -> bool:
        return any(fnmatch.fnmatchcase(nodeid, entry.pattern) for entry in self.allowed)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.skipped and not hasattr(report, "wasxfail") and not self.allows(report.nodeid):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.unlisted.append((report.nodeid, reason))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            return  # already failed for its own reasons
        self.judged = True
        if self.unlisted or self.passed == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.judged:
            return
        if self.passed == 0:
            terminalreporter.write_line(
                "skip policy: no test passed; a run in which nothing ran is not a pass", red=True
            )
        for nodeid, reason in self.unlisted:
            terminalreporter.write_line(
                f"skip policy: {nodeid} skipped ({reason}) and is not in --allowed-skips; install what it needs",
                red=True,
            )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--allowed-skips",
        metavar="FILE",
        default=None,
        help="fail the session when a test not listed in FILE skips, or when nothing passed",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--allowed-skips")
    if path:
        config.pluginmanager.register(SkipPolicy(read_allowed_skips(Path(path))), "skip-policy")
