"""Wires the parts the daemon and simulate share: Speaker -> Agent <-> LiveSession, Conversation;
the wake word (only when configured) taps the mic frames beside the Agent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.agent import Agent
from edge_agent.audio import pcm
from edge_agent.audio.chimes import chime
from edge_agent.audio.playback import Speaker
from edge_agent.audio.volume import Volume
from edge_agent.config import Config
from edge_agent.conversation import Conversation, DailyBudget, SessionLink
from edge_agent.credentials import KeyProvider
from edge_agent.live.models import traits
from edge_agent.live.session import LiveSession
from edge_agent.tools.builtins import builtin_tools
from edge_agent.tools.registry import Tool, discover, enabled_tools
from edge_agent.tools.runner import ToolContext, ToolRunner

if TYPE_CHECKING:
    from edge_agent.camera import Camera
    from edge_agent.timers.app import Timers
    from edge_agent.timers.schedule import Schedule
    from edge_agent.tools.mcp_source import McpTools


@dataclass
class Assembly:
    agent: Agent
    session: LiveSession
    link: SessionLink
    conversation: Conversation
    camera: Camera | None
    volume: Volume
    on_mic_frame: Callable[[bytes], None]  # the Agent's, with the wake word beside it if set
    mcp: McpTools | None = None  # start() after READY, close() at the end
    timers: Timers | None = None  # [timers] enabled


def assemble(
    config: Config,
    speaker: Speaker,
    clock: Callable[[], float],
    keys: KeyProvider,
    state_dir: Path | None,
    wall: Callable[[], dt.datetime] | None = None,
) -> Assembly:
    """`wall`: the local time (simulate's starts where --start-time says)."""
    agents: list[Agent] = []
    session = LiveSession(
        config, lambda event: agents[0].on_live_event(event), keys, state_dir=state_dir
    )
    link = SessionLink(session)

    def play_chime(name: str) -> None:
        if config.conversation.chimes:
            speaker.chime(chime(name, speaker.device_rate))

    budget = DailyBudget(config.conversation.max_tokens_per_day, state_dir, dt.date.today)
    conversation = Conversation(config, link, clock, play_chime, budget, state_dir)
    camera = None
    if config.camera.source != "none":  # the camera module needs numpy
        from edge_agent.camera import Camera, make_source

        source = make_source(config.camera)
        camera = Camera(config.camera, source, session.send_video, clock) if source else None
    volume = Volume(speaker, config.audio.volume)
    mcp = None
    if config.mcp.servers:
        from edge_agent.tools.mcp_source import McpTools

        mcp = McpTools(config.mcp.servers, state_dir)
    timers: Timers | None = None  # made once the Agent is; cancel_timer asks it what rings
    schedule = make_schedule(config, clock, wall, state_dir) if config.timers.enabled else None
    extra = timer_tools(schedule, lambda label: timers.stop_named(label) if timers else [])
    tools = make_tool_runner(config, conversation, session, camera, volume, mcp, extra)
    session.declarations = tools.declarations  # asked again before each connect
    agent = Agent(config, session, speaker, clock, conversation, tools, camera)
    agents.append(agent)
    on_mic_frame: Callable[[bytes], None] = agent.on_mic_frame
    if config.conversation.start == "wake_word":
        from edge_agent.wakeword import WakeWord

        on_mic_frame = WakeWord(config, agent, speaker).wrap(agent.on_mic_frame)
    if schedule is not None:
        timers = make_timers(config, agent, schedule)
        on_mic_frame = timers.wrap(on_mic_frame)
    return Assembly(agent, session, link, conversation, camera, volume, on_mic_frame, mcp, timers)


def make_schedule(
    config: Config,
    clock: Callable[[], float],
    wall: Callable[[], dt.datetime] | None,
    state_dir: Path | None,
) -> Schedule:
    from edge_agent.timers.clock import local_now
    from edge_agent.timers.schedule import STATE_FILE, Schedule

    path = state_dir / STATE_FILE if state_dir is not None else None
    return Schedule(path, monotonic=clock, now=wall or local_now)


def timer_tools(
    schedule: Schedule | None, stop_ringing: Callable[[str | None], list[str]]
) -> list[Tool]:
    """The timers' five tools, enabled by name in [tools] enabled like the built-ins; none
    with [timers] off (ToolsConfig.wanted then leaves their names out quietly)."""
    if schedule is None:
        return []
    from edge_agent.timers.tools import timer_tools

    return timer_tools(schedule, stop_ringing)


def make_timers(config: Config, agent: Agent, schedule: Schedule) -> Timers:
    from edge_agent.timers.app import Timers
    from edge_agent.timers.sound import load_ring_wav, ring_sound

    rate = agent.speaker.device_rate
    own = load_ring_wav(Path(config.timers.sound), rate) if config.timers.sound else None

    def ring_cycle(volume: float) -> bytes:
        return pcm.scale(own, volume) if own is not None else ring_sound(rate, volume)

    return Timers(config.timers, agent, schedule, ring_cycle)


def available_tools(config: Config, extra: list[Tool] | None = None) -> dict[str, Tool]:
    """What `[tools] enabled` may name: the built-ins, installed plug-ins and, with [timers]
    on, the timers' tools (`extra`; check and check --online use placeholders' names)."""
    available = discover(builtin_tools(sorted(config.tools.gpio_outputs)))
    if extra is None and config.timers.enabled:
        extra = timer_tools(make_schedule(config, lambda: 0.0, None, None), lambda label: [])
    return available | {tool.name: tool for tool in extra or []}


def make_tool_runner(
    config: Config,
    conversation: Conversation,
    session: LiveSession,
    camera: Camera | None,
    volume: Volume | None = None,
    mcp: McpTools | None = None,
    extra: list[Tool] | None = None,
) -> ToolRunner:
    outputs = dict(config.tools.gpio_outputs)
    available = available_tools(config, extra or [])
    context = ToolContext(
        end_conversation=conversation.request_end,
        capture_frame=camera.capture_one if camera is not None else None,
        send_frame=session.send_video,
        gpio_outputs=outputs,
        volume=volume,
    )
    model = traits(config.live.model)
    return ToolRunner(
        enabled_tools(config.tools.wanted(config.timers.enabled), available),
        context,
        session.send_tool_response,
        config.tools.timeout_s,
        non_blocking_supported=model is None or model.non_blocking_tools,
        sources=[mcp] if mcp is not None else (),
    )
