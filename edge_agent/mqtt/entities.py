"""What Home Assistant sees of the agent: one definition per entity. A definition says how the
entity is discovered, what its state is (read again after each of the Agent's events) and what a
command on it does (one of the Agent's commands, or of the Timers beside it)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.agent import Agent
from edge_agent.audio.volume import Volume
from edge_agent.config_sections import MqttConfig
from edge_agent.events import AgentEvent, ConnectionChanged, State, TimerChanged, TurnSummary

if TYPE_CHECKING:
    from edge_agent.timers.app import Timers

STATE_LIMIT = 255  # Home Assistant refuses a longer state
MAX_QUESTION = 2000  # as the page's typed questions
MAX_ANNOUNCEMENT = 1000
REMOTE_SOURCE = "home assistant"
NO_VALUE = "None"  # Home Assistant's MQTT sensor takes it as "unknown" (an empty one is refused)


class Refused(ValueError):
    """A command payload that cannot be obeyed; the reason is logged."""


@dataclass
class Sources:
    """What the entities read and command: the Agent, its volume, the Timers (None with
    [timers] enabled = false), and what the events said that they do not keep themselves."""

    agent: Agent
    volume: Volume
    reachable: bool  # the service, as the start-up check, the idle probe or a session found it
    connection: str = ""
    timers: Timers | None = None
    cause: str = ""
    question: str = ""
    answer: str = ""
    turn: int = 0
    next_due: str = NO_VALUE  # read when a timer changes, not at each publish
    next_timer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.read_timers()

    def remember(self, event: AgentEvent) -> None:
        if isinstance(event, ConnectionChanged):
            self.reachable = event.status != "offline"
            self.connection, self.cause = event.status, event.cause
        elif isinstance(event, TurnSummary):
            self.turn = event.turn
            self.question = str(event.summary.get("input_transcript", ""))
            self.answer = str(event.summary.get("output_transcript", ""))
        elif isinstance(event, TimerChanged):
            self.read_timers()

    def read_timers(self) -> None:
        """The next timer, alarm or reminder as it stands now: its due time (local, with its
        offset) and what the attributes show; seconds_left is as of this reading."""
        if self.timers is None:
            return
        schedule = self.timers.schedule
        entry = schedule.next_entry()
        described = schedule.describe(entry) if entry is not None else {}
        self.next_due = str(described.get("due") or NO_VALUE)
        self.next_timer = {
            "label": described.get("label"),
            "kind": described.get("kind"),
            "text": described.get("text"),
            "seconds_left": described.get("seconds_left"),
            "count": len(schedule.entries()),
            "ringing": len(self.timers.ringing),
        }

    def tokens_today(self) -> int:
        budget = self.agent.conversation.budget
        return budget.spent if budget.day == budget.today() else 0


Reader = Callable[[Sources], str]
Attributes = Callable[[Sources], dict[str, Any]]
Command = Callable[[Sources, str], None]


def _always(config: MqttConfig) -> bool:
    return True


def _remote(config: MqttConfig) -> bool:
    return config.remote_conversation


def _transcripts(config: MqttConfig) -> bool:
    return config.publish_transcripts


@dataclass(frozen=True)
class Entity:
    component: str  # Home Assistant's platform: sensor, binary_sensor, switch, number, ...
    key: str  # in its topics and its unique_id
    name: str
    discovery: Mapping[str, Any] = field(default_factory=dict)  # the platform's own keys
    state: Reader | None = None
    attributes: Attributes | None = None
    command: Command | None = None
    wanted: Callable[[MqttConfig], bool] = _always  # False: removed from Home Assistant
    timers: bool = False  # True: only where the Timers are ([timers] enabled = true)
    empty_is_command: bool = False  # else an empty message (a retained one deleted) is ignored


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def _mute(sources: Sources, payload: str) -> None:
    if payload not in ("ON", "OFF"):
        raise Refused('expected "ON" or "OFF"')
    sources.agent.set_muted(payload == "ON")


def _volume(sources: Sources, payload: str) -> None:
    try:
        percent = float(payload)
    except ValueError:
        raise Refused("expected a number 0..100") from None
    if not math.isfinite(percent):
        raise Refused("expected a number 0..100")
    sources.volume.set(round(percent))


def _start(sources: Sources, payload: str) -> None:
    sources.agent.wake(REMOTE_SOURCE)  # as a press: the chime and the privacy LED mark it


def _end(sources: Sources, payload: str) -> None:
    sources.agent.close_conversation(REMOTE_SOURCE)


def _ask(sources: Sources, payload: str) -> None:
    if not payload.strip() or len(payload) > MAX_QUESTION:
        raise Refused(f"expected a question of 1..{MAX_QUESTION} characters")
    if not sources.agent.send_text(payload):
        raise Refused("the daily token budget is spent")


def _announce(sources: Sources, payload: str) -> None:
    text = payload.strip()
    if not text or len(payload) > MAX_ANNOUNCEMENT:
        raise Refused(f"expected a text of 1..{MAX_ANNOUNCEMENT} characters")
    if sources.timers is None:
        raise Refused("[timers] is off")
    refused = sources.timers.announce(text, with_chime=True)
    if refused:
        raise Refused(refused)


def _cut(text: str) -> str:
    return text[:STATE_LIMIT]


ENTITIES: tuple[Entity, ...] = (
    Entity(
        "sensor",
        "state",
        "State",
        {"device_class": "enum", "options": [s.value for s in State], "icon": "mdi:account-voice"},
        state=lambda s: s.agent.state.value,
    ),
    Entity(
        "binary_sensor",
        "reachable",
        "Service reachable",
        {"device_class": "connectivity", "entity_category": "diagnostic"},
        state=lambda s: _on_off(s.reachable),
        attributes=lambda s: {"status": s.connection, "cause": s.cause},
    ),
    Entity(
        "switch",
        "mute",
        "Mute",
        {"icon": "mdi:microphone-off"},
        state=lambda s: _on_off(s.agent.muted),
        command=_mute,
    ),
    Entity(
        "number",
        "volume",
        "Volume",
        {"min": 0, "max": 100, "step": 1, "mode": "slider", "unit_of_measurement": "%"},
        state=lambda s: str(s.volume.percent),
        command=_volume,
    ),
    Entity(
        "sensor",
        "tokens_today",
        "Tokens today",
        {
            "state_class": "total_increasing",
            "unit_of_measurement": "tokens",
            "icon": "mdi:counter",
            "entity_category": "diagnostic",
        },
        state=lambda s: str(s.tokens_today()),
    ),
    Entity(
        "button",
        "start_conversation",
        "Start conversation",
        {"icon": "mdi:microphone-message"},
        command=_start,
        wanted=_remote,
    ),
    Entity(
        "button",
        "end_conversation",
        "End conversation",
        {"icon": "mdi:microphone-message-off"},
        command=_end,
        wanted=_remote,
    ),
    Entity(
        "text",
        "ask",
        "Ask",
        {"max": STATE_LIMIT, "icon": "mdi:comment-question-outline"},
        command=_ask,
        wanted=_remote,
    ),
    Entity(
        "sensor",
        "last_question",
        "Last question",
        {"icon": "mdi:account-voice"},
        state=lambda s: _cut(s.question),
        attributes=lambda s: {"text": s.question, "turn": s.turn},
        wanted=_transcripts,
    ),
    Entity(
        "sensor",
        "last_answer",
        "Last answer",
        {"icon": "mdi:robot-outline"},
        state=lambda s: _cut(s.answer),
        attributes=lambda s: {"text": s.answer, "turn": s.turn},
        wanted=_transcripts,
    ),
    Entity(
        "notify",
        "announce",
        "Announce",
        {"icon": "mdi:bullhorn-outline"},
        command=_announce,
        timers=True,
        empty_is_command=True,
    ),
    Entity(
        "sensor",
        "next_timer",
        "Next timer",
        {"device_class": "timestamp", "icon": "mdi:timer-outline"},
        state=lambda s: s.next_due,
        attributes=lambda s: s.next_timer,
        timers=True,
    ),
)
