"""PrometheusRule objects -> Prometheus rule files, the way prometheus-operator writes them.

prometheus-operator (``pkg/operator/rules.go``, ``PrometheusRuleSelector.Select``) marshals each
selected PrometheusRule's ``spec`` (that is, its ``groups``) to YAML, one file per object, named
``<namespace>-<name>-<uid>.yaml`` (the UID keeps ``foo-bar/fred`` and ``foo/bar-fred`` apart). It adds
no labels of its own unless it runs with ``--enforced-namespace-label``, which the drill's world does
not, so neither do we. An object without a UID (a manifest not yet applied) is ``<namespace>-<name>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rollback_drill.errors import InputError

RULE_FILE_SUFFIX = ".yaml"


@dataclass(frozen=True)
class RuleFile:
    """One PrometheusRule as Prometheus reads it."""

    name: str
    """The file's name in the rules directory."""
    content: str
    """The YAML, ``groups:`` at the top."""


@dataclass(frozen=True)
class RulesSync:
    """What a sync changed in the rules directory (file names); ``changed`` says whether to reload."""

    written: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def _metadata(rule: dict[str, Any]) -> tuple[str, str, str]:
    metadata = rule.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not name or not namespace:
        raise InputError(
            f"a PrometheusRule needs metadata.name and metadata.namespace to become a rule file, got {metadata!r}"
        )
    return str(namespace), str(name), str(metadata.get("uid") or "")


def rule_file_name(rule: dict[str, Any]) -> str:
    namespace, name, uid = _metadata(rule)
    return f"{namespace}-{name}-{uid}{RULE_FILE_SUFFIX}" if uid else f"{namespace}-{name}{RULE_FILE_SUFFIX}"


def render(rule: dict[str, Any]) -> RuleFile:
    """The rule file for one PrometheusRule (as the Kubernetes API returns it, a dict)."""
    groups = (rule.get("spec") or {}).get("groups")
    if not isinstance(groups, list):
        raise InputError(f"PrometheusRule {rule_file_name(rule)} has no spec.groups list; it cannot become a rule file")
    return RuleFile(rule_file_name(rule), yaml.safe_dump({"groups": groups}, sort_keys=False))


def sync(directory: Path, rules: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> RulesSync:
    """Make ``directory`` hold exactly the rule files of ``rules``: write new or changed ones, remove the rest.

    Each file is written to a temporary name and renamed, so a Prometheus reloading meanwhile never
    reads half a file. Only ``*.yaml`` files are ours to remove.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {file.name: file.content for file in map(render, rules)}
    written = []
    for name, content in sorted(wanted.items()):
        path = directory / name
        if path.is_file() and path.read_text() == content:
            continue
        partial = directory / f".{name}.partial"
        partial.write_text(content)
        partial.replace(path)
        written.append(name)
    removed = []
    for path in sorted(directory.glob(f"*{RULE_FILE_SUFFIX}")):
        if path.name not in wanted:
            path.unlink()
            removed.append(path.name)
    return RulesSync(tuple(written), tuple(removed))
