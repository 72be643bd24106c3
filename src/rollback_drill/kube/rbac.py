"""The drill's own least-privilege identity: a ServiceAccount whose Roles hold only the runbook's verbs.

On a cluster the drill created, ``ensure_drill_identity`` creates the ServiceAccount
``rollback-drill`` in ``production`` and one Role plus RoleBinding per namespace the
runbook acts on; ``drill_api_client`` returns a client that acts as it. On a staging
cluster the drill never creates RBAC objects: an administrator applies the same
manifests (``docs/rbac.md``, generated from ``drill_identity_manifests``) and hands the
drill a kubeconfig for that ServiceAccount.

What each verb is for:

- ``production``: deployments get/list/watch/patch (Step 1's ``kubectl set env``, Step 2's
  ``rollout restart``, ``rollout status``), deployments/scale get/patch (Step 2), replicasets
  get/list/watch (``rollout status``), pods get/list/watch (crash-loop and health checks),
  configmaps get/list (``repo-config``), leases create and, for the Lease ``rollback-drill``
  only, get/update/delete (the drill lock). Patching pods is how the drill *stages* a crash
  loop; that is not a runbook action, so the identity may not do it.
- ``monitoring``: prometheusrules get/list/watch/patch/create/delete (Step 4 and
  re-enablement) and update: restoring a rule that exists again replaces it.
- ``staging``: deployments get/list/watch/patch (the soak and re-enablement).
- cluster-wide: get on the namespace ``kube-system`` only, whose UID is half the cluster's
  fingerprint (CONVENTIONS): without it the drill cannot tell which cluster it is on.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollback_drill.config import KubernetesNames
from rollback_drill.errors import InputError, UnsafeTarget
from rollback_drill.kube.access import forbidden_status, service_account_client
from rollback_drill.kube.conflict import create_or_replace
from rollback_drill.kube.lock import LEASE_NAME
from rollback_drill.kube.objects import simple_deployment
from rollback_drill.targets.cluster import Cluster
from rollback_drill.timing.wait import wait_until

SERVICE_ACCOUNT = "rollback-drill"
ROLE = "rollback-drill"
IDENTIFY_ROLE = "rollback-drill-identify"
MANAGED_BY = {"app.kubernetes.io/managed-by": "rollback-drill"}
DEFAULT_TOKEN_S = 3600
"""A drill takes under 20 minutes (the runbook's target); an hour leaves room for a slow one, and no more."""


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def drill_rules(names: KubernetesNames) -> dict[str, list[dict[str, Any]]]:
    """Namespace → the RBAC rules the runbook needs there, and nothing else."""
    return {
        names.namespace: [
            _rule(["apps"], ["deployments"], ["get", "list", "watch", "patch"]),
            _rule(["apps"], ["deployments/scale"], ["get", "patch"]),
            _rule(["apps"], ["replicasets"], ["get", "list", "watch"]),
            _rule([""], ["pods"], ["get", "list", "watch"]),
            _rule([""], ["configmaps"], ["get", "list"]),
            # RBAC cannot restrict `create` by name (the object has no name yet when it is authorised).
            _rule(["coordination.k8s.io"], ["leases"], ["create"]),
            _rule(["coordination.k8s.io"], ["leases"], ["get", "update", "delete"], [LEASE_NAME]),
        ],
        names.monitoring_namespace: [
            _rule(
                ["monitoring.coreos.com"],
                ["prometheusrules"],
                ["get", "list", "watch", "patch", "create", "update", "delete"],
            ),
        ],
        names.staging_namespace: [
            _rule(["apps"], ["deployments"], ["get", "list", "watch", "patch"]),
        ],
    }


def drill_identity_manifests(names: KubernetesNames) -> list[dict[str, Any]]:
    """The ServiceAccount, the cluster-wide identify role, then a Role and a RoleBinding per namespace.

    What the drill creates on its own clusters, and what docs/rbac.md shows for staging.
    """
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": names.namespace, "labels": dict(MANAGED_BY)},
    }
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": names.namespace}
    manifests: list[dict[str, Any]] = [
        account,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": IDENTIFY_ROLE, "labels": dict(MANAGED_BY)},
            "rules": [_rule([""], ["namespaces"], ["get"], ["kube-system"])],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": IDENTIFY_ROLE, "labels": dict(MANAGED_BY)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": IDENTIFY_ROLE},
            "subjects": [dict(subject)],
        },
    ]
    for namespace, rules in drill_rules(names).items():
        manifests.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": ROLE, "namespace": namespace, "labels": dict(MANAGED_BY)},
                "rules": rules,
            }
        )
        manifests.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": ROLE, "namespace": namespace, "labels": dict(MANAGED_BY)},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
                "subjects": [dict(subject)],
            }
        )
    return manifests


_Write = Callable[[dict[str, Any]], object]


def _writers(api: client.ApiClient) -> dict[str, tuple[_Write, _Write | None]]:
    """Kind → (create, replace) for each object of the identity. An existing ServiceAccount is kept as it is."""
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)

    def ns(body: dict[str, Any]) -> str:
        return str(body["metadata"]["namespace"])

    def name(body: dict[str, Any]) -> str:
        return str(body["metadata"]["name"])

    def raw(body: dict[str, Any]) -> Any:
        return cast("Any", body)  # the client accepts manifests as dicts

    return {
        "ServiceAccount": (lambda b: core.create_namespaced_service_account(ns(b), raw(b)), None),
        "ClusterRole": (
            lambda b: rbac.create_cluster_role(raw(b)),
            lambda b: rbac.replace_cluster_role(name(b), raw(b)),
        ),
        "ClusterRoleBinding": (
            lambda b: rbac.create_cluster_role_binding(raw(b)),
            lambda b: rbac.replace_cluster_role_binding(name(b), raw(b)),
        ),
        "Role": (
            lambda b: rbac.create_namespaced_role(ns(b), raw(b)),
            lambda b: rbac.replace_namespaced_role(name(b), ns(b), raw(b)),
        ),
        "RoleBinding": (
            lambda b: rbac.create_namespaced_role_binding(ns(b), raw(b)),
            lambda b: rbac.replace_namespaced_role_binding(name(b), ns(b), raw(b)),
        ),
    }


