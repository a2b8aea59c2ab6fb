"""Runs the model's tool calls: validated, timed out, concurrent, cancellable, every answer with
its call's id. A failing tool becomes an error response to the model, never an agent failure."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.audio.volume import Volume
from edge_agent.events import AgentEvent, FunctionCall, ToolFinished, ToolStarted
from edge_agent.tools.registry import Tool, ToolSource

log = logging.getLogger(__name__)

Respond = Callable[[str, str, dict[str, Any], str | None], None]


@dataclass
class ToolContext:
    """What built-in tools may use on the device."""

    end_conversation: Callable[[], None]
    capture_frame: Callable[[], Awaitable[bytes]] | None = None  # a fresh JPEG from the camera
    send_frame: Callable[[bytes], None] | None = None
    gpio_outputs: dict[str, int] | None = None
    volume: Volume | None = None


class ToolRunner:
    def __init__(
        self,
        tools: list[Tool],
        context: ToolContext,
        respond: Respond,
        timeout_s: float,
        non_blocking_supported: bool = True,
        sources: Sequence[ToolSource] = (),
    ) -> None:
        self.fixed = {t.name: t for t in tools}
        self.tools = dict(self.fixed)  # what the model was last told it may call
        self.sources = list(sources)
        self._clashes: set[tuple[str, str]] = set()
        self.context = context
        self.respond = respond
        self.timeout_s = timeout_s
        self.non_blocking_supported = non_blocking_supported
        self.running: dict[str, asyncio.Task[None]] = {}
        self.listeners: list[Callable[[AgentEvent], None]] = []  # ToolStarted, ToolFinished

    def declarations(self) -> list[dict[str, Any]]:
        """Asked before each connect: the fixed tools and what the sources offer right now."""
        self.tools = dict(self.fixed)
        for source in self.sources:
            for offered in source.tools():
                if offered.name in self.tools:
                    self._clash(offered, self.tools[offered.name])
                else:
                    self.tools[offered.name] = offered
        return [t.declaration(self.non_blocking_supported) for t in self.tools.values()]

    def _clash(self, offered: Tool, kept: Tool) -> None:
        key = (offered.name, offered.origin)
        if key not in self._clashes:  # said once, not at every session
            self._clashes.add(key)
            log.warning(
                "tool %s from %s is left out: %s already has that name (set a prefix)",
                offered.name,
                offered.origin or "a plug-in",
                kept.origin or "a built-in",
            )

    def start(self, call: FunctionCall) -> None:
        """Runs one call in its own task; several calls in one message run concurrently."""
        task = asyncio.create_task(self._run(call))
        self.running[call.id] = task
        task.add_done_callback(lambda _: self.running.pop(call.id, None))

    def cancel(self, ids: tuple[str, ...]) -> None:
        for call_id in ids:
            task = self.running.get(call_id)
            if task is not None:
                task.cancel()
                log.info("tool call %s cancelled by the model", call_id)

    async def _run(self, call: FunctionCall) -> None:
        tool = self.tools.get(call.name)
        scheduling = None
        if tool is None:
            response: dict[str, Any] = {"error": f"there is no tool named {call.name!r}"}
        else:
            if tool.non_blocking and self.non_blocking_supported:
                scheduling = tool.scheduling
            args = redacted(call.args, tool.secret)
            log.info("tool call %s(%s) [%s]", call.name, _format(args), call.id)
            self._emit(ToolStarted(call.id, call.name, args))
            response = await self._execute(tool, call)
        shown = response.get("error") or str(response.get("output"))[:200]
        log.info("tool %s -> %s [%s]", call.name, shown, call.id)
        self._emit(ToolFinished(call.id, call.name, "error" not in response, shown))
        self.respond(call.id, call.name, response, scheduling)

    def _emit(self, event: AgentEvent) -> None:
        for listener in self.listeners:
            listener(event)

    async def _execute(self, tool: Tool, call: FunctionCall) -> dict[str, Any]:
        import jsonschema  # at the first tool call: 0.29 G instructions kept out of start-up

        try:
            jsonschema.validate(call.args, tool.parameters)
        except jsonschema.ValidationError as exc:
            return {"error": f"bad arguments: {exc.message}"}
        args = (self.context,) if tool.needs_context else ()
        timeout_s = tool.timeout_s or self.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                if inspect.iscoroutinefunction(tool.function):
                    result = await tool.function(*args, **call.args)
                else:
                    result = await asyncio.to_thread(tool.function, *args, **call.args)
        except TimeoutError:
            return {"error": f"{tool.name} did not finish within {timeout_s:g} s"}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("tool %s failed: %s: %s", tool.name, type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}
        if isinstance(result, dict) and set(result) == {"error"}:
            return result  # the tool's own refusal: an error answer, no warning
        return {"output": result}


# An argument whose name holds one of these words is never logged, marked secret or not.
SECRET_WORDS = {"password", "passwd", "passphrase", "passcode", "pwd", "pass", "token", "secret"}
SECRET_WORDS |= {"key", "apikey", "pin", "pincode", "credential", "credentials", "auth"}


def redacted(args: dict[str, Any], secret: tuple[str, ...]) -> dict[str, Any]:
    return {k: ("***" if k in secret or looks_secret(k) else v) for k, v in args.items()}


def looks_secret(name: str) -> bool:
    """apiKey, pin_code, client-secret, X-Auth-Token: yes; keyboard, ssid: no."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(word in SECRET_WORDS for word in words)


def _format(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())
