"""One timer, alarm or reminder, its saved form, and the pure time arithmetic behind them.

All arithmetic is in UTC: aware datetimes that share a ZoneInfo compare and subtract as naive
ones, an hour off across a daylight-saving change.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

MAX_SECONDS = 86400
MAX_LABEL, MAX_TEXT = 60, 500
KINDS = ("timer", "alarm", "reminder")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HH_MM = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class TimerError(ValueError):
    """Bad input, a full schedule or an unclear cancel: the message is for the model to say."""


@dataclass
class Entry:
    id: str
    kind: str  # "timer", "alarm" or "reminder"
    label: str
    due: datetime  # UTC; a timer set in this run follows its monotonic deadline instead
    text: str = ""  # a reminder's words
    at: str = ""  # "HH:MM": an alarm's time of day
    days: tuple[int, ...] = ()  # a repeating alarm's weekdays, 0 = Monday
    deadline: float | None = None  # a timer set in this run: monotonic() when it rings
    held: bool = False  # overdue while the clock is unsynchronised: judged once it is


def to_record(entry: Entry, due: datetime) -> dict[str, Any]:
    """The saved form; `due` is the entry's UTC due time as of now (a timer's from its
    deadline: a restart, maybe a reboot, loses the monotonic clock)."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "label": entry.label,
        "text": entry.text,
        "at": entry.at,
        "days": list(entry.days),
        "due": due.isoformat(timespec="milliseconds"),
    }


def from_record(record: Any) -> Entry:
    """A saved entry checked field by field (the file may be damaged or hostile); raises
    KeyError, TypeError, ValueError or OverflowError on anything wrong."""
    kind, entry_id, label, text, at, due, days = (
        record[key] for key in ("kind", "id", "label", "text", "at", "due", "days")
    )
    strings = (kind, entry_id, label, text, at, due)
    if not all(isinstance(s, str) for s in strings) or not isinstance(days, list):
        raise TypeError("wrong types")
    if kind not in KINDS or not _ID.fullmatch(entry_id) or len(due) > 40:
        raise ValueError("bad kind, id or due")
    if not 0 < len(label) <= MAX_LABEL or clean(label) != label or len(text) > MAX_TEXT:
        raise ValueError("bad label or text")
    at_ok = _HH_MM.fullmatch(at) if kind == "alarm" else at == ""
    if not at_ok or (kind == "reminder") != bool(text):
        raise ValueError("bad time of day or text")
    weekdays = tuple(sorted({d for d in days if type(d) is int and 0 <= d <= 6}))
    if len(weekdays) != len(days) or (kind != "alarm" and days):
        raise ValueError("bad days")
    when = datetime.fromisoformat(due)
    if when.tzinfo is None or not 2000 <= when.year <= 2200:
        raise ValueError("absurd due time")
    return Entry(entry_id, kind, label, when.astimezone(UTC), text=text, at=at, days=weekdays)


def next_time(after: datetime, hour: int, minute: int, days: tuple[int, ...] = ()) -> datetime:
    """The first hour:minute local time after `after` (aware, local), on one of `days` if
    given, in UTC. A time skipped by a spring-forward change rings as late as the gap (02:30
    in Berlin: 03:30 summer time); a time that happens twice rings at the first."""
    for offset in range(8):
        day = after.date() + timedelta(days=offset)
        if days and day.weekday() not in days:
            continue
        due = datetime.combine(day, time_of_day(hour, minute), tzinfo=after.tzinfo)
        if due.astimezone(UTC) > after.astimezone(UTC):  # not `due > after`: naive on one zone
            return due.astimezone(UTC)
    raise AssertionError("a week always holds the next time")


def parse_time(text: object) -> tuple[int, int]:
    """ "07:30" or "7:30" -> (7, 30)."""
    matched = _HH_MM.fullmatch(text.strip()) if isinstance(text, str) else None
    if matched is None:
        raise TimerError(f"{text!r} is not a time of day as HH:MM, e.g. 07:30")
    return int(matched[1]), int(matched[2])


def parse_days(names: Iterable[object]) -> tuple[int, ...]:
    """Weekday names ("monday", "Mon") to numbers, Monday 0."""
    days = set()
    for name in names:
        key = clean(name).lower() if isinstance(name, str) else ""
        number = next((n for n, day in enumerate(DAYS) if key in (day, day[:3])), None)
        if number is None:
            raise TimerError(f"{name!r} is not a weekday (monday … sunday, or mon … sun)")
        days.add(number)
    return tuple(sorted(days))


def duration(seconds: int) -> str:
    """3725 -> "1 hour 2 minute 5 second" (read before "timer": "a 10 minute timer")."""
    hours, rest = divmod(seconds, 3600)
    parts = [(hours, "hour"), (rest // 60, "minute"), (rest % 60, "second")]
    return " ".join(f"{count} {unit}" for count, unit in parts if count)


def check_seconds(value: object, what: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SECONDS:
        raise TimerError(f"{what} runs 1 to {MAX_SECONDS} seconds (24 hours), not {value!r}")
    return value


def clean(text: str) -> str:
    """Printable characters, whitespace runs as one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def new_id() -> str:
    return uuid.uuid4().hex[:8]
