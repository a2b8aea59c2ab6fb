"""Prometheus metrics (off unless [service] metrics_port): turn latency, reconnects by cause,
tokens by modality and per day, underruns, tool calls, state, timers set."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge_agent.agent import Agent
from edge_agent.conversation import DailyBudget
from edge_agent.events import (
    AgentError,
    AgentEvent,
    ConnectionLost,
    ServerMessageDropped,
    State,
    StateChanged,
    TokensUsed,
    ToolFinished,
    TurnSummary,
)

if TYPE_CHECKING:
    from edge_agent.timers.app import Timers

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self, agent: Agent, budget: DailyBudget, timers: Timers | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.server: Any = None
        registry = self.registry
        self.first_audio = Histogram(
            "edge_agent_turn_first_audio_seconds",
            "End of the user's speech to the first answer sample on the speaker",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.reply_received = Histogram(
            "edge_agent_turn_reply_received_seconds",
            "End of the user's speech to the first answer audio received",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.turns = Counter("edge_agent_turns", "User turns", ["interrupted"], registry=registry)
        self.reconnects = Counter(
            "edge_agent_reconnects", "Connection losses by cause", ["cause"], registry=registry
        )
        self.tokens = Counter(
            "edge_agent_tokens", "Tokens by modality", ["modality"], registry=registry
        )
        self.tool_calls = Counter(
            "edge_agent_tool_calls",
            "Tool calls by tool and outcome",
            ["tool", "outcome"],
            registry=registry,
        )
        self.turns_lost = Counter(
            "edge_agent_turns_lost",
            "User turns neither answered nor sent, by cause",
            ["cause"],
            registry=registry,
        )
        self.bad_messages = Counter(
            "edge_agent_bad_server_messages",
            "Server messages dropped as malformed",
            registry=registry,
        )
        self.state = Enum(
            "edge_agent_state",
            "The agent's state",
            states=[s.value for s in State],
            registry=registry,
        )
        Gauge(
            "edge_agent_tokens_today", "Tokens spent today (local time)", registry=registry
        ).set_function(lambda: budget.spent)
        Gauge(
            "edge_agent_speaker_underruns", "Playback underruns since start", registry=registry
        ).set_function(lambda: agent.speaker.underruns)
        Gauge(
            "edge_agent_timers_active",
            "Timers, alarms and reminders set, ringing included",
            registry=registry,
        ).set_function(lambda: active_timers(timers))
        agent.listeners.append(self.observe)

    def observe(self, event: AgentEvent) -> None:
        if isinstance(event, StateChanged):
            self.state.state(event.state)
        elif isinstance(event, TurnSummary):
            self.turns.labels(interrupted=str(event.answer_cut).lower()).inc()
            first_audio_ms = event.summary["first_audio_ms"]
            if first_audio_ms is not None:
                self.first_audio.observe(first_audio_ms / 1000)
            if event.reply_latency_s is not None:
                self.reply_received.observe(event.reply_latency_s)
        elif isinstance(event, ConnectionLost):
            self.reconnects.labels(cause=event.cause.split(":")[0][:40]).inc()
        elif isinstance(event, ServerMessageDropped):
            self.bad_messages.inc()
        elif isinstance(event, TokensUsed):
            for modality, count in event.by_modality.items():
                self.tokens.labels(modality=modality.lower()).inc(count)
        elif isinstance(event, AgentError) and event.turn is not None:
            self.turns_lost.labels(cause=event.cause).inc()
        elif isinstance(event, ToolFinished):
            self.tool_calls.labels(tool=event.name, outcome="ok" if event.ok else "error").inc()

    def serve(self, port: int, address: str) -> Any:
        from prometheus_client import start_http_server

        self.server, _ = start_http_server(port, address, registry=self.registry)
        host = f"[{address}]" if ":" in address else address
        log.info("metrics on http://%s:%d/metrics", host, port)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def active_timers(timers: Timers | None) -> int:
    """Counted from the Timers at each scrape (the exporter's thread; reading two lists the
    event loop changes is safe under the GIL), so entries restored at start, which no
    TimerChanged announces, count too. A repeating alarm that rings is both ringing and set
    again for its next day: it counts once."""
    if timers is None:
        return 0
    ringing = {entry.id for entry in list(timers.ringing)}
    return len(ringing) + sum(entry.id not in ringing for entry in timers.schedule.entries())


def start_metrics(
    agent: Agent,
    budget: DailyBudget,
    port: int,
    address: str = "127.0.0.1",
    timers: Timers | None = None,
) -> Metrics | None:
    if not port:
        return None
    try:
        metrics = Metrics(agent, budget, timers)
        metrics.serve(port, address)
    except ImportError:
        log.warning(
            "metrics_port is set but prometheus-client is not installed "
            "(pip install 'edge-agent[metrics]')"
        )
        return None
    except OSError as exc:
        log.warning("metrics unavailable on %s port %d: %s", address, port, exc)
        return None
    return metrics
