"""Splitting a probe's answers at the first refusal: when a repo left the allowlist, and what it saw either side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollback_drill.timing.probe import ProbeOutcome, ProbeSample, Switchover, split_at_first_refusal

START = datetime(2025, 11, 17, 9, 0, tzinfo=UTC)
SERVED = ProbeOutcome(ok=True, kind="served")
REFUSED = ProbeOutcome(ok=True, kind="refused", detail="Restricted to pilot scope")
ERROR = ProbeOutcome(ok=False, kind="error", detail="ConnectionResetError")


def samples_at(*points: tuple[float, ProbeOutcome]) -> list[ProbeSample]:
    return [ProbeSample(t, START + timedelta(seconds=t), outcome, 0.01) for t, outcome in points]


def test_answers_before_the_instant_are_left_out_and_the_split_is_at_the_first_refusal():
    samples = samples_at((0, REFUSED), (1, SERVED), (2, SERVED), (3, REFUSED), (4, ERROR), (5, REFUSED))
    switch = split_at_first_refusal(samples, since=1)
    assert [s.t_monotonic for s in switch.before] == [1, 2]
    assert [s.t_monotonic for s in switch.after] == [3, 4, 5]
    assert switch.refused_at == 3


def test_unordered_samples_are_put_in_time_order_first():
    samples = samples_at((3, REFUSED), (1, SERVED), (2, SERVED))
    switch = split_at_first_refusal(samples, since=0)
    assert [s.t_monotonic for s in switch.before] == [1, 2]
    assert [s.t_monotonic for s in switch.after] == [3]


def test_without_a_refusal_everything_is_before_and_nothing_was_refused():
    switch = split_at_first_refusal(samples_at((0, SERVED), (1, ERROR)), since=0)
    assert len(switch.before) == 2
    assert switch.after == ()
    assert switch.refused_at is None


def test_an_instant_after_every_sample_leaves_nothing():
    assert split_at_first_refusal(samples_at((0, SERVED), (1, REFUSED)), since=2) == Switchover((), ())
