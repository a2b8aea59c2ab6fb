"""The timer schedule on injected clocks (DST included) and its state file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge_agent.timers.schedule import Entry, Schedule, TimerError

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


class Clocks:
    """A wall clock and a monotonic one that advance together, unless told otherwise."""

    def __init__(self, start: datetime, zone: tzinfo = BERLIN, synced: bool = True) -> None:
        self.utc, self.zone, self.synced, self.mono = start.astimezone(UTC), zone, synced, 500.0
        self.events: list[tuple[str, str]] = []

    def now(self) -> datetime:
        return self.utc.astimezone(self.zone)

    def advance(self, seconds: float) -> None:
        self.utc += timedelta(seconds=seconds)
        self.mono += seconds

    def schedule(self, path: Path | None = None) -> Schedule:
        schedule = Schedule(path, lambda: self.mono, self.now, lambda: self.synced)
        schedule.listeners.append(lambda event, entry: self.events.append((event, entry.label)))
        return schedule


def labels(entries: list[Entry]) -> list[str]:
    return [e.label for e in entries]


def test_a_timer_runs_on_elapsed_time_whatever_the_wall_clock_does() -> None:
    clocks = Clocks(berlin(2026, 5, 4, 12, 0))
    schedule = clocks.schedule()
    timer = schedule.add_timer(600)
    assert timer.label == "10 minute timer" and schedule.seconds_left(timer) == 600
    clocks.advance(599)
    clocks.utc += timedelta(hours=2)  # NTP steps the clock: the timer does not care
    assert schedule.due() == [] and schedule.seconds_left(timer) == 1
    clocks.mono += 1
    assert schedule.due() == [timer] and schedule.entries() == []
    assert clocks.events == [("set", "10 minute timer"), ("due", "10 minute timer")]
    assert schedule.add_timer(5400).label == "1 hour 30 minute timer"


def test_alarms_across_the_spring_forward_change() -> None:
    clocks = Clocks(berlin(2026, 3, 28, 22, 0))  # CET; at 02:00 the clocks go to 03:00
    schedule = clocks.schedule()
    seven = schedule.add_alarm("07:00")
    assert schedule.seconds_left(seven) == 8 * 3600  # not 9: one hour is skipped
    assert schedule.describe(seven)["due"] == "2026-03-29T07:00:00+02:00"
    skipped = schedule.add_alarm("2:30")  # does not exist that night: rings after the gap
    assert skipped.label == "alarm 02:30"
    assert schedule.describe(skipped)["due"] == "2026-03-29T03:30:00+02:00"
    clocks.advance(4.5 * 3600 - 1)
    assert schedule.due() == []
    clocks.advance(1)
    assert schedule.due() == [skipped] and schedule.next_entry() is seven


def test_a_daily_alarm_rings_once_in_the_hour_that_happens_twice() -> None:
    clocks = Clocks(berlin(2026, 10, 24, 22, 0))  # CEST; at 03:00 the clocks go back to 02:00
    schedule = clocks.schedule()
    assert schedule.seconds_left(schedule.add_alarm("07:00")) == 10 * 3600
    daily = schedule.add_alarm("02:30", "night", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    assert schedule.describe(daily)["due"] == "2026-10-25T02:30:00+02:00"
    clocks.advance(4.5 * 3600)
    assert schedule.due() == [daily]
    assert schedule.describe(daily)["due"] == "2026-10-26T02:30:00+01:00"
    clocks.advance(3600)  # 02:30 again, in winter time
    assert schedule.due() == [] and schedule.seconds_left(daily) == 24 * 3600


def test_a_weekday_alarm_rearms_for_the_next_listed_day() -> None:
    clocks = Clocks(berlin(2026, 4, 3, 8, 0))  # a Friday
    schedule = clocks.schedule()
    alarm = schedule.add_alarm("07:30", days=["Wednesday", "mon", "monday"])
    described = schedule.describe(alarm)
    assert described["due"] == "2026-04-06T07:30:00+02:00"
    assert described["repeats"] == ["monday", "wednesday"]
    clocks.utc = berlin(2026, 4, 6, 7, 30).astimezone(UTC)
    assert schedule.due() == [alarm] and schedule.entries() == [alarm]
    assert schedule.describe(alarm)["due"] == "2026-04-08T07:30:00+02:00"
    for days in (["funday"], ["mo"], [""]):
        with pytest.raises(TimerError, match="not a weekday"):
            schedule.add_alarm("07:30", days=days)


def test_reminders_at_a_time_of_day_or_after_seconds() -> None:
    clocks = Clocks(berlin(2026, 5, 4, 12, 0))
    schedule = clocks.schedule()
    call = schedule.add_reminder("call  mum\n", at="18:00")
    assert call.label == "call mum" and call.text == "call mum"
    assert schedule.describe(call)["due"] == "2026-05-04T18:00:00+02:00"
    stretch = schedule.add_reminder("stretch", in_seconds=90)
    assert schedule.seconds_left(stretch) == 90 and schedule.next_entry() is stretch
    with pytest.raises(TimerError, match="either"):
        schedule.add_reminder("both", at="18:00", in_seconds=5)
    with pytest.raises(TimerError, match="either"):
        schedule.add_reminder("neither")
    with pytest.raises(TimerError, match="words"):
        schedule.add_reminder(" \t")
    clocks.advance(90)
    assert schedule.due() == [stretch]


def test_bounds_and_the_limit_of_twenty() -> None:
    schedule = Clocks(berlin(2026, 5, 4, 12, 0)).schedule()
    for bad in (0, 86401, -5, 1.5, True, "60"):
        with pytest.raises(TimerError, match="1 to 86400"):
            schedule.add_timer(bad)  # type: ignore[arg-type]
    for bad_time in ("24:00", "7.30", "07:60", "", "0730"):
        with pytest.raises(TimerError, match="HH:MM"):
            schedule.add_alarm(bad_time)
    with pytest.raises(TimerError, match="60 characters"):
        schedule.add_timer(60, "x" * 61)
    with pytest.raises(TimerError, match="500 characters"):
        schedule.add_reminder("x" * 501, in_seconds=5)
    for _ in range(20):
        schedule.add_timer(60)
    with pytest.raises(TimerError, match="at most 20"):
        schedule.add_alarm("07:00")
    assert len(schedule.entries()) == 20 and schedule.entries()[1].label == "1 minute timer 2"


def test_cancel_the_only_one_by_label_or_ask_which() -> None:
    schedule = Clocks(berlin(2026, 5, 4, 12, 0)).schedule()
    with pytest.raises(TimerError, match="there are no"):
        schedule.cancel()
    only = schedule.add_timer(60)
    assert schedule.cancel() == [only] and schedule.entries() == []
    schedule.add_timer(600, "Pasta")
    schedule.add_alarm("07:00")
    with pytest.raises(TimerError, match=r"which one.*Pasta.*alarm 07:00"):
        schedule.cancel()
    with pytest.raises(TimerError, match="nothing is called 'eggs'"):
        schedule.cancel("eggs")
    assert labels(schedule.cancel("PASTA")) == ["Pasta"]
    assert labels(schedule.cancel("07:00")) == ["alarm 07:00"]  # words within the label
    schedule.add_timer(60, "tea")
    schedule.add_timer(60, "tea")
    with pytest.raises(TimerError, match="which one"):
        schedule.cancel("te")
    assert labels(schedule.cancel("tea 2")) == ["tea 2"]


def test_the_state_file_round_trip_is_private(tmp_path: Path) -> None:
    clocks = Clocks(berlin(2026, 5, 4, 12, 0))
    path = tmp_path / "state" / "timers.json"
    schedule = clocks.schedule(path)
    schedule.add_timer(600, "pasta")
    schedule.add_alarm("07:30", days=["sat", "sun"])
    schedule.add_reminder("water the plants", in_seconds=3600)
    assert path.stat().st_mode & 0o777 == 0o600
    clocks.advance(60)
    restarted = clocks.schedule(path)
    assert restarted.load() == ([], [])
    before = [schedule.describe(e) for e in schedule.entries()]
    after = [restarted.describe(e) for e in restarted.entries()]
    assert [{**d, "id": 0} for d in before] == [{**d, "id": 0} for d in after]
    assert after[0]["label"] == "pasta" and after[0]["seconds_left"] == 540
    assert after[2]["repeats"] == ["saturday", "sunday"]


def _restart(clocks: Clocks, path: Path, late_s: float) -> tuple[list[str], list[str]]:
    schedule = clocks.schedule(path)
    schedule.add_reminder("five", in_seconds=60)
    schedule.add_alarm("12:02", days=["mon"])
    clocks.advance(60 + late_s)  # the daemon was down
    ring, missed = clocks.schedule(path).load()
    return labels(ring), labels(missed)


def test_at_start_five_minutes_late_rings_fifteen_is_missed(tmp_path: Path) -> None:
    monday_noon = berlin(2026, 5, 4, 12, 0)
    assert _restart(Clocks(monday_noon), tmp_path / "a.json", 300) == (["five", "alarm 12:02"], [])
    clocks = Clocks(monday_noon)
    assert _restart(clocks, tmp_path / "b.json", 900) == ([], ["five", "alarm 12:02"])
    assert ("missed", "five") in clocks.events
    reloaded = clocks.schedule(tmp_path / "b.json")
    reloaded.load()
    assert labels(reloaded.entries()) == ["alarm 12:02"]  # a weekly alarm stays, re-armed
    assert reloaded.describe(reloaded.entries()[0])["due"] == "2026-05-11T12:02:00+02:00"


def test_an_unsynchronised_clock_holds_the_judgement(tmp_path: Path) -> None:
    clocks = Clocks(berlin(2026, 5, 4, 12, 0))
    path = tmp_path / "timers.json"
    schedule = clocks.schedule(path)
    schedule.add_timer(60, "soon")
    schedule.add_timer(120, "sooner or later")
    schedule.add_timer(3600, "later")
    clocks.advance(300)
    clocks.synced = False
    restarted = clocks.schedule(path)
    assert restarted.load() == ([], [])
    assert [e.held for e in restarted.entries()] == [False, True, True]
    upcoming = restarted.next_entry()
    assert upcoming is not None and upcoming.label == "later"
    assert restarted.describe(restarted.entries()[1])["waiting_for_clock"] is True
    assert restarted.due() == []
    clocks.advance(420)  # still not synced: nothing is judged
    assert restarted.due() == []
    clocks.synced = True
    clocks.events.clear()
    assert labels(restarted.due()) == ["sooner or later"]  # 10 min late; the other 11
    assert clocks.events == [("due", "sooner or later"), ("missed", "soon")]


def test_a_clock_that_jumps_hours_ahead_misses_rather_than_rings() -> None:
    clocks = Clocks(berlin(2026, 5, 4, 5, 0), synced=False)  # the last time saved at shutdown
    schedule = clocks.schedule()
    alarm = schedule.add_alarm("07:00")
    clocks.utc += timedelta(hours=4)  # NTP answers: it is 09:00
    assert schedule.due() == [] and alarm.held
    clocks.synced = True
    assert schedule.due() == [] and clocks.events[-1] == ("missed", "alarm 07:00")


HOSTILE: list[tuple[str, str | bytes]] = [
    ("bad json", "{not json"),
    ("not utf-8", b"\xff\xfe{}"),
    ("wrong shape", '["entries"]'),
    ("entries not a list", '{"entries": {"a": 1}}'),
    ("deep", "[" * 30000 + "]" * 30000),
    ("too large", '{"entries": []}' + " " * 70000),
]


@pytest.mark.parametrize(("name", "content"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_an_unreadable_state_file_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, content: str | bytes
) -> None:
    path = tmp_path / "timers.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    schedule = Clocks(berlin(2026, 5, 4, 12, 0)).schedule(path)
    assert schedule.load() == ([], []) and schedule.entries() == []
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_bad_entries_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"id": "a1", "kind": "timer", "label": "ok", "text": "", "at": "", "days": [],
            "due": "2026-05-04T10:05:00+00:00"}  # fmt: skip
    bad: list[Any] = [
        "text",
        [1, 2],
        {**good, "id": "../../etc"},
        {**good, "kind": "bomb"},
        {**good, "label": 5},
        {**good, "label": "two\nlines"},
        {**good, "label": ""},
        {**good, "due": "9999-12-31T23:59:59+00:00"},
        {**good, "due": "1970-01-01T00:00:00+00:00"},
        {**good, "due": "2026-05-04T10:05:00"},  # no zone
        {**good, "due": "2026-06-04T10:05:00+00:00"},  # a month ahead
        {**good, "kind": "alarm", "at": "31:00"},
        {**good, "days": [1]},  # days on a timer
        {**good, "kind": "alarm", "at": "07:00", "days": [True]},
        {**good, "kind": "reminder"},  # no text
        {**good, "id": "a1", "label": "same id"},
    ]
    path = tmp_path / "timers.json"
    path.write_text(json.dumps({"entries": [good, *bad]}))
    schedule = Clocks(berlin(2026, 5, 4, 12, 0)).schedule(path)
    assert schedule.load() == ([], [])
    assert labels(schedule.entries()) == ["ok"]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    caplog.clear()
    path.write_text(json.dumps({"entries": [{**good, "id": f"x{n}", "label": f"t{n}"}
                                            for n in range(300)]}))  # fmt: skip
    schedule.load()
    assert len(schedule.entries()) == 20 and len(caplog.records) == 1


def test_an_unwritable_state_file_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "timers.json").mkdir()
    schedule = Clocks(berlin(2026, 5, 4, 12, 0)).schedule(tmp_path / "timers.json")
    assert schedule.add_timer(60).label == "1 minute timer"
    assert "cannot be saved" in caplog.text
