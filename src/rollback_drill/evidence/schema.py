# Copyright 2026 The rollback-drill authors
# SPDX-License-Identifier: Apache-2.0
"""The evidence contract, ``schemas/evidence-v1.json``, and checking documents against it.

The schema ships inside the package (``rollback_drill/data/evidence-v1.json``);
``schemas/evidence-v1.json`` at the repository root is a symlink to it.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from jsonschema import Draft202012Validator

if TYPE_CHECKING:
    from collections.abc import Mapping

SCHEMA_RESOURCE: Final = "data/evidence-v1.json"


@functools.cache
def _schema_text() -> str:
    return resources.files("rollback_drill").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The evidence schema, as a fresh dict the caller may change."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_evidence(doc: Mapping[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the contract, as ``"<JSON path>: <message>"``; empty when it is valid."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{error.json_path}: {error.message}" for error in errors]
