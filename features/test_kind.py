"""Binds features/kind.feature; steps in steps/kind_steps.py, fixtures in fixtures/kind.py (`make test-kind`)."""

from pytest_bdd import scenarios

scenarios("kind.feature")
