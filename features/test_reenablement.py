"""Binds features/reenablement.feature; steps in steps/reenablement_steps.py, the staging FlowEngine in fixtures/staging.py."""

from pytest_bdd import scenarios

scenarios("reenablement.feature")
