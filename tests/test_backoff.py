"""The reconnect policy on its own: delays, failed attempts, offline and back online."""

from __future__ import annotations

import time

import pytest

from edge_agent.live import backoff
from edge_agent.live.backoff import (
    HEALTHY_AFTER_S,
    IMMEDIATE_CLOSE_S,
    Backoff,
    backoff_delay,
    cause_kind,
    pause,
)


def test_a_single_drop_comes_back_at_once_then_the_delay_doubles_up_to_the_cap() -> None:
    for _ in range(50):
        assert 0.05 <= backoff_delay(0, 60.0) <= 0.25
        assert 0.05 <= backoff_delay(1, 60.0) <= 0.25
        assert 0.8 <= backoff_delay(2, 60.0) <= 1.0
        assert 1.6 <= backoff_delay(3, 60.0) <= 2.0
        assert 48.0 <= backoff_delay(20, 60.0) <= 60.0
        assert backoff_delay(1, 0.1) <= 0.1


def test_quick_failures_count_and_a_healthy_connection_resets_them() -> None:
    policy = Backoff()
    for expected in (1, 2, 3):
        assert not policy.connection_ended(0.0, False, planned=False, fresh_session=False)
        assert policy.failures == expected
    between = (IMMEDIATE_CLOSE_S + HEALTHY_AFTER_S) / 2  # neither quick nor healthy
    policy.connection_ended(between, False, planned=False, fresh_session=False)
    assert policy.failures == 3
    policy.connection_ended(HEALTHY_AFTER_S, False, planned=False, fresh_session=False)
    assert policy.failures == 0
    policy.connection_ended(1.0, False, planned=False, fresh_session=False)
    policy.connection_ended(1.0, True, planned=False, fresh_session=False)  # it answered a turn
    assert policy.failures == 0


def test_a_planned_switch_is_at_once_only_from_a_healthy_connection() -> None:
    policy = Backoff()
    assert policy.connection_ended(30.0, False, planned=True, fresh_session=False)
    assert policy.connection_ended(1.0, True, planned=True, fresh_session=False)
    assert not policy.connection_ended(1.0, False, planned=True, fresh_session=False)
    assert not policy.connection_ended(30.0, False, planned=False, fresh_session=False)


def test_a_fresh_session_is_opened_at_once_but_not_twice_in_a_row() -> None:
    policy = Backoff()
    assert policy.connection_ended(0.5, False, planned=False, fresh_session=True)
    assert policy.failures == 0  # at once, not counted
    assert not policy.connection_ended(0.5, False, planned=False, fresh_session=True)
    assert policy.failures == 1
    policy.connection_ended(0.5, False, planned=False, fresh_session=False)
    assert policy.connection_ended(0.5, False, planned=False, fresh_session=True)


def test_an_outage_is_no_connection_or_repeated_quick_failures() -> None:
    policy = Backoff()
    assert policy.is_outage(was_connected=False)
    policy.connection_ended(0.5, False, planned=False, fresh_session=False)
    assert not policy.is_outage(was_connected=True)  # one drop
    policy.connection_ended(0.5, False, planned=False, fresh_session=False)
    assert policy.is_outage(was_connected=True)


def test_an_outage_is_news_when_it_begins_and_when_its_kind_of_cause_changes() -> None:
    policy = Backoff()
    assert policy.back_online() is None  # no outage to end
    assert policy.outage_attempt("network: timed out") and policy.offline
    assert not policy.outage_attempt("network: connection refused")
    assert policy.outage_attempt("1011 Internal error occurred.")
    assert not policy.outage_attempt("1011 Deadline expired")
    assert policy.back_online() == 4
    assert not policy.offline and policy.outage_attempts == 0
    assert policy.back_online() is None
    assert policy.outage_attempt("network: timed out")  # a new outage is news again


def test_cause_kind() -> None:
    assert cause_kind("network: timed out") == "network"
    assert cause_kind("1011 Internal error occurred.") == "1011"
    assert cause_kind("no setupComplete within the connect timeout") == "no"


async def test_the_pause_is_cut_short_while_a_fresh_turn_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backoff, "TURN_RETRY_S", 0.05)
    started = time.monotonic()
    await pause(30.0, lambda: True)
    assert time.monotonic() - started < 5.0
    started = time.monotonic()
    await pause(0.2, lambda: False)
    assert time.monotonic() - started >= 0.2
