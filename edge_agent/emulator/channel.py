"""One client WebSocket as the emulator holds it: what it carries (session, setup, model), and
sending, closing, dropping, goAway and the tasks it runs."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from edge_agent.emulator.options import EmulatorOptions
from edge_agent.emulator.scenario import Scenario
from edge_agent.emulator.state import Registry, Session
from edge_agent.emulator.wire import close_reason
from edge_agent.live.models import ModelTraits

DEADLINE = "Deadline expired before operation could complete."


class Host(Protocol):
    """What a connection asks of the server that accepted it (emulator/server.py's Emulator)."""

    options: EmulatorOptions
    scenario: Scenario
    registry: Registry
    parsed_setups: list[dict[str, Any]]
    video_frames: list[bytes]

    def model_traits(self, model: str) -> ModelTraits | None: ...

    def check_credentials(
        self, request: web.Request, constrained: bool
    ) -> tuple[int, str] | None: ...

    def apply_token_constraints(
        self, request: web.Request, setup: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def send(
        self, number: int, ws: web.WebSocketResponse, message: dict[str, Any]
    ) -> None: ...

    def log_in(self, number: int, message: dict[str, Any]) -> None: ...

    def log_close(self, number: int, code: int, reason: str, by: str = "server") -> None: ...

    def log_event(self, number: int, event: str) -> None: ...


class Channel:
    def __init__(
        self, emulator: Host, ws: web.WebSocketResponse, number: int, request: web.Request
    ) -> None:
        self.emulator = emulator
        self.ws = ws
        self.number = number
        self.request = request
        self.version = request.match_info["version"]
        self.constrained = bool(request.match_info.get("constrained"))
        self.session: Session | None = None
        self.setup: dict[str, Any] = {}
        self.model: ModelTraits | None = None
        self.consumed = 0  # client messages after setup: lastConsumedClientMessageIndex
        self.silent = False
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.handler: asyncio.Task[Any] | None = None  # the HTTP handler serving this socket

    def cancel(self) -> None:
        """The emulator stops: the handler ends now (serve() then cancels what it started)."""
        if self.handler is not None:
            self.handler.cancel()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed or self.silent or self.ws.closed:
            return
        await self.emulator.send(self.number, self.ws, message)

    async def close(self, code: int, reason: str) -> None:
        already, self.closed = self.closed, True
        if not already and not self.ws.closed:
            self.emulator.log_close(self.number, code, reason)
            await self.ws.close(code=code, message=close_reason(reason).encode())

    def drop(self) -> None:
        """An abrupt network failure: no close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def go_away(self, time_left_s: float) -> None:
        scale = self.emulator.options.clock_scale
        await self.send({"goAway": {"timeLeft": f"{time_left_s:g}s"}})
        if self.emulator.options.silent_after_goaway:
            self.silent = True
            return
        await asyncio.sleep(time_left_s / scale)
        await self.close(1011, DEADLINE)
