"""Reading a kubectl command line: its verb, the objects it names, its namespace, its selector, what it
execs, and the flags that would aim it at another cluster; and the record of a kubectl call that really ran.

Knows kubectl's grammar only: nothing here runs kubectl or knows about runbooks.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Final

CLUSTER_FLAGS: Final = frozenset(
    {"--kubeconfig", "--context", "--cluster", "--server", "-s", "--token", "--user", "--as", "--as-group"}
)
"""kubectl flags that would aim a command at another cluster or identity than the drill's."""

PROMETHEUS_RULES: Final = "prometheusrule"
"""The resource name PrometheusRules are read as (``prometheusrule/<repo>-alerts`` among ``KubectlCall.targets``)."""

_KUBECTL_VALUE_FLAGS: Final = frozenset(
    {
        "-n", "--namespace", "-l", "--selector", "-o", "--output", "-c", "--container", "-f", "--filename",
        "--type", "-p", "--patch", "--timeout", "--tail", "--replicas", "--since", "--field-selector", "-L",
        "--label-columns", "--template", "--sort-by", "-k", "--kustomize", "--request-timeout", "--image",
        *CLUSTER_FLAGS,
    }
)  # fmt: skip
_KUBECTL_TWO_WORD_VERBS: Final = frozenset({"rollout", "set", "config", "auth", "top", "certificate", "create"})
_RESOURCE_ALIASES: Final = {
    "deployment": "deployment", "deployments": "deployment", "deploy": "deployment", "deployment.apps": "deployment",
    "configmap": "configmap", "configmaps": "configmap", "cm": "configmap",
    "prometheusrule": "prometheusrule", "prometheusrules": "prometheusrule", "promrule": "prometheusrule",
    "prometheusrules.monitoring.coreos.com": "prometheusrule",
    "pod": "pods", "pods": "pods", "po": "pods",
    "statefulset": "statefulset", "statefulsets": "statefulset", "sts": "statefulset",
    "service": "service", "services": "service", "svc": "service",
    "lease": "lease", "leases": "lease", "namespace": "namespace", "namespaces": "namespace", "ns": "namespace",
    "secret": "secret", "secrets": "secret", "replicaset": "replicaset", "replicasets": "replicaset", "rs": "replicaset",
}  # fmt: skip


@dataclass(frozen=True)
class KubectlCall:
    """A kubectl command line, read: verb, the objects it names, namespace, and the flags that matter here."""

    verb: str
    targets: tuple[str, ...]
    """``deployment/flowengine``, ``configmap/repo-config``, ``prometheusrule/${repo}-alerts``, ``prometheusrule``
    (a listing), ``pods(app=flowengine)``."""
    namespace: str | None
    cluster_flags: tuple[str, ...]
    exec_target: str | None = None
    exec_command: tuple[str, ...] = ()
    selector: str | None = None


def _resource(kind: str) -> str:
    return _RESOURCE_ALIASES.get(kind.lower(), kind.lower())


def read_kubectl(args: tuple[str, ...]) -> KubectlCall:  # noqa: C901, PLR0912 - kubectl's grammar, flag by flag
    positional: list[str] = []
    namespace: str | None = None
    selector: str | None = None
    cluster_flags: list[str] = []
    after_dashes: tuple[str, ...] = ()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            after_dashes = args[i + 1 :]
            break
        if arg.startswith("-") and len(arg) > 1:
            name, has_value, value = arg.partition("=")
            if not has_value and name.startswith("-n") and not name.startswith("--") and len(name) > 2:
                name, value, has_value = "-n", name[2:], "="
            if name in CLUSTER_FLAGS:
                cluster_flags.append(name)
            if not has_value and name in _KUBECTL_VALUE_FLAGS:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            if name in {"-n", "--namespace"}:
                namespace = value
            elif name in {"-l", "--selector"}:
                selector = value
            i += 1
            continue
        positional.append(arg)
        i += 1
    if not positional:
        return KubectlCall("", (), namespace, tuple(cluster_flags))
    verb = positional[0]
    rest = positional[1:]
    if verb in _KUBECTL_TWO_WORD_VERBS and rest:
        verb = f"{verb} {rest[0]}"
        rest = rest[1:]
    targets: list[str] = []
    exec_target = None
    if verb == "exec":
        exec_target = rest[0] if rest else None
        targets = [_normalise_ref(exec_target)] if exec_target else []
    elif rest and "/" in rest[0]:
        targets = [_normalise_ref(r) for r in rest if "/" in r and "=" not in r]
    elif rest:
        kind = _resource(rest[0].split(",")[0])
        names = [r for r in rest[1:] if "=" not in r]
        if verb in {"logs", "port-forward", "attach"}:
            targets = [f"pods/{rest[0]}"]
        elif names:
            targets = [f"{kind}/{name}" for name in names]
        else:
            targets = [f"{kind}({selector})" if selector else kind]
    return KubectlCall(verb, tuple(targets), namespace, tuple(cluster_flags), exec_target, after_dashes, selector)


def _normalise_ref(ref: str) -> str:
    kind, _, name = ref.partition("/")
    return f"{_resource(kind)}/{name}" if name else _resource(kind)


@dataclass(frozen=True)
class KubectlInvocation:
    """One kubectl call a command really made (from the kubectl wrapper's journal)."""

    args: tuple[str, ...]
    exit_code: int

    @property
    def command(self) -> str:
        return "kubectl " + shlex.join(self.args)
