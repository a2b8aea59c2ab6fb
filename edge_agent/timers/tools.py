"""The model's tools for the schedule: set_timer, set_alarm, set_reminder, list_timers and
cancel_timer.

Each answers with what was set, when it is due and how long is left, in words the model can
say. They are async so they run on the event loop, like the app's own use of the schedule
(the runner puts sync tools in a thread). A refusal is returned as {"error": ...}: raising would
be answered the same way but also logged as a WARNING "tool failed", which a user asking for a
25-hour timer is not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge_agent.timers.entry import DAYS, MAX_LABEL, MAX_SECONDS, MAX_TEXT
from edge_agent.timers.schedule import Entry, Schedule, TimerError
from edge_agent.tools.registry import Tool, tool

LABEL = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL}
TIME = {
    "type": "string",
    "pattern": "^([01]?[0-9]|2[0-3]):[0-5][0-9]$",
    "description": "local time of day, 24-hour HH:MM",
}
SECONDS = {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS}
WEEKDAYS = [*DAYS, *(day[:3] for day in DAYS)]


def timer_tools(
    schedule: Schedule, stop_ringing: Callable[[str | None], list[str]] = lambda label: []
) -> list[Tool]:
    """The five tools, bound to `schedule`; `stop_ringing(label)` stops what rings now (it has
    left the schedule) and says what it stopped."""

    def answer(key: str, entries: list[Entry]) -> dict[str, Any]:
        spoken = [_spoken(schedule, e) for e in entries]
        return {key: spoken[0] if key == "set" else spoken}

    @tool(
        "Start a countdown timer. Answers with its label, when it rings and the seconds left.",
        {
            "type": "object",
            "properties": {
                "seconds": {**SECONDS, "description": "how long, 1 to 86400 (24 hours)"},
                "label": {**LABEL, "description": "a name, e.g. pasta; default: '10 minute timer'"},
            },
            "required": ["seconds"],
        },
    )
    async def set_timer(seconds: int, label: str | None = None) -> dict[str, Any]:
        try:
            return answer("set", [schedule.add_timer(seconds, label)])
        except TimerError as exc:
            return {"error": str(exc)}

    @tool(
        "Set an alarm at a local time of day: the next one, or every listed weekday.",
        {
            "type": "object",
            "properties": {
                "time": TIME,
                "label": LABEL,
                "days": {
                    "type": "array",
                    "items": {"type": "string", "enum": WEEKDAYS},
                    "maxItems": 7,
                    "description": "weekdays it repeats on; none: rings once",
                },
            },
            "required": ["time"],
        },
    )
    async def set_alarm(
        time: str, label: str | None = None, days: list[str] | None = None
    ) -> dict[str, Any]:
        try:
            return answer("set", [schedule.add_alarm(time, label, days or ())])
        except TimerError as exc:
            return {"error": str(exc)}

    @tool(
        "Remind the user of something, either at a local time of day or in a number of seconds "
        "(exactly one of the two). The text is read out when it is due.",
        {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                "at": TIME,
                "in_seconds": SECONDS,
            },
            "required": ["text"],
        },
    )
    async def set_reminder(
        text: str, at: str | None = None, in_seconds: int | None = None
    ) -> dict[str, Any]:
        try:
            return answer("set", [schedule.add_reminder(text, at, in_seconds)])
        except TimerError as exc:
            return {"error": str(exc)}

    @tool("The timers, alarms and reminders that are set, soonest first, with the time left.")
    async def list_timers() -> dict[str, Any]:
        entries = schedule.entries()
        return {"count": len(entries), **answer("entries", entries)}

    @tool(
        "Cancel a timer, alarm or reminder by its label; without a label, the only one set "
        "(with several, the answer lists them to ask which).",
        {"type": "object", "properties": {"label": LABEL}},
    )
    async def cancel_timer(label: str | None = None) -> dict[str, Any]:
        stopped = stop_ringing(label)
        if stopped:
            return {"stopped_ringing": stopped}
        try:
            return answer("cancelled", schedule.cancel(label))
        except TimerError as exc:
            return {"error": str(exc)}

    return [set_timer, set_alarm, set_reminder, list_timers, cancel_timer]


def _spoken(schedule: Schedule, entry: Entry) -> dict[str, Any]:
    """describe() plus the due time and the time left in words."""
    described = schedule.describe(entry)
    due = datetime.fromisoformat(described["due"])
    left = _words(described["seconds_left"])
    if entry.held:
        left = "overdue while the clock is not yet set: judged once it is"
    return {**described, "due_local": _day_and_time(due, schedule.now()), "left": left}


def _day_and_time(due: datetime, now: datetime) -> str:
    """ "07:30 today", "07:30 tomorrow", "07:30 on Monday"."""
    days = (due.date() - now.date()).days
    day = {0: "today", 1: "tomorrow"}.get(days, f"on {due:%A}")
    if days < 0 or days > 6:
        day = f"on {due:%Y-%m-%d}"
    return f"{due:%H:%M} {day}"


def _words(seconds: int) -> str:
    """3725 -> "1 hour 2 minutes 5 seconds"."""
    hours, rest = divmod(seconds, 3600)
    parts = [(hours, "hour"), (rest // 60, "minute"), (rest % 60, "second")]
    said = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(said) or "now"
