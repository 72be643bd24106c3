"""The drill lock: one drill at a time per cluster (CONVENTIONS, "Lock").

A drill holds the ``coordination.k8s.io/v1`` Lease ``rollback-drill`` in namespace
``production`` while it runs, and renews it in the background. A second drill finds
the Lease held and is refused (``LockHeld``, exit 2) with the holder's name, since
when, and how to break the lock. A Lease whose ``renewTime + leaseDurationSeconds``
has passed belongs to a drill that died; it is taken over.

Every write names the ``resourceVersion`` it read (optimistic concurrency), so two
drills racing for an expired Lease cannot both win: the loser gets 409 Conflict,
reads the Lease again and is refused, naming the winner.

Expiry is judged on this machine's clock against the times the holder wrote. A
Lease that does not say when it expires (no renewTime, no duration) is treated as
held: a lock that cannot be proven dead is never taken.
"""

from __future__ import annotations

import getpass
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, Self, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rollback_drill.errors import InputError, LockHeld, VerificationFailed
from rollback_drill.timing.clock import Clock, SystemClock
from rollback_drill.timing.wait import wait_until

LEASE_NAME = "rollback-drill"
LEASE_NAMESPACE = "production"
DEFAULT_LEASE_S = 60
"""How long a Lease stays valid without renewal: long enough to ride out an API server restart, short
enough that a crashed drill blocks the next one for only a minute."""
DEFAULT_RENEW_EVERY_S = 20
"""A third of the lease: two renewals may fail (a slow or restarting API server) before the lease lapses."""
_ACQUIRE_ATTEMPTS = 3

Action = Literal["create", "renew", "take-over", "held"]


def default_holder(drill_id: str) -> str:
    """``<user>@<host>/<drill_id>``: who to ask before breaking the lock."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}/{drill_id}"


def micro_time(instant: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC), as Lease times are written."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(instant: datetime | None) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if instant else "an unknown time"


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says about its holder. Times are timezone-aware."""

    holder: str | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    duration_s: int | None
    resource_version: str | None = None
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: client.V1Lease) -> LeaseRecord:
        spec = lease.spec or client.V1LeaseSpec()
        meta = lease.metadata or client.V1ObjectMeta()
        return cls(
            holder=spec.holder_identity or None,
            acquired_at=_aware(spec.acquire_time),
            renewed_at=_aware(spec.renew_time),
            duration_s=spec.lease_duration_seconds,
            resource_version=meta.resource_version,
            transitions=int(spec.lease_transitions or 0),
        )

    @property
    def expires_at(self) -> datetime | None:
        """``renewTime`` (or ``acquireTime``) plus ``leaseDurationSeconds``; None when the Lease does not say."""
        last = self.renewed_at or self.acquired_at
        if last is None or self.duration_s is None:
            return None
        return last + timedelta(seconds=self.duration_s)

    def expired(self, now: datetime) -> bool:
        """True once ``now`` reaches the expiry. A Lease without a holder is free; one without an expiry is not."""
        if not self.holder:
            return True
        expires = self.expires_at
        return expires is not None and now >= expires

    def remaining_s(self, now: datetime) -> float | None:
        expires = self.expires_at
        return None if expires is None else max(0.0, (expires - now).total_seconds())


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def decide(existing: LeaseRecord | None, holder: str, now: datetime) -> Action:
    """What ``acquire`` does with the Lease it found."""
    if existing is None:
        return "create"
    if existing.holder == holder:
        return "renew"
    if existing.expired(now):
        return "take-over"
    return "held"


def held_message(existing: LeaseRecord, namespace: str, name: str, now: datetime) -> str:
    """One line: who holds the lock, since when, until when, and how to break it."""
    remaining = existing.remaining_s(now)
    expiry = (
        f"it expires in {remaining:.0f}s unless renewed"
        if remaining is not None
        else "it has no expiry (no renewTime or leaseDurationSeconds)"
    )
    return (
        f"another drill holds this cluster's lock: {existing.holder} has held Lease {namespace}/{name} "
        f"since {_stamp(existing.acquired_at)} (last renewed {_stamp(existing.renewed_at)}; {expiry}); "
        f"wait for that drill to finish, or if it is dead, break the lock with `kubectl -n {namespace} delete lease {name}`"
    )


