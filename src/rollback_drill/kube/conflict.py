"""409 Conflict as "it exists already": what seeding and the drill's own objects make of it.

Creating what the drill needs is idempotent: a namespace, a CRD or a Role that exists
already is kept, or replaced so that running twice gives the same cluster. Every other
API error goes through. (The drill lock reads 409 differently, as a lost race for the
Lease; ``kube.lock`` handles that itself.)
"""

from __future__ import annotations

from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

CONFLICT = 409


def is_conflict(exc: BaseException | None) -> bool:
    """The API server's 409 Conflict: on a create, the object exists already."""
    return isinstance(exc, ApiException) and exc.status == CONFLICT


class suppress_conflict:  # noqa: N801 - used like contextlib.suppress
    """Ignore 409 Conflict (already exists); let every other API error through."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        return is_conflict(exc)


def create_or_replace(create: Callable[[], object], replace: Callable[[], object] | None) -> bool:
    """Create; if it exists, ``replace`` it (or, with ``replace=None``, keep it as it is).

    Returns True when the object was created, False when one existed already.
    """
    with suppress_conflict():
        create()
        return True
    if replace is not None:
        replace()
    return False
