"""What is set, when each is due, and what survives a restart.

Timers count elapsed (monotonic) time, so the jump when NTP first answers cannot ring the pasta
early; alarms and reminders are local wall-clock times and follow daylight-saving changes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_agent.statefiles import write_private
from edge_agent.timers.clock import clock_synchronised, local_now
from edge_agent.timers.entry import (
    DAYS,
    MAX_LABEL,
    MAX_TEXT,
    Entry,
    TimerError,
    check_seconds,
    clean,
    duration,
    from_record,
    new_id,
    next_time,
    parse_days,
    parse_time,
    to_record,
)

__all__ = ["Entry", "Listener", "Schedule", "TimerError"]

log = logging.getLogger(__name__)

STATE_FILE = "timers.json"
MAX_ENTRIES = 20
LATE_LIMIT_S = 600  # found due later than this (after a restart or a clock jump): missed
MAX_FILE_BYTES = 64 * 1024
HORIZON = timedelta(days=8)  # nothing is set further ahead (a weekly alarm, plus a DST hour)

Listener = Callable[[str, Entry], None]


class Schedule:
    """At most MAX_ENTRIES timers, alarms and reminders, saved to `path` on every change.

    The app asks `due()` often (and sleeps until `next_entry()`); listeners hear "set",
    "cancelled", "due" and "missed" for the page and MQTT; what to ring comes back from `due()`
    and `load()`.
    """

    def __init__(
        self,
        path: Path | None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = local_now,
        clock_synced: Callable[[], bool] = clock_synchronised,
    ) -> None:
        self.path = path
        self.monotonic, self.now, self.clock_synced = monotonic, now, clock_synced
        self.listeners: list[Listener] = []
        self._entries: list[Entry] = []

    def add_timer(self, seconds: int, label: str | None = None) -> Entry:
        seconds = check_seconds(seconds, "a timer")
        due = self._utc() + timedelta(seconds=seconds)
        default = f"{duration(seconds)} timer"
        entry = Entry(new_id(), "timer", self._label(label, default), due)
        entry.deadline = self.monotonic() + seconds
        return self._add(entry)

    def add_alarm(self, at: str, label: str | None = None, days: Iterable[str] = ()) -> Entry:
        """The next `at` local time, or every listed weekday at `at`."""
        hour, minute = parse_time(at)
        weekdays = parse_days(days)
        due = next_time(self.now(), hour, minute, weekdays)
        at = f"{hour:02}:{minute:02}"
        label = self._label(label, f"alarm {at}")
        return self._add(Entry(new_id(), "alarm", label, due, at=at, days=weekdays))

    def add_reminder(
        self, text: str, at: str | None = None, in_seconds: int | None = None
    ) -> Entry:
        """At the next `at` local time or in `in_seconds` (wall-clock), exactly one of them."""
        words = clean(text if isinstance(text, str) else "")
        if not words or len(words) > MAX_TEXT:
            raise TimerError(f"a reminder needs words to say, at most {MAX_TEXT} characters")
        if (at is None) == (in_seconds is None):
            raise TimerError("give a reminder either a time of day or a number of seconds")
        if at is not None:
            due = next_time(self.now(), *parse_time(at))
        else:
            due = self._utc() + timedelta(seconds=check_seconds(in_seconds, "a reminder"))
        return self._add(Entry(new_id(), "reminder", self._label(None, words), due, text=words))

    def cancel(self, label: str | None = None) -> list[Entry]:
        """The one named (case-insensitively, else the one whose label holds the words), or
        the only one there is."""
        if not self._entries:
            raise TimerError("there are no timers, alarms or reminders")
        if label is None or not clean(label):
            chosen = list(self._entries)
        else:
            wanted = clean(label).lower()
            chosen = [e for e in self._entries if wanted in (e.label.lower(), e.id)]
            chosen = chosen or [e for e in self._entries if wanted in e.label.lower()]
            if not chosen:
                raise TimerError(f"nothing is called {label!r}; set: {self._labels()}")
        if len(chosen) > 1:
            raise TimerError("which one? set: " + ", ".join(e.label for e in chosen))
        self._entries.remove(chosen[0])
        self._save()
        self._tell("cancelled", chosen)
        return chosen

    def entries(self) -> list[Entry]:
        """Soonest first (then in the order set); entries waiting for the clock last."""
        return sorted(self._entries, key=lambda e: (e.held, self._left(e)))

    def next_entry(self) -> Entry | None:
        waiting = [e for e in self.entries() if not e.held]
        return waiting[0] if waiting else None

    def due_in(self) -> float | None:
        """Seconds until the next one falls due (not rounded); None when none waits."""
        waiting = [self._left(e) for e in self._entries if not e.held]
        return min(waiting) if waiting else None

    def seconds_left(self, entry: Entry) -> int:
        return max(0, math.ceil(self._left(entry)))

    def describe(self, entry: Entry) -> dict[str, Any]:
        """JSON for the tools, the page and MQTT."""
        due = self._due_now(entry)
        return {
            "id": entry.id,
            "kind": entry.kind,
            "label": entry.label,
            "text": entry.text,
            "due": due.astimezone(self.now().tzinfo).isoformat(timespec="seconds"),
            "seconds_left": self.seconds_left(entry),
            "repeats": [DAYS[d] for d in entry.days],
            "waiting_for_clock": entry.held,
        }

    def due(self) -> list[Entry]:
        """What rings now: one-shots leave, repeating alarms re-arm. One found due more than
        LATE_LIMIT_S late (the clock jumped) is missed, or held until the clock is synced."""
        return self._judge()[0]

    def load(self) -> tuple[list[Entry], list[Entry]]:
        """Once at start: the saved entries; returns those to ring now and those missed. An
        overdue one is judged now if the clock is synced, else held."""
        self._entries = self._read()
        now = self._utc()
        for entry in self._entries:
            entry.held = entry.due <= now
        return self._judge()

    def _judge(self) -> tuple[list[Entry], list[Entry]]:
        ring: list[Entry] = []
        missed: list[Entry] = []
        synced: bool | None = None  # asked only when it matters
        for entry in self.entries():
            late = -self._left(entry)
            if late < 0 and not entry.held:
                continue
            if entry.held or late > LATE_LIMIT_S:
                synced = self.clock_synced() if synced is None else synced
                entry.held = not synced
                if entry.held or late < 0:  # synced back to before it is due: it waits
                    continue
            (missed if late > LATE_LIMIT_S else ring).append(entry)
        if ring or missed:
            self._settle(ring + missed)
            self._tell("due", ring)
            self._tell("missed", missed)
        return ring, missed

    def _settle(self, done: list[Entry]) -> None:
        local_now = self.now()
        for entry in done:
            if entry.days:
                after = max(entry.due, local_now).astimezone(local_now.tzinfo)
                entry.due = next_time(after, *parse_time(entry.at), entry.days)
                entry.held = False
            else:
                self._entries.remove(entry)
        self._save()

    def _add(self, entry: Entry) -> Entry:
        if len(self._entries) >= MAX_ENTRIES:
            raise TimerError(f"at most {MAX_ENTRIES} can be set; cancel one first")
        self._entries.append(entry)
        self._save()
        self._tell("set", [entry])
        return entry

    def _label(self, given: str | None, default: str) -> str:
        """The given or default label, made unique with " 2", " 3" so cancel finds one."""
        label = clean(given) if isinstance(given, str) else ""
        if len(label) > MAX_LABEL:
            raise TimerError(f"a label has at most {MAX_LABEL} characters")
        label = label or default[:MAX_LABEL].strip()
        taken = {e.label.lower() for e in self._entries}
        number = 1
        unique = label
        while unique.lower() in taken:
            number += 1
            unique = f"{label[: MAX_LABEL - len(str(number)) - 1]} {number}"
        return unique

    def _labels(self) -> str:
        return ", ".join(e.label for e in self.entries())

    def _left(self, entry: Entry) -> float:
        if entry.deadline is not None:
            return entry.deadline - self.monotonic()
        return (entry.due - self._utc()).total_seconds()

    def _due_now(self, entry: Entry) -> datetime:
        """UTC; a timer's from its monotonic deadline."""
        return self._utc() + timedelta(seconds=self._left(entry))

    def _utc(self) -> datetime:
        return self.now().astimezone(UTC)

    def _tell(self, event: str, entries: list[Entry]) -> None:
        for entry in entries:
            for listener in self.listeners:
                listener(event, entry)

    def _save(self) -> None:
        if self.path is None:
            return
        records = [to_record(e, self._due_now(e)) for e in self._entries]
        try:
            write_private(self.path, json.dumps({"version": 1, "entries": records}, indent=1))
        except OSError as exc:
            log.warning("timers cannot be saved to %s: %s", self.path, exc)

    def _read(self) -> list[Entry]:
        """A missing file is no entries; a bad one is one WARNING, never an exception."""
        if self.path is None:
            return []
        try:
            if self.path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            saved = json.loads(self.path.read_text("utf-8"))
            records = saved.get("entries") if isinstance(saved, dict) else None
            if not isinstance(records, list):
                raise ValueError("no list of entries")
        except FileNotFoundError:
            return []
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("timers in %s are unreadable, none restored: %s", self.path, exc)
            return []
        entries: list[Entry] = []
        latest = self._utc() + HORIZON if self.clock_synced() else None
        for record in records[:MAX_ENTRIES]:
            try:
                entry = from_record(record)
            except (KeyError, TypeError, ValueError, OverflowError):
                continue
            if latest is not None and entry.due > latest:
                continue  # absurdly far ahead
            if all(entry.id != e.id and entry.label.lower() != e.label.lower() for e in entries):
                entries.append(entry)
        if len(entries) < len(records):
            skipped = len(records) - len(entries)
            log.warning("timers in %s: %d bad or surplus entries skipped", self.path, skipped)
        return entries
