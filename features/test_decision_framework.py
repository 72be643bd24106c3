"""Binds features/decision_framework.feature; steps in steps/decision_steps.py."""

from pytest_bdd import scenarios

scenarios("decision_framework.feature")
