"""While no conversation is open, ask the service now and then whether it can be reached, so the
lights, STATUS and metrics show an outage before anyone speaks. One small HTTPS GET each time."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge_agent.agent import Agent
from edge_agent.config import Config
from edge_agent.conversation import Conversation
from edge_agent.credentials import KeyProvider
from edge_agent.errors import UserError
from edge_agent.events import KeyRefused, Offline, Online
from edge_agent.live.probe import ProbeResult
from edge_agent.startup import ask_service

log = logging.getLogger(__name__)

EVERY_S = 300.0  # at most this often while the service answers
MAX_EVERY_S = 1800.0  # backing off while it does not


class Reachability:
    def __init__(
        self,
        config: Config,
        keys: KeyProvider,
        agent: Agent,
        conversation: Conversation,
        every_s: float = EVERY_S,
    ) -> None:
        self.config = config
        self.keys = keys
        self.agent = agent
        self.conversation = conversation
        self.every_s = every_s
        self.unreachable = False
        self._task: asyncio.Task[None] | None = None
        conversation.listeners.append(self._on_conversation)

    def start(self, first: ProbeResult) -> None:
        """`first` is the start-up check's answer (already logged)."""
        self.unreachable = first.verdict == "unreachable"
        if self.unreachable:
            self.agent.on_live_event(Offline(first.detail, self.every_s))
        self._task = asyncio.create_task(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _on_conversation(self, is_open: bool, _reason: str) -> None:
        if is_open:
            self.unreachable = False  # the session reports outages while it runs

    async def _run(self) -> None:
        delay = self.every_s
        while True:
            await asyncio.sleep(delay)
            if self.conversation.is_open:
                continue
            self._judge(await self._probe())
            delay = min(delay * 2, MAX_EVERY_S) if self.unreachable else self.every_s

    async def _probe(self) -> ProbeResult:
        live = self.config.live
        key = ""
        if not live.token_command:  # a token only works on the Live API: any answer will do
            with contextlib.suppress(UserError):
                key = (await asyncio.to_thread(self.keys)).value
        return await ask_service(self.config, key)

    def _judge(self, result: ProbeResult) -> None:
        if result.verdict == "unreachable":
            if not self.unreachable:
                self.unreachable = True
                log.warning("offline: %s", result.detail)
                self.agent.on_live_event(Offline(result.detail, self.every_s))
            return
        if result.rejected and not self.config.live.token_command:
            self.agent.on_live_event(KeyRefused(result.detail))
            return
        if self.unreachable:
            self.unreachable = False
            log.info("the service is reachable again")
        self.agent.on_live_event(Online())
