"""The outbox and the replay journal of a LiveSession.

Sending never blocks the caller: messages wait in the session's outbox (a deque of Outgoing,
in order) until a connection takes them. What was sent since the service last showed it had the
user's turn (model output, turnComplete) stays in the Journal, and a new connection replays it
first, so no turn and no tool response is lost in a reconnect. A turn that ended too long ago
to be worth sending late is reported lost instead.

Nothing here logs or sends events: the session does, from what these return.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edge_agent.events import TurnLost

GAP_AUDIO_LIMIT_S = 30.0  # audio kept while disconnected; older audio is dropped
JOURNAL_ITEMS = 5000  # besides its audio, the journal keeps at most this many messages
TURN_ENDS = {"activity_end", "text", "audio_stream_end"}
NOT_OF_A_TURN = ("tool_response", "content", "video")  # never expired as a stale turn


@dataclass
class Outgoing:
    kind: str  # audio video text activity_start activity_end audio_stream_end content tool_response
    payload: Any = None
    turn: int = 0  # on a turn's last message: the agent's number for it (0 = not said)
    at: float = field(default_factory=time.monotonic)

    @property
    def ends_turn(self) -> bool:
        return self.kind in TURN_ENDS or (self.kind == "content" and self.payload[1])

    @property
    def audio_seconds(self) -> float:
        return len(self.payload) / 32000 if self.kind == "audio" else 0.0


class Journal:
    """What was sent and is kept until answered, beside the session's outbox, which it replays
    into and trims. The outbox is changed in place, never replaced: the session's per-frame
    path holds it too."""

    def __init__(self, outbox: deque[Outgoing]) -> None:
        self.outbox = outbox
        self.items: list[Outgoing] = []
        self._turn_end = 0  # items[:_turn_end] are whole turns: their last message was sent
        self._audio_s = 0.0

    def record(self, item: Outgoing) -> None:
        """A message went out: kept until its turn is answered (a video frame is not kept)."""
        if item.kind != "video":
            self.items.append(item)
            self._audio_s += item.audio_seconds
            if item.ends_turn:
                self._turn_end = len(self.items)
            self._bound()

    def _bound(self) -> None:
        """Streamed audio with no turn end (server VAD) keeps only its last seconds."""
        while self._audio_s > GAP_AUDIO_LIMIT_S:
            oldest = next(i for i, item in enumerate(self.items) if item.kind == "audio")
            self._audio_s -= self.items.pop(oldest).audio_seconds
            if oldest < self._turn_end:
                self._turn_end -= 1
        excess = len(self.items) - JOURNAL_ITEMS
        if excess > 0:
            self._audio_s -= sum(i.audio_seconds for i in self.items[:excess])
            del self.items[:excess]
            self._turn_end = max(0, self._turn_end - excess)

    def answered(self) -> None:
        """The service has the turns sent so far (it answered, or the user cut the answer): a
        reconnect need not replay them. Until then they are replayed, since the service drops
        an answer its connection lost."""
        del self.items[: self._turn_end]
        self._turn_end = 0
        self._audio_s = sum(item.audio_seconds for item in self.items)

    def take(self) -> list[Outgoing]:
        """Everything kept, to replay on a new connection; the journal starts empty."""
        items = self.items
        self.clear()
        return items

    def clear(self) -> None:
        self.items, self._turn_end, self._audio_s = [], 0, 0.0

    def _keep(self, kept: list[Outgoing]) -> None:
        self.items = kept
        self._turn_end = max((i + 1 for i, item in enumerate(kept) if item.ends_turn), default=0)
        self._audio_s = sum(item.audio_seconds for item in kept)

    # ---- the outbox ------------------------------------------------------------------------

    def bound_outbox_audio(self) -> float:
        """While disconnected the outbox keeps GAP_AUDIO_LIMIT_S of audio, dropping the oldest;
        returns the seconds dropped."""
        buffered = sum(item.audio_seconds for item in self.outbox)
        dropped = 0.0
        while buffered > GAP_AUDIO_LIMIT_S:
            oldest = next(i for i, item in enumerate(self.outbox) if item.kind == "audio")
            seconds = self.outbox[oldest].audio_seconds
            del self.outbox[oldest]
            buffered -= seconds
            dropped += seconds
        return dropped

    def expire_stale_turns(self, now: float, window_s: float) -> list[TurnLost]:
        """Turns that ended over window_s before `now` are not sent (again): each is reported
        lost, as unanswered if it went out once, else as never sent."""
        lost: list[TurnLost] = []
        for sent, items in ((True, self.items), (False, list(self.outbox))):
            cause, verb = ("no_answer", "no answer") if sent else ("offline", "not sent")
            kept, stale = _split_stale_turns(items, now, window_s)
            lost += [TurnLost(cause, f"{verb} within {now - e.at:.0f} s", e.turn) for e in stale]
            if len(kept) == len(items):
                continue
            if sent:
                self._keep(kept)
            else:
                self.outbox.clear()
                self.outbox.extend(kept)
        return lost

    def fresh_turn_waiting(self, now: float, window_s: float) -> bool:
        """A user turn that ended within window_s is waiting to be sent or replayed."""
        return any(
            item.ends_turn and now - item.at <= window_s
            for queue in (self.outbox, self.items)
            for item in queue
        )

    def drop_tool_responses(self, replay: list[Outgoing]) -> tuple[list[Outgoing], list[Outgoing]]:
        """A fresh session has no open calls: the tool responses in `replay` and in the outbox
        answer calls of the old session. Returns `replay` without them, and the dropped ones."""
        dropped = [i for i in [*replay, *self.outbox] if i.kind == "tool_response"]
        unsent = [i for i in self.outbox if i.kind != "tool_response"]
        self.outbox.clear()
        self.outbox.extend(unsent)
        return [i for i in replay if i.kind != "tool_response"], dropped

    def unsent_turn_ends(self) -> list[Outgoing]:
        return [item for item in self.outbox if item.ends_turn]


def _split_stale_turns(
    items: list[Outgoing], now: float, window_s: float
) -> tuple[list[Outgoing], list[Outgoing]]:
    """The items kept, and the last message of each turn that ended over window_s ago (the
    turn's other messages go with it). Messages that are no turn's are always kept."""
    kept: list[Outgoing] = []
    turn: list[Outgoing] = []
    stale: list[Outgoing] = []
    for item in items:
        if item.kind in NOT_OF_A_TURN:
            kept.append(item)
            continue
        turn.append(item)
        if item.ends_turn:
            if now - item.at > window_s:
                stale.append(item)
            else:
                kept += turn
            turn = []
    kept += turn
    return kept, stale


HISTORY_LINES = 20  # transcript lines kept to re-seed a fresh session
HISTORY_LINE_CHARS = 1000


def remember(history: deque[tuple[str, str]], role: str, text: str) -> None:
    """The transcript kept to re-seed a fresh session: a role's pieces joined into its line."""
    if history and history[-1][0] == role:
        before = history[-1][1]
        spaced = text[:1].isspace() or before[-1:].isspace()  # pieces carry their own spacing
        line = " ".join((before + text if spaced else f"{before} {text}").split())
        history[-1] = (role, line[-HISTORY_LINE_CHARS:])
    else:
        history.append((role, text.strip()[-HISTORY_LINE_CHARS:]))
