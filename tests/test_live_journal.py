"""The outbox and replay journal on their own: what is kept, replayed, expired and dropped."""

from __future__ import annotations

from collections import deque

from edge_agent.events import TurnLost
from edge_agent.live.journal import GAP_AUDIO_LIMIT_S, JOURNAL_ITEMS, Journal, Outgoing

ONE_SECOND = bytes(32000)  # 16 kHz, 16-bit mono


def spoken_turn(turn: int, at: float, seconds: int = 1) -> list[Outgoing]:
    return [
        Outgoing("activity_start", at=at),
        *(Outgoing("audio", ONE_SECOND, at=at) for _ in range(seconds)),
        Outgoing("activity_end", turn=turn, at=at),
    ]


def sent(journal: Journal, items: list[Outgoing]) -> None:
    for item in items:
        journal.record(item)


def test_a_sent_turn_is_kept_until_answered_and_the_open_one_stays() -> None:
    journal = Journal(deque())
    sent(journal, spoken_turn(1, at=0.0))
    open_turn = [Outgoing("activity_start"), Outgoing("audio", ONE_SECOND)]
    sent(journal, open_turn)
    journal.record(Outgoing("video", b"jpeg"))  # a frame is never replayed
    assert [i.kind for i in journal.items] == [
        "activity_start",
        "audio",
        "activity_end",
        "activity_start",
        "audio",
    ]
    journal.answered()
    assert journal.items == open_turn
    assert journal.take() == open_turn
    assert journal.items == []


def test_streamed_audio_without_a_turn_end_keeps_only_its_last_seconds() -> None:
    journal = Journal(deque())
    chunks = [Outgoing("audio", ONE_SECOND) for _ in range(int(GAP_AUDIO_LIMIT_S) + 5)]
    sent(journal, chunks)
    assert journal.items == chunks[-int(GAP_AUDIO_LIMIT_S) :]


def test_the_journal_keeps_at_most_journal_items_messages() -> None:
    journal = Journal(deque())
    texts = [Outgoing("text_in_activity", str(n)) for n in range(JOURNAL_ITEMS + 10)]
    sent(journal, texts)
    assert journal.items == texts[-JOURNAL_ITEMS:]


def test_answered_after_trimming_drops_only_whole_turns() -> None:
    journal = Journal(deque())
    sent(journal, spoken_turn(1, at=0.0, seconds=2))
    tail = [Outgoing("audio", ONE_SECOND) for _ in range(int(GAP_AUDIO_LIMIT_S) - 1)]
    sent(journal, tail)  # the first turn's audio is the oldest: it goes first
    journal.answered()
    assert journal.items == tail


def test_stale_turns_are_reported_lost_as_unanswered_or_never_sent() -> None:
    outbox: deque[Outgoing] = deque()
    journal = Journal(outbox)
    sent(journal, [*spoken_turn(1, at=0.0), *spoken_turn(2, at=25.0)])
    tool = Outgoing("tool_response", ("call-1", "get_time", {}, None), at=0.0)
    outbox.extend([tool, *spoken_turn(3, at=5.0), *spoken_turn(4, at=28.0)])
    lost = journal.expire_stale_turns(now=30.0, window_s=10.0)
    assert lost == [
        TurnLost("no_answer", "no answer within 30 s", 1),
        TurnLost("offline", "not sent within 25 s", 3),
    ]
    assert [i.turn for i in journal.items if i.ends_turn] == [2]
    assert [i.turn for i in outbox if i.ends_turn] == [4]
    assert outbox[0] is tool  # not a turn: kept whatever its age
    assert journal.outbox is outbox  # trimmed in place: the session holds the same deque


def test_a_turn_still_open_is_never_expired() -> None:
    outbox: deque[Outgoing] = deque([Outgoing("activity_start", at=0.0)])
    journal = Journal(outbox)
    assert journal.expire_stale_turns(now=100.0, window_s=10.0) == []
    assert len(outbox) == 1


def test_a_fresh_turn_waiting_is_one_that_ended_within_the_window() -> None:
    outbox: deque[Outgoing] = deque()
    journal = Journal(outbox)
    outbox.extend(spoken_turn(1, at=0.0))
    assert journal.fresh_turn_waiting(now=5.0, window_s=10.0)
    assert not journal.fresh_turn_waiting(now=11.0, window_s=10.0)
    outbox.clear()
    sent(journal, spoken_turn(2, at=10.0))  # sent, not answered: replayed, so waiting too
    assert journal.fresh_turn_waiting(now=11.0, window_s=10.0)


def test_a_fresh_session_drops_the_old_sessions_tool_responses() -> None:
    outbox: deque[Outgoing] = deque()
    journal = Journal(outbox)
    old = Outgoing("tool_response", ("call-1", "get_time", {}, None))
    newer = Outgoing("tool_response", ("call-2", "get_time", {}, None))
    turn = spoken_turn(1, at=0.0)
    sent(journal, [old, *turn])
    outbox.extend([newer, Outgoing("text", "hi")])
    replay, dropped = journal.drop_tool_responses(journal.take())
    assert replay == turn
    assert dropped == [old, newer]
    assert [i.kind for i in outbox] == ["text"]
    assert journal.outbox is outbox


def test_the_outbox_keeps_its_last_seconds_of_audio_while_disconnected() -> None:
    outbox: deque[Outgoing] = deque([Outgoing("activity_start")])
    journal = Journal(outbox)
    outbox.extend(Outgoing("audio", ONE_SECOND) for _ in range(int(GAP_AUDIO_LIMIT_S) + 3))
    assert journal.bound_outbox_audio() == 3.0
    assert outbox[0].kind == "activity_start"
    assert sum(i.audio_seconds for i in outbox) == GAP_AUDIO_LIMIT_S
    assert journal.bound_outbox_audio() == 0.0


def test_unsent_turn_ends_and_clear() -> None:
    outbox: deque[Outgoing] = deque()
    journal = Journal(outbox)
    outbox.extend([*spoken_turn(1, at=0.0), Outgoing("content", ([("user", "hi")], True), 2)])
    sent(journal, spoken_turn(3, at=0.0))
    assert [i.turn for i in journal.unsent_turn_ends()] == [1, 2]
    journal.clear()
    assert journal.items == [] and journal.take() == []
