"""Root conftest: the drill's options, its fixtures (one module per resource) and its step definitions.

The options come from the same table as the `rollback-drill` command
(`rollback_drill.options`), so `pytest features/ --incident crash-loop` and
`rollback-drill run --incident crash-loop` mean the same thing. The pytest-bdd
hooks below feed every Gherkin step to the scenario's recorder, which groups
them into timed runbook steps (CONVENTIONS): evidence is collected here, not in
the steps.
"""

from __future__ import annotations

import signal

import pytest

from rollback_drill.options import register

pytest_plugins = [
    "fixtures.options",
    "fixtures.environment",
    "fixtures.flowengine",
    "fixtures.drill",
    "fixtures.notifications",
    "fixtures.monitoring",
    "fixtures.staging",
    "fixtures.kind",
    "steps.environment_steps",
    "steps.decision_steps",
    "steps.world_steps",
    "steps.runbook_steps",
    "steps.reenablement_steps",
    "steps.safety_steps",
    "steps.conformance_steps",
    "steps.kind_steps",
    "steps.monitoring_steps",
    "tools.skip_policy",  # active only with --allowed-skips (make test)
]


_SIGNALS_RECEIVED: list[int] = []
"""Every SIGINT/SIGTERM this drill received, kept after its KeyboardInterrupt is raised."""


def pytest_configure(config):
    """SIGTERM ends a drill like Ctrl-C does: fixtures tear down, the evidence is sealed as `aborted`.

    Python raises the KeyboardInterrupt wherever the main thread happens to be. Inside a
    finalizer (a ``__del__`` the garbage collector runs) it is only printed, to a stderr
    pytest captures, and the drill would go on as if nobody had pressed Ctrl-C. So the
    signal is remembered too, and the next Gherkin step raises it again.
    """

    def interrupt(signum, frame):
        _SIGNALS_RECEIVED.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _stop_if_interrupted():
    if _SIGNALS_RECEIVED:
        raise KeyboardInterrupt(f"signal {_SIGNALS_RECEIVED[0]}, received while a finalizer ran")


def pytest_addoption(parser):
    group = parser.getgroup("rollback-drill", "rollback drill (RB-LAUNCH-002)")
    register(group.addoption)


RECORDED_AREAS = frozenset(
    {"world", "pre_rollback", "rollback", "post_rollback", "drill", "reenablement", "monitoring"}
)
"""Scenarios of these areas act on the drill world and are recorded; decision and environment checks are not."""


def _grouper(request, feature, scenario):
    if not (set(feature.tags) | set(scenario.tags)) & RECORDED_AREAS:
        return None
    return request.getfixturevalue("step_grouper")


def pytest_bdd_before_step_call(request, feature, scenario, step, step_func, step_func_args):
    _stop_if_interrupted()
    grouper = _grouper(request, feature, scenario)
    if grouper is not None:
        grouper.gherkin_step_started(step.name)


def pytest_bdd_after_step(request, feature, scenario, step, step_func, step_func_args):
    _stop_if_interrupted()
    grouper = _grouper(request, feature, scenario)
    if grouper is not None:
        grouper.gherkin_step_passed()


def pytest_bdd_step_error(request, feature, scenario, step, step_func, step_func_args, exception):
    grouper = _grouper(request, feature, scenario)
    if grouper is not None:
        grouper.gherkin_step_failed(f"{type(exception).__name__}: {exception}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell pass from fail at teardown."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
