"""409 Conflict as "it exists already": kept or replaced, while every other API error goes through."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from rollback_drill.kube.conflict import create_or_replace, is_conflict, suppress_conflict


def refuse(status: int):
    def call() -> object:
        raise ApiException(status=status, reason="refused")

    return call


def test_only_a_409_is_a_conflict():
    assert is_conflict(ApiException(status=409))
    assert not is_conflict(ApiException(status=404))
    assert not is_conflict(ApiException(status=422))
    assert not is_conflict(ValueError("409"))
    assert not is_conflict(None)


def test_suppress_conflict_swallows_409_and_nothing_else():
    with suppress_conflict():
        refuse(409)()
    for status in (403, 404, 422, 500):
        with pytest.raises(ApiException) as caught, suppress_conflict():
            refuse(status)()
        assert caught.value.status == status
    with pytest.raises(KeyError), suppress_conflict():
        raise KeyError("not an API error")


def test_create_or_replace_creates_what_is_missing_and_does_not_replace_it():
    calls: list[str] = []
    assert create_or_replace(lambda: calls.append("create"), lambda: calls.append("replace")) is True
    assert calls == ["create"]


def test_create_or_replace_replaces_what_exists():
    calls: list[str] = []
    assert create_or_replace(refuse(409), lambda: calls.append("replace")) is False
    assert calls == ["replace"]


def test_create_or_replace_without_replace_keeps_what_exists():
    assert create_or_replace(refuse(409), None) is False


def test_create_or_replace_lets_other_errors_through_without_replacing():
    calls: list[str] = []
    with pytest.raises(ApiException) as caught:
        create_or_replace(refuse(404), lambda: calls.append("replace"))
    assert caught.value.status == 404
    assert calls == []
