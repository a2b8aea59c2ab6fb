"""The project's own events: what LiveSession tells the rest of the agent (no SDK types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class ModelAudio:
    pcm: bytes  # 24 kHz mono int16


@dataclass(frozen=True)
class ModelText:
    text: str


@dataclass(frozen=True)
class ModelThought:
    text: str


@dataclass(frozen=True)
class InputTranscript:
    text: str
    finished: bool = False


@dataclass(frozen=True)
class OutputTranscript:
    text: str


@dataclass(frozen=True)
class Interrupted:
    pass


@dataclass(frozen=True)
class GenerationComplete:
    pass


@dataclass(frozen=True)
class TurnComplete:
    reason: str = ""


@dataclass(frozen=True)
class FunctionCall:
    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True)
class ToolCallCancellation:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    response_tokens: int
    total_tokens: int
    by_modality: dict[str, int] = field(default_factory=dict)  # prompt + response per modality


@dataclass(frozen=True)
class Grounding:
    metadata: dict[str, Any]  # groundingMetadata or urlContextMetadata, snake_case keys

    @property
    def sources(self) -> list[str]:
        """Where the answer came from: the web pages it cites and the URLs it read."""
        found = []
        for chunk in self.metadata.get("grounding_chunks") or []:
            web = chunk.get("web") or chunk.get("retrieved_context") or {}
            if web.get("uri"):
                found.append(str(web.get("title") or web["uri"]) + f" <{web['uri']}>")
        for url in self.metadata.get("url_metadata") or []:
            if url.get("retrieved_url"):
                found.append(str(url["retrieved_url"]))
        return found


@dataclass(frozen=True)
class CodeExecution:
    """Code the model ran on the service side (codeExecution tool), or its result."""

    code: str = ""
    output: str = ""
    outcome: str = ""  # with a result: OUTCOME_OK, OUTCOME_FAILED, ...


@dataclass(frozen=True)
class WaitingForInput:
    """The model is not answering: it waits for more input from the user."""


@dataclass(frozen=True)
class GoAway:
    time_left_s: float


@dataclass(frozen=True)
class ResumptionUpdate:
    handle: str
    resumable: bool


@dataclass(frozen=True)
class Connected:
    resumed: bool
    reconnects: int
    gap_s: float  # time without a connection before this one (0 for the first)


@dataclass(frozen=True)
class Disconnected:
    cause: str


@dataclass(frozen=True)
class Offline:
    cause: str
    retry_in_s: float


@dataclass(frozen=True)
class Online:
    """The service is reachable again (a connection is up, or the idle probe got an answer)."""

    attempts: int = 0  # failed attempts during the outage that ended


@dataclass(frozen=True)
class KeyRefused:
    """The service refused the key or the model after start: the user must act."""

    detail: str


@dataclass(frozen=True)
class TurnLost:
    """A user turn that was not (and will not be) sent or answered."""

    cause: str  # offline, no_answer, audio_dropped
    detail: str
    turn: int = 0  # the agent's number for the turn, when known


@dataclass(frozen=True)
class BadServerMessage:
    reason: str


@dataclass(frozen=True)
class Reseeded:
    turns: int  # transcript lines replayed into a fresh session


@dataclass(frozen=True)
class ToolResponseLost:
    call_id: str
    name: str


LiveEvent = (
    ModelAudio
    | ModelText
    | ModelThought
    | InputTranscript
    | OutputTranscript
    | Interrupted
    | GenerationComplete
    | TurnComplete
    | ToolCall
    | ToolCallCancellation
    | Usage
    | Grounding
    | CodeExecution
    | WaitingForInput
    | GoAway
    | ResumptionUpdate
    | Connected
    | Disconnected
    | Offline
    | Online
    | KeyRefused
    | TurnLost
    | BadServerMessage
    | Reseeded
    | ToolResponseLost
)


# ---- what the Agent tells the capabilities above it: its one event stream, Agent.listeners ----


class State(Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True)
class StateChanged:
    state: str  # a State's value


@dataclass(frozen=True)
class TranscriptDelta:
    role: str  # "user" or "agent"
    text: str
    turn: int  # the turn's number since start (1-based)


@dataclass(frozen=True)
class TurnSummary:
    turn: int
    summary: dict[str, Any]  # the fields of one turn in `simulate --json`
    reply_latency_s: float | None = None  # end of speech to the first answer received
    answer_cut: bool = False  # the answer to the whole turn was cut (not an earlier part's)


@dataclass(frozen=True)
class ToolStarted:
    call_id: str
    name: str
    args: dict[str, Any]  # secret values already redacted


@dataclass(frozen=True)
class ToolFinished:
    call_id: str
    name: str
    ok: bool
    result: str  # shortened, for display


@dataclass(frozen=True)
class ConnectionChanged:
    status: str  # "online", "offline", "error" (the key was refused)
    cause: str = ""


@dataclass(frozen=True)
class ConnectionLost:
    """A connection to the service ended; the session reconnects (or resumes, or goes offline)."""

    cause: str  # as the session logs it: "goAway", "closed: 1011 ...", "no answer", ...


@dataclass(frozen=True)
class ServerMessageDropped:
    reason: str  # a malformed server message, dropped


@dataclass(frozen=True)
class TokensUsed:
    """The service's count for the messages just answered."""

    prompt: int
    response: int
    total: int
    by_modality: dict[str, int] = field(default_factory=dict)  # prompt + response per modality


@dataclass(frozen=True)
class ConversationChanged:
    open: bool
    reason: str


@dataclass(frozen=True)
class MutedChanged:
    muted: bool  # the microphone, by any command: the button, the page, Home Assistant


@dataclass(frozen=True)
class AgentError:
    cause: str  # a short machine-readable word: offline, no_answer, audio_dropped, tool, key
    message: str
    turn: int | None = None  # set when a user turn was lost (0: which one is unknown)


@dataclass(frozen=True)
class TimerChanged:
    """A timer, alarm or reminder (a capability beside the Agent puts it on the stream)."""

    what: str  # set, ringing, stopped, cancelled, missed, spoken
    timer: dict[str, Any]  # kind, label, text, due, seconds_left, repeats (docs/interface.md)


AgentEvent = (
    StateChanged
    | TranscriptDelta
    | TurnSummary
    | ToolStarted
    | ToolFinished
    | ConnectionChanged
    | ConnectionLost
    | ServerMessageDropped
    | TokensUsed
    | ConversationChanged
    | MutedChanged
    | AgentError
    | TimerChanged
)
