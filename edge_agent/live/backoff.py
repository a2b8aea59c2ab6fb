"""When LiveSession connects again after a connection ends, and when the gap is an outage.

A connection that ends after it was healthy is followed at once, so is a planned switch or a
fresh session; one that ended quickly, or never came up, counts as a failure and the next
attempt waits longer each time, up to `[live] max_backoff_s`. An outage is reported once when
it begins, again when its kind of cause changes, and once when it ends; never per attempt.

Decisions only: the session logs and sends the events they call for.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

HEALTHY_AFTER_S = 10.0  # a connection this old (or one that answered a turn) resets the backoff
IMMEDIATE_CLOSE_S = 2.0  # one that ends sooner, having answered nothing, counts as a failure
TURN_RETRY_S = 0.5  # while a fresh turn waits to be sent, retry at least this often


def backoff_delay(failures: int, cap: float) -> float:
    if failures <= 1:
        return min(cap, random.uniform(0.05, 0.25))  # a single drop: come back at once
    return float(min(cap, 0.5 * 2 ** (failures - 1)) * random.uniform(0.8, 1.0))


async def pause(delay: float, fresh_turn_waiting: Callable[[], bool]) -> None:
    """The backoff, cut to TURN_RETRY_S while a user turn waits that can still be sent."""
    end = time.monotonic() + delay
    while (now := time.monotonic()) < end:
        if fresh_turn_waiting():
            end = min(end, now + TURN_RETRY_S)
        await asyncio.sleep(min(0.5, end - now))


def cause_kind(cause: str) -> str:
    """"network: timed out" and "network: refused" are one outage; "1011 ..." another."""
    return cause.split(":")[0].split(" ")[0]


class Backoff:
    def __init__(self) -> None:
        self.failures = 0  # consecutive connections that failed or did not become healthy
        self.offline = False  # an outage is being reported (not a single quick reconnect)
        self.outage_attempts = 0
        self._outage_cause = ""
        self._fresh_session_last = False  # a fresh session is tried at once, not twice in a row

    def connection_ended(
        self, lived_s: float, served_turn: bool, planned: bool, fresh_session: bool
    ) -> bool:
        """Counts an attempt that ended (lived_s 0 when it never connected). True when the next
        one opens at once: a planned switch (goAway, an answer that never came) from a healthy
        connection, or a fresh session the service asked for, but not twice in a row."""
        healthy = served_turn or lived_s >= HEALTHY_AFTER_S
        fresh_at_once = fresh_session and not self._fresh_session_last
        self._fresh_session_last = fresh_session
        if healthy:
            self.failures = 0
        elif lived_s < IMMEDIATE_CLOSE_S and not fresh_at_once:
            self.failures += 1
        return (healthy and planned) or fresh_at_once

    def delay(self, cap: float) -> float:
        return backoff_delay(self.failures, cap)

    def is_outage(self, was_connected: bool) -> bool:
        """No connection came up, or quick failures follow each other: not a single drop."""
        return not was_connected or self.failures >= 2

    def outage_attempt(self, cause: str) -> bool:
        """Counts a failed attempt of an outage. True when it is news: the outage begins, or
        its kind of cause changes."""
        self.outage_attempts += 1
        if self.offline and cause_kind(cause) == cause_kind(self._outage_cause):
            return False
        self.offline, self._outage_cause = True, cause
        return True

    def back_online(self) -> int | None:
        """A connection is up: the failed attempts of the outage it ends, None without one."""
        attempts = self.outage_attempts if self.offline else None
        self.offline, self.outage_attempts = False, 0
        return attempts
