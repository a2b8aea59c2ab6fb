"""The Agent's events as JSON messages for the page and integrators: one subscriber on
`agent.listeners`, fanned out to every connected client, plus the snapshot a new client gets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.agent import Agent
from edge_agent.audio.volume import Volume
from edge_agent.events import (
    AgentError,
    AgentEvent,
    ConnectionChanged,
    ConversationChanged,
    StateChanged,
    TimerChanged,
    ToolFinished,
    ToolStarted,
    TranscriptDelta,
    TurnSummary,
)

if TYPE_CHECKING:
    from edge_agent.timers.app import Timers

log = logging.getLogger(__name__)

HISTORY_LIMIT = 500  # turns kept for today's list
CLIENT_BACKLOG = 1000  # messages a client may fall behind before it is dropped
Message = dict[str, Any]


def message_for(event: AgentEvent) -> Message | None:
    """The wire form of each Agent event (docs/web.md)."""
    match event:
        case StateChanged(state):
            return {"type": "state", "state": state}
        case TranscriptDelta(role, text, turn):
            return {"type": "transcript", "role": role, "text": text, "turn": turn}
        case TurnSummary(turn, summary):
            return {"type": "turn", "turn": turn, **summary}
        case ToolStarted(call_id, name, args):
            return {"type": "tool_call", "id": call_id, "name": name, "args": args}
        case ToolFinished(call_id, name, ok, result):
            return {"type": "tool_result", "id": call_id, "name": name, "ok": ok, "result": result}
        case ConnectionChanged(status, cause):
            return {"type": "connection", "status": status, "cause": cause}
        case ConversationChanged(is_open, reason):
            return {"type": "conversation", "open": is_open, "reason": reason}
        case AgentError(cause, message):
            return {"type": "error", "cause": cause, "message": message}
        case TimerChanged(what, timer):  # set, ringing, stopped, cancelled, missed, spoken
            return {"type": f"timer_{what}", "timer": timer}
    return None


def join_words(text: str, delta: str) -> str:
    """Transcription arrives in pieces, with or without the spaces between them."""
    glued = not text or not delta or text[-1].isspace() or delta[0].isspace()
    if glued or delta[0] in ".,!?;:'’)":
        return text + delta
    return text + " " + delta


class Client:
    """One subscriber's queue; a client that falls too far behind is dropped, never waited on."""

    def __init__(self) -> None:
        self.pending: deque[str] = deque()
        self.ready = asyncio.Event()
        self.overflowed = False

    def push(self, text: str) -> None:
        if len(self.pending) >= CLIENT_BACKLOG:
            self.overflowed = True
        else:
            self.pending.append(text)
        self.ready.set()

    async def next_batch(self) -> list[str]:
        await self.ready.wait()
        self.ready.clear()
        batch = list(self.pending)
        self.pending.clear()
        return batch


class Hub:
    def __init__(
        self,
        agent: Agent,
        volume: Volume,
        timers: Timers | None = None,
        now: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        self.agent = agent
        self.volume = volume
        self.timers = timers
        self.now = now
        self.clients: set[Client] = set()
        self.history: list[Message] = []  # today's finished turns
        self.captions: Message = {"turn": 0, "user": "", "agent": ""}
        self.connection: Message = {"status": "none", "cause": ""}
        self.errors: deque[Message] = deque(maxlen=5)
        agent.listeners.append(self.on_event)
        volume.listeners.append(self.on_volume)

    def detach(self) -> None:
        self.agent.listeners.remove(self.on_event)
        self.volume.listeners.remove(self.on_volume)

    # ---- from the Agent (on the event loop; cheap and never raising) -------------------------

    def on_event(self, event: AgentEvent) -> None:
        try:
            message = message_for(event)
            if message is None:
                return
            self._remember(event, message)
            self.broadcast(message)
            if isinstance(event, TurnSummary):
                self.broadcast(self.tokens_message())
        except Exception as exc:  # a bug here must not reach the Agent
            log.error("web: event %s not sent: %r", type(event).__name__, exc)

    def on_volume(self, percent: int) -> None:
        self.broadcast(self.volume_message())

    def _remember(self, event: AgentEvent, message: Message) -> None:
        if isinstance(event, StateChanged):
            message["muted"] = self.agent.muted
        elif isinstance(event, TranscriptDelta):
            if event.turn != self.captions["turn"]:
                self.captions = {"turn": event.turn, "user": "", "agent": ""}
            self.captions[event.role] = join_words(self.captions[event.role], event.text)
        elif isinstance(event, TurnSummary):
            now = self.now()
            message["at"] = now.strftime("%H:%M")
            self.history = [*self._today(now), {**message, "day": now.date().isoformat()}]
            del self.history[:-HISTORY_LIMIT]
        elif isinstance(event, ConnectionChanged):
            self.connection = {"status": event.status, "cause": event.cause}
        elif isinstance(event, ConversationChanged) and not event.open:
            self.connection = {"status": "none", "cause": ""}
        elif isinstance(event, AgentError):
            self.errors.append(message)

    def _today(self, now: dt.datetime) -> list[Message]:
        day = now.date().isoformat()
        return [turn for turn in self.history if turn["day"] == day]

    # ---- to the clients ------------------------------------------------------------------

    def broadcast(self, message: Message) -> None:
        if not self.clients:
            return
        text = json.dumps(message, default=str)
        for client in self.clients:
            client.push(text)

    def subscribe(self) -> Client:
        client = Client()
        client.push(json.dumps(self.snapshot(), default=str))
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def snapshot(self) -> Message:
        agent = self.agent
        return {
            "type": "snapshot",
            "state": agent.state.value,
            "muted": agent.muted,
            "conversation": agent.conversation.listening,
            "connection": self.connection,
            "captions": self.captions,
            "history": [
                {k: v for k, v in turn.items() if k != "day"} for turn in self._today(self.now())
            ],
            "tokens_today": self.tokens_today(),
            "volume": self.volume.percent,
            "errors": list(self.errors),
            "timers": self.timers_now(),
        }

    def timers_now(self) -> list[Message]:
        """What rings, then what is set, soonest first; [] with [timers] enabled = false."""
        return self.timers.entries() if self.timers is not None else []

    def tokens_today(self) -> int:
        budget = self.agent.conversation.budget
        return budget.spent if budget.day == budget.today() else 0

    def tokens_message(self) -> Message:
        return {"type": "tokens", "today": self.tokens_today()}

    def volume_message(self) -> Message:
        return {"type": "volume", "percent": self.volume.percent}

    def muted_message(self) -> Message:
        return {"type": "muted", "muted": self.agent.muted}
