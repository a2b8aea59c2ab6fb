"""The MCP client: one connection per [[mcp.servers]] entry, its tool list cached, calls routed.

Importing this module imports the `mcp` package (about 2.8 G instructions): edge_agent.tools.
mcp_source imports it in a worker thread after READY, and only when servers are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from edge_agent.config_sections import McpServerConfig
from edge_agent.credentials import MissingCredential, resolve_references
from edge_agent.tools.registry import Tool

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0  # the first retry of a server that is down; doubled up to RETRY_MAX_S
RETRY_MAX_S = 60.0
STABLE_AFTER_S = 30.0  # a connection this old resets the backoff
HEALTH_CHECK_S = 30.0  # an idle connection is pinged this often
MAX_RESULT_CHARS = 16000  # a longer result reaches the model truncated, with a note
MAX_ERROR_CHARS = 2000
MAX_PAGES = 20  # tools/list pages followed
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")  # what the Live API accepts
WENT_DOWN = "went down"
SECRET_ARGUMENT = re.compile(r"(?i)passw|secret|token|api.?key|authoriz|credential")


class McpToolError(Exception):
    """The server answered the call with an error."""


class ServerUnavailable(Exception):
    """The call could not reach the server."""


class ServerClient:
    """Keeps one server connected (retrying with backoff) and its allowlisted tools cached."""

    def __init__(self, config: McpServerConfig, home: Path) -> None:
        self.config = config
        self.home = home
        self.origin = f"MCP server {config.name}"
        self.session: ClientSession | None = None
        self.offered: list[Tool] = []
        self.first_attempt = asyncio.Event()  # set once the first connect succeeded or failed
        self._broken = asyncio.Event()
        self._last_status = 0  # the last HTTP status seen, to name a refused token
        self._said = ""  # the last problem logged (a repeat goes to debug)
        self._warned: set[str] = set()

    def tools(self) -> list[Tool]:
        return list(self.offered) if self.session is not None else []

    # ---- the connection ---------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: connect, list, serve calls; when down, one log line and a retry later."""
        attempt = 0
        while True:
            up_at = 0.0
            try:
                async with self.connect() as session:
                    up_at = time.monotonic()
                    self._up(session)
                    await self._watch(session)
                cause = "the connection ended"
            except Exception as exc:
                cause = self.describe(exc)
            finally:
                self.session, self.offered = None, []
                self.first_attempt.set()
            if up_at and time.monotonic() - up_at > STABLE_AFTER_S:
                attempt = 0
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2**attempt) * random.uniform(0.8, 1.2)
            attempt += 1
            self._down(cause, was_up=bool(up_at), delay=delay)
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[ClientSession]:
        """An initialized session with the tool list fetched into self.offered."""
        self._last_status = 0
        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport(stack))
            session = await stack.enter_async_context(ClientSession(read, write))
            async with asyncio.timeout(self.config.timeout_s):
                await session.initialize()
                listed = await list_all_tools(session)
            self.offered = self._convert(listed)
            yield session

    def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        config = self.config
        if config.command:
            self.home.mkdir(parents=True, exist_ok=True)
            env = {key: resolve_references(value) for key, value in config.env.items()}
            parameters = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env={**env, "HOME": str(self.home)},
                cwd=self.home,
            )
            return stdio_client(parameters)
        headers = {key: resolve_references(value) for key, value in config.headers.items()}
        timeout = httpx2.Timeout(config.timeout_s, read=300.0)
        if config.url.rstrip("/").endswith("/sse"):  # older Home Assistant: /mcp_server/sse
            return sse_client(config.url, headers=headers, timeout=config.timeout_s)

        async def remember(response: httpx2.Response) -> None:
            self._last_status = response.status_code

        client = httpx2.AsyncClient(
            headers=headers, timeout=timeout, event_hooks={"response": [remember]}
        )
        stack.push_async_callback(client.aclose)
        return streamable_http_client(config.url, http_client=client)

    def _up(self, session: ClientSession) -> None:
        self.session = session
        self._broken.clear()
        names = ", ".join(t.name for t in self.offered) or "none"
        again = " is back" if self._said else ""
        log.info("%s%s: %d tools (%s)", self.origin, again, len(self.offered), names)
        self._said = ""
        self.first_attempt.set()

    def _down(self, cause: str, was_up: bool, delay: float) -> None:
        """One warning when it goes down; retries failing the same way (or just after going
        down) are debug lines."""
        quiet = not was_up and (cause == self._said or self._said == WENT_DOWN)
        if quiet:
            log.debug("%s still unreachable (%s); next try in %.1f s", self.origin, cause, delay)
        else:
            log.warning(
                "%s %s (%s): its tools are left out until it is back; retrying with backoff",
                self.origin,
                WENT_DOWN if was_up else "is unreachable",
                cause,
            )
        self._said = WENT_DOWN if was_up else cause

    async def _watch(self, session: ClientSession) -> None:
        """Returns when a call found the connection broken or a health ping fails."""
        while not self._broken.is_set():
            try:
                async with asyncio.timeout(HEALTH_CHECK_S):
                    await self._broken.wait()
            except TimeoutError:
                async with asyncio.timeout(self.config.timeout_s):
                    await session.send_ping()

    def describe(self, exc: BaseException) -> str:
        """One line for what went wrong, from inside the exception groups anyio raises."""
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        status = self._last_status
        if isinstance(exc, httpx2.HTTPStatusError):
            status = exc.response.status_code
        if status in (401, 403):
            names = ", ".join(self.config.credential_names()) or "headers"
            return f"HTTP {status}: the server refused the credentials ({names})"
        if isinstance(exc, MissingCredential):
            return str(exc)
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.config.timeout_s:g} s"
        if isinstance(exc, FileNotFoundError) and self.config.command:
            return f"command not found: {self.config.command}"
        if isinstance(exc, httpx2.HTTPStatusError):
            return f"HTTP {exc.response.status_code} from {self.config.url}"
        if isinstance(exc, httpx2.TransportError):
            return f"cannot reach {self.config.url}: {exc or type(exc).__name__}"
        if isinstance(exc, MCPError):
            return exc.error.message
        return f"{type(exc).__name__}: {exc}"

    # ---- tools ------------------------------------------------------------------------------

    def _convert(self, listed: list[types.Tool]) -> list[Tool]:
        allowed = set(self.config.tools)
        offered = []
        for listing in listed:
            if allowed and listing.name not in allowed:
                continue
            converted = self._tool(listing)
            if converted is not None:
                offered.append(converted)
        missing = allowed - {t.name for t in listed}
        if missing:
            self._warn_once(f"does not offer {', '.join(sorted(missing))} (in its tools allowlist)")
        return offered

    def _tool(self, listing: types.Tool) -> Tool | None:
        name = self.config.prefix + listing.name
        if not FUNCTION_NAME.match(name):
            self._warn_once(f"tool {listing.name!r} is left out: not a valid function name")
            return None
        schema = dict(listing.input_schema or {"type": "object", "properties": {}})
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            self._warn_once(f"tool {listing.name} is left out: bad input schema ({exc.message})")
            return None
        server_name = listing.name

        async def call(**args: Any) -> dict[str, Any]:
            return await self.call(server_name, args)

        properties = schema.get("properties")
        secret = [p for p in properties if SECRET_ARGUMENT.search(p)] if properties else []
        return Tool(
            name=name,
            description=(listing.description or listing.title or listing.name)[:1024],
            function=call,
            parameters=schema,
            non_blocking=self.config.non_blocking,
            secret=tuple(secret),
            timeout_s=self.config.timeout_s,
            origin=self.origin,
        )

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s %s", self.origin, message)

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One tools/call; cancelling the caller cancels the request on the server."""
        session = self.session
        if session is None:
            raise ServerUnavailable(f"{self.origin} is not connected")
        try:
            result = await session.call_tool(name, args)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._broken.set()
                raise ServerUnavailable(f"{self.origin} closed the connection") from None
            raise McpToolError(exc.error.message[:MAX_ERROR_CHARS]) from None
        except (RuntimeError, ValueError) as exc:
            raise McpToolError(str(exc)[:MAX_ERROR_CHARS]) from None
        except Exception as exc:
            self._broken.set()
            raise ServerUnavailable(f"{self.origin}: {self.describe(exc)}") from None
        return answer(result)


async def list_all_tools(session: ClientSession) -> list[types.Tool]:
    listed: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        listed += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return listed


def answer(result: types.CallToolResult) -> dict[str, Any]:
    """The function response: the text and the structured content, of a sane size."""
    parts = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.EmbeddedResource) and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{block.type} {getattr(block, 'mime_type', '')} not shown]")
    text = "\n".join(parts)
    if result.is_error:
        raise McpToolError(text[:MAX_ERROR_CHARS] or "the tool reported an error")
    answered: dict[str, Any] = {}
    structured = result.structured_content
    if structured is not None:
        answered["structured"] = structured
    if text and not _repeats(text, structured):
        answered["text"] = text
    dumped = json.dumps(answered, ensure_ascii=False, default=str)
    if len(dumped) <= MAX_RESULT_CHARS:
        return answered
    return {
        "text": dumped[:MAX_RESULT_CHARS],
        "note": f"truncated: the result had {len(dumped)} characters, only the first "
        f"{MAX_RESULT_CHARS} are shown",
    }


def _repeats(text: str, structured: dict[str, Any] | None) -> bool:
    """MCPServer sends the structured result again as JSON text: keep it once."""
    if structured is None:
        return False
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    wrapped = list(structured) == ["result"] and parsed == structured["result"]
    return bool(parsed == structured or wrapped)


async def list_online(servers: list[McpServerConfig], home: Path) -> list[str]:
    """`check --online`: each server's tools as the agent would declare them, or why not."""
    lines = []
    for config in servers:
        client = ServerClient(config, home / config.name)
        try:
            async with asyncio.timeout(config.timeout_s + 5), client.connect():
                pass
        except Exception as exc:
            lines.append(f"# mcp {config.name}: unreachable: {client.describe(exc)}")
            continue
        names = ", ".join(t.name for t in client.offered) or "none"
        lines.append(f"# mcp {config.name}: {len(client.offered)} tools: {names}")
    return lines
