"""Binds features/drill.feature; steps in steps/runbook_steps.py and steps/world_steps.py.

`rollback-drill run` selects one of the @chosen scenarios; `make test` runs the @matrix.
"""

from pytest_bdd import scenarios

scenarios("drill.feature")
