"""Binds features/environment.feature; its steps live in steps/environment_steps.py."""

from pytest_bdd import scenarios

scenarios("environment.feature")
