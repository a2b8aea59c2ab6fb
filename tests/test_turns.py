"""The turn ledger (edge_agent/turns.py): records, losses, the summary and the log line."""

from __future__ import annotations

import logging

import pytest

from edge_agent.events import (
    AgentError,
    AgentEvent,
    TokensUsed,
    TranscriptDelta,
    TurnLost,
    TurnSummary,
    Usage,
)
from edge_agent.turns import TRANSCRIPT_CHARS, TurnLedger


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ledger(text_replies: bool = False) -> tuple[TurnLedger, list[AgentEvent], Clock]:
    events: list[AgentEvent] = []
    clock = Clock()
    return TurnLedger(clock, events.append, text_replies), events, clock


def summaries(events: list[AgentEvent]) -> list[TurnSummary]:
    return [event for event in events if isinstance(event, TurnSummary)]


def test_latencies_count_on_the_agents_clock_and_are_never_negative(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 32: on a device the input timeline (end_s) runs apart from the clock replies are
    timed on; the line said "reply received +-1623 ms"."""
    caplog.set_level(logging.INFO, "edge_agent.agent")
    turns, events, _ = ledger()
    turn = turns.start(5.0, cut=None)
    turns.end(turn, 6.0, end_clock_s=4.0)  # the input timeline runs 2 s ahead of the clock
    turn.reply_received_s, turn.first_sample_s = 4.4, 4.6
    turns.answered(turn)
    turns.maybe_log(turn)
    [told] = summaries(events)
    assert told.reply_latency_s == pytest.approx(0.4)
    assert told.summary["first_audio_ms"] == 600.0 and told.summary["end_s"] == 6.0
    late = turns.start(7.0, cut=None)
    turns.end(late, 8.0, end_clock_s=8.0)
    late.reply_received_s, late.first_sample_s = 7.5, 8.2  # a reply to something said before
    turns.answered(late)
    turns.maybe_log(late)
    assert summaries(events)[1].reply_latency_s is None
    [line] = [r for r in caplog.records if r.message.startswith("turn 2:")]
    assert "reply received -, first sample +200 ms" in line.message


def test_a_turn_is_told_once_when_answered_and_played(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "edge_agent.agent")
    turns, events, _ = ledger()
    turn = turns.start(1.0, cut=None)
    turns.user_said(turn, "what time is it")
    turns.end(turn, 2.0)
    turn.reply_received_s = 2.3
    turns.agent_said(turn, "noon")
    turns.answered(turn)
    assert summaries(events) == []  # its first sample has not played yet
    turn.first_sample_s = 2.5
    turns.maybe_log(turn)
    turns.maybe_log(turn)
    [told] = summaries(events)
    assert told.turn == 1 and told.reply_latency_s == pytest.approx(0.3)
    assert not told.answer_cut
    assert told.summary == {
        "start_s": 1.0,
        "end_s": 2.0,
        "first_audio_ms": 500.0,
        "interrupted": False,
        "input_transcript": "what time is it",
        "output_transcript": "noon",
        "parts": [{"start_s": 1.0, "end_s": 2.0}],
    }
    assert [type(e) for e in events[:2]] == [TranscriptDelta, TranscriptDelta]
    [line] = [r for r in caplog.records if r.message.startswith("turn 1:")]
    assert 'user "what time is it" -> agent "noon"' in line.message
    assert "reply received +300 ms, first sample +500 ms, interrupted no" in line.message
    assert line.parts == [{"start_s": 1.0, "end_s": 2.0}]  # type: ignore[attr-defined]
    assert not turns.unanswered and list(turns.records) == [turn]


def test_text_replies_are_told_without_a_played_sample() -> None:
    turns, events, _ = ledger(text_replies=True)
    turn = turns.start(0.0, cut=None)
    turns.end(turn, 1.0)
    turns.answered(turn)
    assert summaries(events)[0].summary["first_audio_ms"] is None


def test_a_resumed_turn_has_parts_and_says_its_earlier_answer_was_cut() -> None:
    turns, events, _ = ledger()
    turn = turns.start(1.0, cut=None)
    turns.end(turn, 2.0)
    turn.reply_received_s = 2.2
    turns.resume(turn, 2.6, answer_cut=True)
    assert turn.reply_received_s is None and turn not in turns.unanswered
    turns.end(turn, 3.5)
    turn.interrupted = True  # the whole turn's answer is cut too: told when the next starts
    nxt = turns.start(4.0, cut=turn)
    assert nxt.number == 2
    [told] = summaries(events)
    assert told.summary["parts"] == [
        {"start_s": 1.0, "end_s": 2.0},
        {"start_s": 2.6, "end_s": 3.5},
    ]
    assert told.summary["interrupted"] and told.answer_cut
    assert told.summary["start_s"] == 1.0 and told.summary["end_s"] == 3.5


def test_an_earlier_part_cut_is_interrupted_in_the_summary_not_in_answer_cut() -> None:
    turns, events, _ = ledger(text_replies=True)
    turn = turns.start(1.0, cut=None)
    turns.end(turn, 2.0)
    turns.resume(turn, 2.5, answer_cut=True)
    turns.end(turn, 3.0)
    turns.answered(turn)
    [told] = summaries(events)
    assert told.summary["interrupted"] and not told.answer_cut


def test_a_conversation_closed_on_a_turn_keeps_what_was_sent() -> None:
    turns, _, _ = ledger()
    only = turns.start(1.0, cut=None)
    turns.withdraw(only)
    assert not turns.records
    turn = turns.start(2.0, cut=None)
    turns.end(turn, 3.0)
    turns.resume(turn, 3.4, answer_cut=False)
    turns.withdraw(turn)
    assert list(turns.records) == [turn] and len(turn.parts) == 1 and turn.end_s == 3.0


def test_turns_without_an_answer_of_their_own_are_lost() -> None:
    turns, events, _ = ledger(text_replies=True)
    first = turns.start(0.0, None)
    turns.end(first, 1.0)
    second = turns.start(1.5, None)
    turns.end(second, 2.0)
    turns.answered(second)
    errors = [e for e in events if isinstance(e, AgentError)]
    assert errors == [AgentError("merged", errors[0].message, 1)]
    assert "turn 1: no answer of its own" in turns.errors[0]


def test_a_loss_names_its_turn_or_the_oldest() -> None:
    turns, events, _ = ledger()
    a = turns.start(0.0, None)
    turns.end(a, 1.0)
    b = turns.start(2.0, None)
    turns.end(b, 3.0)
    turns.lost(TurnLost("no_answer", "no reply", turn=2))
    turns.lost(TurnLost("offline", "gone"))  # unnamed: the oldest unanswered
    turns.lost(TurnLost("offline", "gone"))  # none left: "a turn"
    assert [e.turn for e in events if isinstance(e, AgentError)] == [2, 1, 0]
    assert turns.errors[1] == "turn 1 lost (offline): gone"
    assert turns.errors[2] == "a turn lost (offline): gone"
    assert not turns.unanswered


def test_tokens_are_counted_per_turn_and_in_all() -> None:
    turns, events, _ = ledger()
    turn = turns.start(0.0, None)
    turns.add_usage(Usage(10, 5, 15, {"AUDIO": 15}), turn)
    turns.add_usage(Usage(1, 1, 2), None)
    assert (turns.tokens.prompt, turns.tokens.response, turns.tokens.total) == (11, 6, 17)
    assert (turn.prompt_tokens, turn.response_tokens) == (10, 5)
    assert events == [TokensUsed(10, 5, 15, {"AUDIO": 15}), TokensUsed(1, 1, 2, {})]


def test_transcripts_are_capped() -> None:
    turns, _, _ = ledger()
    turn = turns.start(0.0, None)
    turns.user_said(turn, "x" * (TRANSCRIPT_CHARS + 10))
    turns.agent_said(None, "nobody's")  # no turn: nothing recorded, nothing told
    assert len(turn.input_transcript) == TRANSCRIPT_CHARS
