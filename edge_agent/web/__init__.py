"""The local page and its event stream (docs/web.md). Imported only when [web] enabled = true;
aiohttp's server is imported once READY has been sent, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import TYPE_CHECKING

from edge_agent.config import WebConfig
from edge_agent.errors import UserError
from edge_agent.web.auth import required_token

if TYPE_CHECKING:
    from edge_agent.agent import Agent
    from edge_agent.audio.volume import Volume
    from edge_agent.timers.app import Timers
    from edge_agent.web.server import WebFace

log = logging.getLogger(__name__)


def check(config: WebConfig) -> None:
    """Before any device opens: off loopback without its token is exit 2."""
    required_token(config)


class Page:
    """Starts the server in the background; a page that cannot start is one log line."""

    def __init__(
        self, config: WebConfig, agent: Agent, volume: Volume, timers: Timers | None = None
    ) -> None:
        self.config = config
        self.task = asyncio.create_task(self._start(agent, volume, timers))

    async def _start(self, agent: Agent, volume: Volume, timers: Timers | None) -> WebFace | None:
        try:
            token = required_token(self.config)
            await asyncio.to_thread(importlib.import_module, "edge_agent.web.server")
            from edge_agent.web.server import start_web

            return await start_web(self.config, token, agent, volume, timers)
        except (OSError, UserError) as exc:
            log.error("web page not started: %s", exc)
        except Exception as exc:  # whatever it is, the agent runs on without its page
            log.error("web page not started: %r", exc)
        return None

    async def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            face = await self.task
            if face is not None:
                await face.close()