def ensure_drill_identity(api: client.ApiClient, namespaces: KubernetesNames, *, cluster: Cluster) -> tuple[str, str]:
    """Create (or bring back in line) the drill's ServiceAccount, Roles and RoleBindings; return (namespace, name).

    Only on a cluster the drill created: on any other, RBAC is an administrator's
    decision, so this refuses and points at docs/rbac.md.
    """
    if not cluster.created_by_drill:
        raise UnsafeTarget(
            f"refusing to create RBAC objects on cluster {cluster.fingerprint}: the drill creates its identity only on clusters it made; "
            "on staging, have an administrator apply the manifests in docs/rbac.md and run the drill with that ServiceAccount's kubeconfig"
        )
    writers = _writers(api)
    for manifest in drill_identity_manifests(namespaces):
        namespace = manifest["metadata"].get("namespace")
        create, replace = writers[manifest["kind"]]
        try:
            create_or_replace(partial(create, manifest), partial(replace, manifest) if replace else None)
        except ApiException as exc:
            if exc.status == 404:
                raise InputError(
                    f"cannot create the drill's {manifest['kind']} in namespace {namespace!r}: the namespace does not exist; "
                    "seed the drill world first"
                ) from exc
            raise
    identity = (namespaces.namespace, SERVICE_ACCOUNT)
    wait_effective(api, identity, namespaces)
    return identity


def can(
    api: client.ApiClient, identity: tuple[str, str], verb: str, *, group: str, resource: str, namespace: str
) -> bool:
    """The API server's own answer (a SubjectAccessReview): may this ServiceAccount do ``verb`` there?"""
    sa_namespace, name = identity
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{sa_namespace}:{name}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, verb=verb, group=group, resource=resource
            ),
        )
    )
    status = client.AuthorizationV1Api(api).create_subject_access_review(review).status
    return bool(status and status.allowed)


def wait_effective(
    api: client.ApiClient, identity: tuple[str, str], namespaces: KubernetesNames, *, timeout_s: float = 15
) -> None:
    """RBAC changes reach the authorizer through a cache: wait until each Role is in force, not a fixed time."""
    probes = [
        (namespace, rules[0]["verbs"][0], rules[0]["apiGroups"][0], rules[0]["resources"][0])
        for namespace, rules in drill_rules(namespaces).items()
    ]
    wait_until(
        lambda: all(can(api, identity, verb, group=g, resource=r, namespace=ns) for ns, verb, g, r in probes),
        timeout_s=timeout_s,
        describe=f"the Roles of ServiceAccount {identity[0]}/{identity[1]} in force",
        hint="check the RoleBindings: kubectl get rolebindings -A -l app.kubernetes.io/managed-by=rollback-drill",
    )


def drill_api_client(
    api: client.ApiClient,
    identity: tuple[str, str] = (KubernetesNames().namespace, SERVICE_ACCOUNT),
    *,
    expiration_s: int = DEFAULT_TOKEN_S,
) -> client.ApiClient:
    """An ApiClient acting as the drill's ServiceAccount (a bound token from the TokenRequest API). Close it after use."""
    namespace, name = identity
    return service_account_client(api, namespace, name, expiration_s=expiration_s)


def calls_outside_the_role(
    api: client.ApiClient, names: KubernetesNames, *, pod_patch: dict[str, Any]
) -> dict[str, Callable[[], object]]:
    """Calls the runbook never makes, by what they would do; ``pod_patch`` is how a fault is staged on a pod.

    Server-side dry runs: were RBAC ever wrong, still nothing would change.
    """
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    leases = client.CoordinationV1Api(api)
    dry = "All"
    return {
        "delete deployment/flowengine in production": lambda: apps.delete_namespaced_deployment(
            names.deployment, names.namespace, dry_run=dry
        ),
        "read the secrets in production": lambda: core.list_namespaced_secret(names.namespace),
        "patch a flowengine pod in production": lambda: core.patch_namespaced_pod(
            f"{names.deployment}-any", names.namespace, pod_patch, dry_run=dry
        ),
        "create a deployment in production": lambda: apps.create_namespaced_deployment(
            names.namespace, simple_deployment("intruder", 1), dry_run=dry
        ),
        "delete namespace production": lambda: core.delete_namespace(names.namespace, dry_run=dry),
        "scale deployment/flowengine in staging": lambda: apps.patch_namespaced_deployment_scale(
            names.deployment, names.staging_namespace, {"spec": {"replicas": 0}}, dry_run=dry
        ),
        "delete another service's Lease in production": lambda: leases.delete_namespaced_lease(
            "payments-leader-election", names.namespace, dry_run=dry
        ),
    }


def refusal_outside_the_role(
    api: client.ApiClient, names: KubernetesNames, call: str, *, pod_patch: dict[str, Any]
) -> int:
    """Make one call of ``calls_outside_the_role`` and return the HTTP status of the API server's refusal.

    Raises ``VerificationFailed`` if the call was allowed, ``InputError`` if there is no such call.
    """
    calls = calls_outside_the_role(api, names, pod_patch=pod_patch)
    if call not in calls:
        raise InputError(f"no call outside the drill's Role is named {call!r}; known: {', '.join(sorted(calls))}")
    return forbidden_status(calls[call])