def lease_body(
    name: str,
    holder: str,
    now: datetime,
    duration_s: int,
    *,
    acquired_at: datetime | None = None,
    transitions: int = 0,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """The Lease as the drill writes it; with ``resource_version`` the write fails (409) if it changed since read."""
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "rollback-drill"}}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "acquireTime": micro_time(acquired_at or now),
            "renewTime": micro_time(now),
            "leaseDurationSeconds": int(duration_s),
            "leaseTransitions": int(transitions),
        },
    }


class DrillLock:
    """The Lease ``rollback-drill``, held for as long as a drill runs. A context manager.

    ``acquire()`` takes the lock or raises ``LockHeld``; a background thread renews it
    every ``renew_every_s``; ``release()`` deletes the Lease only if this drill still
    holds it. If the lock is lost while held (somebody deleted or took the Lease),
    ``lost`` says how and ``check()`` raises.
    """

    def __init__(
        self,
        api: client.ApiClient,
        holder: str,
        *,
        lease_s: int = DEFAULT_LEASE_S,
        renew_every_s: float = DEFAULT_RENEW_EVERY_S,
        namespace: str = LEASE_NAMESPACE,
        name: str = LEASE_NAME,
        clock: Clock | None = None,
    ) -> None:
        if not holder:
            raise InputError("the drill lock needs a holder identity, e.g. user@host/<drill_id>")
        if lease_s < 1 or not 0 < renew_every_s < lease_s:
            raise InputError(
                f"the drill lock needs lease_s >= 1 and 0 < renew_every_s < lease_s; got lease_s={lease_s}, renew_every_s={renew_every_s}"
            )
        self._coordination = client.CoordinationV1Api(api)
        self.holder = holder
        self.lease_s = int(lease_s)
        self.renew_every_s = float(renew_every_s)
        self.namespace = namespace
        self.name = name
        self._clock: Clock = clock or SystemClock()
        self._state = threading.Lock()
        self._record: LeaseRecord | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0
        self.last_renew_error: str | None = None

    # -- reading -------------------------------------------------------------------------

    def read(self) -> LeaseRecord | None:
        """The Lease as it is now, or None if there is none."""
        try:
            return LeaseRecord.from_lease(self._coordination.read_namespaced_lease(self.name, self.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._refusal(exc, "read") from exc

    @property
    def held(self) -> bool:
        with self._state:
            return self._record is not None and self._lost is None

    @property
    def lost(self) -> str | None:
        with self._state:
            return self._lost

    def check(self) -> None:
        """Raise if the lock was lost while this drill held it."""
        lost = self.lost
        if lost is not None:
            raise VerificationFailed(f"the drill lock was lost while the drill ran: {lost}")

    # -- acquiring -----------------------------------------------------------------------

    def acquire(self) -> LeaseRecord:
        """Take the lock (create it, renew our own, or take over an expired one) and start renewing it."""
        for _attempt in range(_ACQUIRE_ATTEMPTS):
            existing = self.read()
            now = self._clock.wall()
            action = decide(existing, self.holder, now)
            if action == "held" and existing is not None:
                raise LockHeld(held_message(existing, self.namespace, self.name, now))
            try:
                record = self._write(action, existing, now)
            except ApiException as exc:
                if exc.status == 409 or (exc.status == 404 and action != "create"):
                    continue  # somebody else wrote (or deleted) first: read again and see who won
                raise self._refusal(exc, "create" if action == "create" else "update") from exc
            with self._state:
                self._record = record
                self._lost = None
            self._start_renewing()
            return record
        winner = self.read()
        if winner is not None and winner.holder != self.holder:
            raise LockHeld(held_message(winner, self.namespace, self.name, self._clock.wall()))
        raise LockHeld(
            f"could not take Lease {self.namespace}/{self.name}: it changed under the drill {_ACQUIRE_ATTEMPTS} times; "
            "another drill is starting on this cluster, try again when it is done"
        )

    def _write(self, action: Action, existing: LeaseRecord | None, now: datetime) -> LeaseRecord:
        if action == "create" or existing is None:
            body = lease_body(self.name, self.holder, now, self.lease_s)
            return LeaseRecord.from_lease(self._coordination.create_namespaced_lease(self.namespace, cast("Any", body)))
        taking_over = action == "take-over"
        body = lease_body(
            self.name,
            self.holder,
            now,
            self.lease_s,
            acquired_at=now if taking_over else existing.acquired_at,
            transitions=existing.transitions + (1 if taking_over else 0),
            resource_version=existing.resource_version,
        )
        return LeaseRecord.from_lease(
            self._coordination.replace_namespaced_lease(self.name, self.namespace, cast("Any", body))
        )

    def _refusal(self, exc: ApiException, verb: str) -> InputError:
        where = f"Lease {self.namespace}/{self.name}"
        if exc.status == 404 and verb == "create":
            return InputError(
                f"cannot take the drill lock: namespace {self.namespace!r} does not exist on this cluster; "
                "the drill acts on the world in that namespace, so point the drill at the right cluster"
            )
        if exc.status in (401, 403):
            return InputError(
                f"cannot {verb} the drill lock {where} ({exc.status} {exc.reason}); "
                "the drill's identity needs leases get/create/update/delete in that namespace (docs/rbac.md)"
            )
        return InputError(f"cannot {verb} the drill lock {where}: the API server answered {exc.status} {exc.reason}")

    # -- renewing ------------------------------------------------------------------------

    def renew(self) -> bool:
        """Renew once; False (and ``lost`` set) if the Lease is no longer ours. Transient errors are kept, not raised."""
        try:
            existing = self.read()
            if existing is None or existing.holder != self.holder:
                self._mark_lost(
                    "Lease deleted" if existing is None else f"Lease now held by {existing.holder}", existing
                )
                return False
            now = self._clock.wall()
            record = self._write("renew", existing, now)
        except ApiException as exc:
            # 409: it changed between read and write; the next tick reads it again.
            self.last_renew_error = f"{exc.status} {exc.reason}"
            return True
        except (InputError, HTTPError, OSError) as exc:
            self.last_renew_error = str(exc)
            return True
        with self._state:
            self._record = record
        self.renewals += 1
        self.last_renew_error = None
        return True

    def _mark_lost(self, how: str, existing: LeaseRecord | None) -> None:
        since = f" (since {_stamp(existing.acquired_at)})" if existing is not None else ""
        with self._state:
            self._lost = f"{how}{since}"
        self._stop.set()

    def _start_renewing(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every_s):
            if not self.renew():
                return

    # -- releasing -----------------------------------------------------------------------

    def release(self) -> bool:
        """Stop renewing and delete the Lease if this drill still holds it; True if it was deleted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.renew_every_s))
            self._thread = None
        with self._state:
            self._record = None
        existing = self.read()
        if existing is None or existing.holder != self.holder:
            return False
        try:
            self._coordination.delete_namespaced_lease(
                self.name,
                self.namespace,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(resource_version=existing.resource_version)
                ),
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False  # gone already, or taken over since we read it: not ours to delete
            raise self._refusal(exc, "delete") from exc
        return True

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


# -- what a second drill, or the person breaking the lock, does ---------------------------


def try_to_take(api: client.ApiClient, holder: str, **lock_options: Any) -> InputError | None:
    """Try to take the drill lock as ``holder``: the refusal, or None when it was free (it is given back at once)."""
    lock = DrillLock(api, holder, **lock_options)
    try:
        lock.acquire()
    except InputError as exc:
        return exc
    lock.release()
    return None


def break_lock(api: client.ApiClient, *, namespace: str = LEASE_NAMESPACE, name: str = LEASE_NAME) -> bool:
    """``kubectl -n production delete lease rollback-drill``, whoever holds it; False if there was none."""
    try:
        client.CoordinationV1Api(api).delete_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


class RenewedLease(Protocol):
    """What watching a held lock renew needs: the Lease as it is now, and the holder's own account of renewing."""

    renewals: int
    last_renew_error: str | None

    def read(self) -> LeaseRecord | None: ...


def wait_renewed(lock: RenewedLease, times: int, *, timeout_s: float, clock: Clock | None = None) -> None:
    """Wait until the Lease's renewTime, as the API server has it, has moved forward ``times`` times."""

    def renewed_at() -> datetime | None:
        record = lock.read()
        if record is None:
            raise VerificationFailed("the drill lock's Lease is gone while it should be renewed")
        return record.renewed_at

    seen = {renewed_at()}

    def renewed() -> bool:
        seen.add(renewed_at())
        return len(seen) > times

    wait_until(
        renewed,
        timeout_s=timeout_s,
        clock=clock,
        describe=f"{times} renewals of the drill lock",
        hint=f"renewals counted: {lock.renewals}, last error: {lock.last_renew_error}",
    )
