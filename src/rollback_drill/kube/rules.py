"""PrometheusRule objects (monitoring.coreos.com/v1), through the custom-objects API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill.kube.conflict import suppress_conflict
from rollback_drill.kube.objects import as_dict

GROUP = "monitoring.coreos.com"
VERSION = "v1"
PLURAL = "prometheusrules"


class PrometheusRules:
    """The PrometheusRules of one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def names(self) -> set[str]:
        return {item["metadata"]["name"] for item in self.items()}

    def items(self) -> list[dict[str, Any]]:
        listing = as_dict(self._custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL))
        return list(listing.get("items", []))

    def get(self, name: str) -> dict[str, Any]:
        return as_dict(self._custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))

    def back_up(self, name: str, directory: Path) -> Path:
        """``kubectl get prometheusrule NAME -o yaml > DIRECTORY/NAME.yaml``; return the file."""
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.get(name), sort_keys=False))
        return path

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return as_dict(
            self._custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, field_validation="Strict"
            )
        )

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or replace what is there (keeping nothing of the old object but its resourceVersion)."""
        with suppress_conflict():
            return self.create(body)
        name = body["metadata"]["name"]
        current = self.get(name)
        fresh = {**body, "metadata": {**body["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        return as_dict(
            self._custom.replace_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, fresh, field_validation="Strict"
            )
        )

    def json_patch(self, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch with strict field validation, as `kubectl patch --type=json` sends it."""
        return as_dict(
            self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, operations,
                field_validation="Strict", _content_type="application/json-patch+json",
            )
        )  # fmt: skip

    def delete(self, name: str) -> bool:
        """Delete; False if it was already gone."""
        try:
            self._custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
