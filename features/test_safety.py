"""Binds features/safety.feature; its steps live in steps/safety_steps.py."""

from pytest_bdd import scenarios

scenarios("safety.feature")
