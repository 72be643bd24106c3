"""Binds features/post_rollback.feature; steps in steps/runbook_steps.py and steps/world_steps.py."""

from pytest_bdd import scenarios

scenarios("post_rollback.feature")
