"""Wires the parts the daemon and simulate share: Speaker -> Agent <-> LiveSession, Conversation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.audio.chimes import chime
from edge_agent.audio.playback import Speaker
from edge_agent.config import Config
from edge_agent.conversation import Conversation, DailyBudget, SessionLink
from edge_agent.live.session import KeyProvider, LiveSession


@dataclass
class Assembly:
    agent: Agent
    session: LiveSession
    link: SessionLink
    conversation: Conversation


def assemble(
    config: Config,
    speaker: Speaker,
    clock: Callable[[], float],
    keys: KeyProvider,
    state_dir: Path | None,
) -> Assembly:
    agents: list[Agent] = []
    session = LiveSession(
        config, lambda event: agents[0].on_live_event(event), keys, state_dir=state_dir
    )
    link = SessionLink(session)

    def play_chime(name: str) -> None:
        if config.conversation.chimes:
            speaker.chime(chime(name, speaker.device_rate))

    budget = DailyBudget(config.conversation.max_tokens_per_day, state_dir, dt.date.today)
    conversation = Conversation(config, link, clock, play_chime, budget)
    agent = Agent(config, session, speaker, clock, conversation)
    agents.append(agent)
    return Assembly(agent, session, link, conversation)
