"""The turn ledger: every question asked, what became of its answer, and one log line per turn.

The Agent decides when a turn starts, ends, resumes and is answered; the ledger keeps the
records (simulate --json's turns), the tokens, the turns that got no answer of their own and
other faults (AgentError), and tells each turn once, in the log and as a TurnSummary, when its
outcome is known.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.events import (
    AgentError,
    AgentEvent,
    CodeExecution,
    Grounding,
    TokensUsed,
    TranscriptDelta,
    TurnLost,
    TurnSummary,
    Usage,
)

log = logging.getLogger("edge_agent.agent")  # the turn line has always been the Agent's

TURNS_KEPT = 1000  # turn records kept for summaries; older ones are dropped
TRANSCRIPT_CHARS = 4000  # per turn and side


@dataclass
class TurnPart:
    start_s: float
    end_s: float | None = None


@dataclass
class TurnRecord:
    """One question: one part, or more when the person carried on after a pause (or past
    max_turn_s) before the answer was done."""

    number: int
    start_s: float
    end_s: float | None = None
    reply_received_s: float | None = None
    first_sample_s: float | None = None
    interrupted: bool = False
    input_transcript: str = ""
    output_transcript: str = ""
    prompt_tokens: int = 0
    response_tokens: int = 0
    sources: list[str] = field(default_factory=list)  # grounding: searches, pages, URLs read
    code_results: list[str] = field(default_factory=list)  # service-side code execution output
    complete: bool = False
    logged: bool = False
    parts: list[TurnPart] = field(default_factory=list)
    earlier_answer_cut: bool = False  # an answer to its first part(s) was cut when it resumed
    # the end of speech on the Agent's clock (replies and samples are timed on it; the input
    # timeline of end_s runs apart from it on a device)
    end_clock_s: float | None = None

    @property
    def first_audio_ms(self) -> float | None:
        return _after_end_ms(self.first_sample_s, self.end_clock_s)

    @property
    def reply_received_ms(self) -> float | None:
        return _after_end_ms(self.reply_received_s, self.end_clock_s)

    def summary(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3) if self.end_s is not None else None,
            "first_audio_ms": self.first_audio_ms,
            "interrupted": self.interrupted or self.earlier_answer_cut,
            "input_transcript": self.input_transcript.strip(),
            "output_transcript": self.output_transcript.strip(),
            "parts": [
                {"start_s": round(part.start_s, 3), "end_s": _rounded(part.end_s)}
                for part in self.parts
            ],
        }


@dataclass
class Tokens:
    prompt: int = 0
    response: int = 0
    total: int = 0


class TurnLedger:
    def __init__(
        self,
        clock: Callable[[], float],
        emit: Callable[[AgentEvent], None],
        text_replies: bool,
        playing: Callable[[], bool] = lambda: False,
    ) -> None:
        """`playing`: the answer's audio is still queued or leaving the speaker (a barge-in
        could still cut it): the turn's line waits until it is not."""
        self.clock = clock
        self.emit = emit
        self.text_replies = text_replies
        self.playing = playing
        self.records: deque[TurnRecord] = deque(maxlen=TURNS_KEPT)
        self.count = 0
        self.unanswered: deque[TurnRecord] = deque(maxlen=TURNS_KEPT)  # ended, not answered
        self.tokens = Tokens()
        self.errors: list[str] = []
        self.reconnects = 0
        self.session_started_s: float | None = None

    def start(self, start_s: float, cut: TurnRecord | None) -> TurnRecord:
        """A new turn; `cut`: the turn whose answer this one may have cut."""
        if cut is not None and not cut.logged and (cut.interrupted or cut.complete):
            cut.complete = True  # its answer was cut for this turn, or played out before it
            self.maybe_log(cut, settled=True)
        self.count += 1
        turn = TurnRecord(self.count, start_s=start_s)
        turn.parts.append(TurnPart(start_s))
        self.records.append(turn)
        return turn

    def resumable(self, turn: TurnRecord) -> bool:
        """The last turn may take more speech while its answer is not done (nor logged)."""
        last = self.records[-1] if self.records else None
        return turn is last and not turn.logged and turn.parts[-1].end_s is not None

    def resume(self, turn: TurnRecord, start_s: float, answer_cut: bool) -> None:
        """The person carried on (after a pause, or past max_turn_s): the same turn takes the
        new part, and the answer to come is the one to the whole."""
        turn.earlier_answer_cut = turn.earlier_answer_cut or answer_cut
        turn.interrupted = False
        turn.reply_received_s = turn.first_sample_s = None
        turn.complete = False
        turn.parts.append(TurnPart(start_s))
        if turn in self.unanswered:
            self.unanswered.remove(turn)

    def end(self, turn: TurnRecord, end_s: float, end_clock_s: float | None = None) -> None:
        """`end_clock_s`: the end on the Agent's clock, where it runs apart from the input's."""
        turn.end_s = turn.parts[-1].end_s = end_s
        turn.end_clock_s = end_s if end_clock_s is None else end_clock_s
        self.unanswered.append(turn)

    def to_be_replayed(self) -> None:
        """The connection was lost: the turns not yet answered are sent again, and what the
        lost attempt transcribed (the words heard, the answer begun) comes again with it."""
        for turn in self.unanswered:
            turn.input_transcript = turn.output_transcript = ""

    def withdraw(self, turn: TurnRecord) -> None:
        """The conversation closed on an open turn: what was sent of it is the turn."""
        if len(turn.parts) > 1:
            turn.parts.pop()
            turn.end_s = turn.parts[-1].end_s
        else:
            self.records.pop()

    def answered(self, turn: TurnRecord) -> None:
        """Its answer is complete; the turns before it that got none of their own are lost."""
        turn.complete = True
        while self.unanswered and (earlier := self.unanswered.popleft()) is not turn:
            if earlier.reply_received_s is None and not earlier.interrupted:
                message = f"turn {earlier.number}: no answer of its own (merged into the next)"
                self.report("merged", message, earlier.number)
        self.maybe_log(turn)

    def lost(self, event: TurnLost) -> None:
        turn = next((t for t in self.unanswered if t.number == event.turn), None)
        if turn is None and not event.turn and self.unanswered:
            turn = self.unanswered[0]  # a loss the session could not name: the oldest
        if turn is not None:
            self.unanswered.remove(turn)
        number = turn.number if turn is not None else event.turn
        name = f"turn {number}" if number else "a turn"
        self.report(event.cause, f"{name} lost ({event.cause}): {event.detail}", number)

    # ---- what the turn got: transcripts, sources, code results, tokens --------------------

    def user_said(self, turn: TurnRecord | None, text: str) -> None:
        if turn is not None:
            turn.input_transcript = capped(turn.input_transcript + text)
            self.emit(TranscriptDelta("user", text, turn.number))

    def agent_said(self, turn: TurnRecord | None, text: str) -> None:
        """A piece of the answer's transcript or text: pieces carry their own spacing."""
        if turn is not None:
            turn.output_transcript = capped(turn.output_transcript + text)
            self.emit(TranscriptDelta("agent", text, turn.number))

    def grounded(self, event: Grounding, turn: TurnRecord | None) -> None:
        queries = event.metadata.get("web_search_queries") or []
        if queries:
            log.info("searched: %s", "; ".join(queries))
        sources = event.sources
        if sources:
            log.info("sources: %s", ", ".join(sources))
            if turn is not None:
                turn.sources += sources

    def code_ran(self, event: CodeExecution, turn: TurnRecord | None) -> None:
        if event.code:
            log.info("the model runs code: %s", event.code.strip())
            return
        log.info("code result (%s): %s", event.outcome or "-", event.output.strip())
        if turn is not None:
            turn.code_results.append(event.output.strip())

    def add_usage(self, event: Usage, turn: TurnRecord | None) -> None:
        self.tokens.prompt += event.prompt_tokens
        self.tokens.response += event.response_tokens
        self.tokens.total += event.total_tokens
        if turn is not None:
            turn.prompt_tokens += event.prompt_tokens
            turn.response_tokens += event.response_tokens
        self.emit(
            TokensUsed(
                event.prompt_tokens, event.response_tokens, event.total_tokens, event.by_modality
            )
        )

    def connected(self, resumed: bool, reconnects: int) -> None:
        self.reconnects = reconnects
        if self.session_started_s is None or not resumed:
            self.session_started_s = self.clock()

    def report(self, cause: str, message: str, lost_turn: int | None = None) -> None:
        """A turn that cannot be answered (lost_turn: its number), or another fault."""
        log.warning("%s", message)
        if len(self.errors) < TURNS_KEPT:
            self.errors.append(message)
        self.emit(AgentError(cause, message, lost_turn))

    def maybe_log(self, turn: TurnRecord, settled: bool = False) -> None:
        """One line per turn, once its outcome is known: its answer complete, its first sample
        played and the rest played out (a barge-in until then cuts it: a line written earlier
        said 'interrupted no' where the JSON says it was), or the answer cut. `settled`: the
        next turn has started, so nothing more can happen to this one."""
        played = turn.first_sample_s is not None or self.text_replies or turn.interrupted
        if not turn.complete or not played or turn.logged:
            return
        if not (settled or turn.interrupted or self.text_replies) and self.playing():
            return  # asked again (the Agent polls) once the speaker is done
        turn.logged = True
        self._log(turn)
        received = turn.reply_received_ms
        latency = received / 1000 if received is not None else None
        self.emit(TurnSummary(turn.number, turn.summary(), latency, turn.interrupted))

    def _log(self, turn: TurnRecord) -> None:
        number = turn.number
        received_ms = turn.reply_received_ms
        received = f"+{received_ms:.0f} ms" if received_ms is not None else "-"
        first = f"+{turn.first_audio_ms:.0f} ms" if turn.first_audio_ms is not None else "-"
        age = self.clock() - (self.session_started_s or self.clock())
        user, agent = (
            " ".join(text.split())[:120] for text in (turn.input_transcript, turn.output_transcript)
        )
        used = "".join(
            f", {name}: {'; '.join(values)}"
            for name, values in (("sources", turn.sources), ("code results", turn.code_results))
            if values
        )
        spans = ", ".join(f"{p.start_s:.2f}-{p.end_s or 0.0:.2f}" for p in turn.parts)
        speech = f"{turn.start_s:.2f}-{turn.end_s or 0.0:.2f} s"
        if len(turn.parts) > 1:
            speech += f" in {len(turn.parts)} parts ({spans})"
        log.info(
            'turn %d: user "%s" -> agent "%s"; speech %s, reply received %s, '
            "first sample %s, interrupted %s, tokens %d/%d, session age %.0f s, reconnects %d%s",
            number,
            user,
            agent,
            speech,
            received,
            first,
            "yes" if turn.interrupted or turn.earlier_answer_cut else "no",
            turn.prompt_tokens,
            turn.response_tokens,
            age,
            self.reconnects,
            used,
            extra={
                "turn": number,
                "first_audio_ms": turn.first_audio_ms,
                "interrupted": turn.interrupted or turn.earlier_answer_cut,
                "parts": turn.summary()["parts"],
                "user": user,
                "agent": agent,
                "sources": turn.sources,
                "code_results": turn.code_results,
            },
        )


def capped(text: str) -> str:
    return text if len(text) <= TRANSCRIPT_CHARS else text[:TRANSCRIPT_CHARS]


def _after_end_ms(at_s: float | None, end_s: float | None) -> float | None:
    """How long after the end of speech, in ms; None when it cannot be told (never negative:
    a reply to an earlier part, or clocks that cannot be compared)."""
    if at_s is None or end_s is None or at_s < end_s:
        return None
    return round((at_s - end_s) * 1000, 1)


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None
