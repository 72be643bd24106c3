"""A cluster the drill talks to, its identity, and the guard in front of every destructive action.

The identity (fingerprint) is ``<api-server-url>#<uid of namespace kube-system>``.
Context names are never trusted: two kubeconfigs can call very different clusters
"staging".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollback_drill.errors import ConfigError, InputError, UnsafeTarget

TargetKind = Literal["local", "kind", "kubeconfig"]
TARGETS: tuple[TargetKind, ...] = ("local", "kind", "kubeconfig")
_COMMENT = re.compile(r"\s+#")
_FINGERPRINT = re.compile(r"https?://[^\s#]+#[0-9a-f-]{36}")
TASKDB_IDENTITY_PREFIX = "pg:"
_TASKDB_IDENTITY = re.compile(r"pg:(\[[0-9A-Fa-f:.]+\]|[^\s:/#\[\]]+):[0-9]{1,5}/[^\s#/]+#[0-9]+")
"""``pg:<host>:<port>/<database>#<system_identifier>`` (``taskdb.identity`` makes it; it is matched here as text)."""


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster and what the drill knows about it."""

    kind: TargetKind
    kubeconfig: str
    context: str | None
    server: str
    fingerprint: str
    server_version: str
    created_by_drill: bool

    def api_client(self) -> client.ApiClient:
        return api_client(self.kubeconfig, self.context)

    def evidence(self) -> dict[str, object]:
        return {"kind": self.kind, "server_version": self.server_version, "fingerprint": self.fingerprint}


def api_client(kubeconfig: str | Path, context: str | None = None) -> client.ApiClient:
    path = Path(kubeconfig)
    if not path.is_file():
        raise ConfigError(f"kubeconfig {path} does not exist or is not a file; pass --kubeconfig PATH")
    try:
        api: client.ApiClient = config.new_client_from_config(
            config_file=str(path), context=context, persist_config=False
        )
    except config.ConfigException as exc:
        raise ConfigError(f"kubeconfig {path} cannot be used ({exc}); check the file and --context") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"kubeconfig {path} is not valid YAML{where} ({getattr(exc, 'problem', None) or type(exc).__name__}); "
            "pass the file `kubectl config view --raw` would read"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"kubeconfig {path} cannot be read ({exc.strerror}); check its permissions") from exc
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ConfigError(f"kubeconfig {path} is malformed ({type(exc).__name__}: {exc}); check the file") from exc
    return api


def uid_of(obj: client.V1Namespace) -> str:
    if obj.metadata is None or not obj.metadata.uid:
        raise InputError(
            "the API server returned namespace kube-system without a UID; this does not look like a Kubernetes cluster"
        )
    return str(obj.metadata.uid)


def identify(
    kind: TargetKind, kubeconfig: str | Path, context: str | None = None, *, created_by_drill: bool = False
) -> Cluster:
    """Connect, read the server version and the kube-system UID, and return the cluster's identity."""
    api = api_client(kubeconfig, context)
    server = str(api.configuration.host).rstrip("/")
    try:
        version = client.VersionApi(api).get_code()
        namespace = client.CoreV1Api(api).read_namespace("kube-system")
    except ApiException as exc:
        raise InputError(
            f"the API server at {server} refused the drill ({exc.status} {exc.reason}); "
            "check the kubeconfig's credentials"
        ) from exc
    except (HTTPError, OSError) as exc:
        raise InputError(
            f"the API server at {server} is not reachable ({exc}); check that the cluster is running"
        ) from exc
    finally:
        api.close()
    return Cluster(
        kind=kind,
        kubeconfig=str(kubeconfig),
        context=context,
        server=server,
        fingerprint=f"{server}#{uid_of(namespace)}",
        server_version=str(version.git_version),
        created_by_drill=created_by_drill,
    )


def read_allowlist(path: str | Path | None) -> frozenset[str]:
    """One entry per line: a cluster fingerprint, or a TaskDB identity. ``#`` at the start of a line, or
    after white space, starts a comment.

    Both kinds of entry contain a ``#`` of their own (``https://host:6443#<uid>``,
    ``pg:host:5432/db#<system identifier>``), so a ``#`` glued to the entry is part of it,
    not a comment. TaskDB identities are kept as written; ``taskdb.identity`` matches them.
    """
    if path is None:
        return frozenset()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"--cluster-allowlist {path} cannot be read ({exc.strerror})") from exc
    entries = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.split(raw.strip(), maxsplit=1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(TASKDB_IDENTITY_PREFIX):
            if not _TASKDB_IDENTITY.fullmatch(line):
                raise ConfigError(
                    f"--cluster-allowlist {path}:{number}: {line!r} is not a TaskDB identity "
                    "(expected pg:<host>:<port>/<database>#<system identifier>, as "
                    "`rollback-drill check-target --taskdb dsn` prints)"
                )
        elif not _FINGERPRINT.fullmatch(line):
            raise ConfigError(
                f"--cluster-allowlist {path}:{number}: {line!r} is not a fingerprint "
                "(expected <api-server-url>#<kube-system uid>, as `rollback-drill env status` prints, "
                "or a TaskDB's pg:<host>:<port>/<database>#<system identifier>)"
            )
        entries.add(line)
    return frozenset(entries)


def guard_destructive(
    cluster: Cluster, allowlist: frozenset[str], known_drill_fingerprints: frozenset[str], action: str
) -> None:
    """Refuse `action` unless the drill created this cluster or its fingerprint is allowlisted."""
    if cluster.created_by_drill or cluster.fingerprint in known_drill_fingerprints or cluster.fingerprint in allowlist:
        return
    raise UnsafeTarget(
        f"refusing to {action} on cluster {cluster.fingerprint}: it was not created by the drill and is not allowlisted; "
        f"if this is a drill or staging cluster, add the line '{cluster.fingerprint}' to a file and pass --cluster-allowlist FILE"
    )
