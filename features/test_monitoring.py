"""Binds features/monitoring.feature; steps in steps/monitoring_steps.py, steps/world_steps.py and steps/runbook_steps.py."""

from pytest_bdd import scenarios

scenarios("monitoring.feature")
