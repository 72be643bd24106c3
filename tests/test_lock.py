"""The drill lock's arithmetic: when a Lease is live, expired, ours or somebody else's. No cluster needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from kubernetes import client

from rollback_drill.errors import InputError, LockHeld
from rollback_drill.kube.lock import (
    DrillLock,
    LeaseRecord,
    decide,
    default_holder,
    held_message,
    lease_body,
    micro_time,
)
from rollback_drill.timing.clock import FakeClock

START = datetime(2025, 11, 17, 9, 0, tzinfo=UTC)


def lease(holder: str | None = "alice@laptop/drill-1", *, renewed_ago_s: float = 0, duration_s: int | None = 60):
    clock = FakeClock(START)
    renewed = clock.wall()
    return LeaseRecord(
        holder=holder,
        acquired_at=renewed - timedelta(seconds=300),
        renewed_at=renewed - timedelta(seconds=renewed_ago_s),
        duration_s=duration_s,
        resource_version="42",
    )


def test_no_lease_is_created():
    assert decide(None, "bob@ci/drill-2", START) == "create"


def test_a_live_lease_of_another_drill_is_held():
    clock = FakeClock(START)
    existing = lease(renewed_ago_s=10)
    assert decide(existing, "bob@ci/drill-2", clock.wall()) == "held"
    clock.advance(49.999)
    assert decide(existing, "bob@ci/drill-2", clock.wall()) == "held"


def test_the_lease_expires_exactly_at_renew_time_plus_duration():
    clock = FakeClock(START)
    existing = lease(renewed_ago_s=0, duration_s=60)
    assert existing.expires_at == START + timedelta(seconds=60)
    clock.advance(59.999)
    assert not existing.expired(clock.wall())
    assert decide(existing, "bob@ci/drill-2", clock.wall()) == "held"
    clock.advance(0.001)
    assert existing.expired(clock.wall())
    assert decide(existing, "bob@ci/drill-2", clock.wall()) == "take-over"


def test_a_crashed_drills_lease_is_taken_over():
    existing = lease(renewed_ago_s=600)
    assert decide(existing, "bob@ci/drill-2", START) == "take-over"


def test_our_own_lease_is_renewed_even_when_expired():
    assert decide(lease(renewed_ago_s=5), "alice@laptop/drill-1", START) == "renew"
    assert decide(lease(renewed_ago_s=600), "alice@laptop/drill-1", START) == "renew"


def test_without_renew_time_the_acquire_time_counts():
    existing = LeaseRecord("alice", acquired_at=START, renewed_at=None, duration_s=30)
    assert existing.expires_at == START + timedelta(seconds=30)
    assert decide(existing, "bob", START + timedelta(seconds=29)) == "held"
    assert decide(existing, "bob", START + timedelta(seconds=30)) == "take-over"


def test_a_lease_that_does_not_say_when_it_expires_is_never_taken():
    no_duration = LeaseRecord("alice", acquired_at=START, renewed_at=START, duration_s=None)
    no_times = LeaseRecord("alice", acquired_at=None, renewed_at=None, duration_s=60)
    far_future = START + timedelta(days=365)
    assert decide(no_duration, "bob", far_future) == "held"
    assert decide(no_times, "bob", far_future) == "held"
    assert no_duration.remaining_s(far_future) is None


def test_a_lease_without_holder_is_free():
    assert decide(lease(holder=None), "bob", START) == "take-over"
    assert decide(lease(holder=""), "bob", START) == "take-over"


def test_times_in_other_zones_compare_as_instants():
    plus_two = timezone(timedelta(hours=2))
    existing = LeaseRecord("alice", acquired_at=None, renewed_at=START.astimezone(plus_two), duration_s=60)
    assert decide(existing, "bob", START + timedelta(seconds=59)) == "held"
    assert decide(existing, "bob", START + timedelta(seconds=60)) == "take-over"


def test_remaining_seconds_count_down_with_the_clock():
    clock = FakeClock(START)
    existing = lease(renewed_ago_s=0, duration_s=60)
    clock.advance(45)
    assert existing.remaining_s(clock.wall()) == pytest.approx(15)
    clock.advance(100)
    assert existing.remaining_s(clock.wall()) == 0


def test_the_refusal_names_the_holder_since_when_and_how_to_break_it():
    existing = lease(renewed_ago_s=10)
    message = held_message(existing, "production", "rollback-drill", START)
    assert "alice@laptop/drill-1" in message
    assert "since 2025-11-17T08:55:00Z" in message
    assert "last renewed 2025-11-17T08:59:50Z" in message
    assert "expires in 50s" in message
    assert "kubectl -n production delete lease rollback-drill" in message
    assert "\n" not in message
    assert issubclass(LockHeld, InputError)  # exit 2


def test_lease_body_writes_micro_times_and_the_version_it_read():
    now = START + timedelta(seconds=1, microseconds=5)
    body = lease_body("rollback-drill", "bob", now, 60, acquired_at=START, transitions=3, resource_version="42")
    assert body["metadata"]["resourceVersion"] == "42"
    assert body["spec"] == {
        "holderIdentity": "bob",
        "acquireTime": "2025-11-17T09:00:00.000000Z",
        "renewTime": "2025-11-17T09:00:01.000005Z",
        "leaseDurationSeconds": 60,
        "leaseTransitions": 3,
    }
    assert "resourceVersion" not in lease_body("rollback-drill", "bob", now, 60)["metadata"]


def test_micro_time_is_utc_whatever_the_zone():
    assert micro_time(datetime(2025, 11, 17, 11, 0, tzinfo=timezone(timedelta(hours=2)))) == (
        "2025-11-17T09:00:00.000000Z"
    )


def test_a_record_reads_what_the_api_returns():
    api_lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="rollback-drill", resource_version="7"),
        spec=client.V1LeaseSpec(
            holder_identity="alice",
            acquire_time=START.replace(tzinfo=None),  # naive: the API's times are UTC
            renew_time=START,
            lease_duration_seconds=60,
            lease_transitions=2,
        ),
    )
    record = LeaseRecord.from_lease(api_lease)
    assert record.acquired_at == START
    assert record.resource_version == "7"
    assert record.transitions == 2
    assert record.expires_at == START + timedelta(seconds=60)


def test_default_holder_names_user_host_and_drill():
    holder = default_holder("20251117T090000Z-mass-failure-ab12")
    user_host, _, drill = holder.partition("/")
    assert "@" in user_host
    assert drill == "20251117T090000Z-mass-failure-ab12"


@pytest.mark.parametrize(
    ("lease_s", "renew_every_s"),
    [(60, 60), (60, 0), (60, 90), (0, 0.5), (60, -1)],
)
def test_renewing_must_come_before_the_lease_lapses(lease_s, renew_every_s):
    with pytest.raises(InputError, match="renew_every_s"):
        DrillLock(client.ApiClient(), "alice", lease_s=lease_s, renew_every_s=renew_every_s)


def test_a_holder_is_required():
    with pytest.raises(InputError, match="holder"):
        DrillLock(client.ApiClient(), "")
