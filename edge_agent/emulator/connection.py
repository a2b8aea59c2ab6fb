"""One client WebSocket: setup and its checks, the message loop, the connection's lifetime.

A Connection is built in layers, one job to a module, each importing only the ones below it:
channel.py (the socket: send, close, drop, goAway), answers.py (turns and answers),
client_input.py (the client's messages), and this module (setup and serving).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import WSMsgType

from edge_agent.emulator import rules
from edge_agent.emulator.channel import DEADLINE
from edge_agent.emulator.client_input import ClientInput
from edge_agent.emulator.listener import DetectorSettings, SpeechDetector
from edge_agent.emulator.wire import WireError, parse_client_message

CONNECTION_LIFETIME_S = 600.0  # the service's connection limit, on the scaled clock
GOAWAY_NOTICE_S = 60.0  # goAway comes this long before it


class Connection(ClientInput):
    """What the server runs per socket: serve() until it closes."""

    async def serve(self) -> None:
        try:
            await self._serve()
        except WireError as exc:
            await self.close(exc.code, str(exc))
        finally:
            if not self.closed:  # the client closed (or the network did)
                self.emulator.log_close(self.number, self.ws.close_code or 1006, "", by="client")
            self.closed = True  # set first: answers cancelled below know the socket died
            for task in [*self.tasks, self.answering, self.stream_watch]:
                if task is not None:
                    task.cancel()
            if self.session is not None and self.session.open_connection == self.number:
                self.session.open_connection = None

    async def _serve(self) -> None:
        first = await self.ws.receive()
        if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        message = self._parse(first.data)
        if "setup" not in message:
            raise WireError("Request contains an invalid argument: setup must come first.")
        await self._start_session(message["setup"])
        if self.closed:
            return
        self._spawn(self._answer_worker())
        self._spawn(self._limit_watch())
        self._spawn(self._lifetime_watch())
        async for frame in self.ws:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            message = self._parse(frame.data)
            if not self.silent:
                await self._handle(message)
                self.consumed += 1

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        try:
            message = parse_client_message(raw, self.version)
        except WireError as exc:
            self.emulator.log_in(self.number, {"unparsed": str(raw)[:200], "error": str(exc)})
            raise
        self.emulator.log_in(self.number, message)
        return message

    async def _start_session(self, setup: dict[str, Any]) -> None:
        problem = self.emulator.check_credentials(self.request, self.constrained)
        if problem is not None:
            await self.close(*problem)
            return
        if self.constrained:
            setup = self.emulator.apply_token_constraints(self.request, setup)
        model = setup.get("model", "")
        if not model:
            raise WireError("Request contains an invalid argument: setup.model is required.")
        model_traits = self.emulator.model_traits(model)
        if model_traits is None:
            name = "models/" + model.removeprefix("models/")
            await self.close(
                1008,
                f"{name} is not found for API version {self.version}, or is not supported "
                "for bidiGenerateContent.",
            )
            return
        self.model = model_traits
        refused = rules.setup_problem(model, model_traits, setup)
        if refused is not None:
            raise WireError(refused)
        modalities = setup.get("generationConfig", {}).get("responseModalities", [])
        if len(modalities) > 1:
            raise WireError("Request contains an invalid argument.")
        handle = setup.get("sessionResumption", {}).get("handle")
        if handle:
            session = self.emulator.registry.sessions_by_handle.get(handle)
            if session is None:
                raise WireError("Session resumption handle is invalid or expired.")
            if session.open_connection is not None:
                await self.close(1011, "Internal error occurred.")  # the old socket is still open
                return
            session.setup = setup
        else:
            session = self.emulator.registry.new_session(setup)
        session.open_connection = self.number
        self.session, self.setup = session, setup
        self.emulator.parsed_setups.append(setup)
        detection = setup.get("realtimeInputConfig", {}).get("automaticActivityDetection", {})
        if not detection.get("disabled", False):
            self.detector = SpeechDetector(
                DetectorSettings(
                    silence_ms=detection.get("silenceDurationMs") or 500,
                    prefix_ms=detection.get("prefixPaddingMs") or 20,
                    low_start_sensitivity=detection.get("startOfSpeechSensitivity")
                    == "START_SENSITIVITY_LOW",
                )
            )
        if self.emulator.options.no_setup_complete:
            return
        if self.emulator.options.latency_ms:  # a slow service is slow to set up too
            await asyncio.sleep(self.emulator.options.latency_ms / 1000)
        await self.send({"setupComplete": {"sessionId": session.session_id}})

    async def _lifetime_watch(self) -> None:
        """A connection lives about 10 minutes (scaled clock): goAway a minute before the end.
        `--goaway-every S` sends it S wall seconds into each connection instead."""
        options = self.emulator.options
        if options.goaway_every > 0:
            await asyncio.sleep(options.goaway_every)
            await self.go_away(options.goaway_time_left_s)
            return
        await asyncio.sleep((CONNECTION_LIFETIME_S - GOAWAY_NOTICE_S) / options.clock_scale)
        await self.go_away(GOAWAY_NOTICE_S)

    async def _limit_watch(self) -> None:
        """Without context compression the service ends sessions at 15 min (2 min with video)."""
        if "contextWindowCompression" in self.setup:
            return
        assert self.session is not None
        scale = self.emulator.options.clock_scale
        while not self.closed:
            await asyncio.sleep(0.05)
            limit = 120.0 if self.session.saw_video else 900.0
            age = (time.monotonic() - self.session.started) * scale
            if age >= limit:
                await self.close(1011, DEADLINE)
