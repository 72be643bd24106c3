"""Root conftest: the drill's options, its fixtures (one module per resource) and its step definitions.

The options come from the same table as the `rollback-drill` command
(`rollback_drill.options`), so `pytest features/ --incident crash-loop` and
`rollback-drill run --incident crash-loop` mean the same thing.
"""

from __future__ import annotations

from rollback_drill.options import register

pytest_plugins = [
    "fixtures.options",
    "fixtures.environment",
    "steps.environment_steps",
    "steps.decision_steps",
]


def pytest_addoption(parser):
    group = parser.getgroup("rollback-drill", "rollback drill (RB-LAUNCH-002)")
    register(group.addoption)
