"""Binds features/world.feature; steps in steps/world_steps.py."""

from pytest_bdd import scenarios

scenarios("world.feature")
