"""Binds features/conformance.feature; steps in steps/conformance_steps.py (and the outside control plane's in
steps/environment_steps.py)."""

from pytest_bdd import scenarios

scenarios("conformance.feature")
