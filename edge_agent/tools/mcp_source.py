"""Tools from MCP servers, as a ToolSource for the ToolRunner. Costs nothing until start():
the `mcp` package is imported then, in a worker thread, and only when servers are configured."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.config_sections import McpServerConfig
from edge_agent.tools.registry import Tool

log = logging.getLogger(__name__)

CLIENT_MODULE = "edge_agent.tools.mcp"
MISSING = "the mcp package is not installed: pip install 'edge-agent[mcp]'"


class McpTools:
    """Connects every configured server in the background; tools() is what is up right now."""

    def __init__(self, servers: list[McpServerConfig], state_dir: Path | None) -> None:
        self.servers = servers
        self.state_dir = state_dir
        self.clients: list[Any] = []  # edge_agent.tools.mcp.ServerClient, once imported
        self._task: asyncio.Task[None] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._imported = asyncio.Event()

    def tools(self) -> list[Tool]:
        return [t for client in self.clients for t in client.tools()]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mcp servers")

    async def settled(self) -> None:
        """Returns once every server was tried once (connected or not). For simulate and tests:
        the daemon never waits on it."""
        await self._imported.wait()
        for client in self.clients:
            await client.first_attempt.wait()

    async def _run(self) -> None:
        try:
            started, rss = time.perf_counter(), _max_rss_kib()
            try:
                module = await asyncio.to_thread(importlib.import_module, CLIENT_MODULE)
            except ImportError as exc:
                log.error("MCP servers are configured but %s (%s)", MISSING, exc)
                return
            log.info(
                "mcp imported in %.2f s (+%d MiB peak RSS)",
                time.perf_counter() - started,
                (_max_rss_kib() - rss) // 1024,
            )
            home = self._home()
            self.clients = [module.ServerClient(s, home / s.name) for s in self.servers]
        finally:
            self._imported.set()
        await asyncio.gather(*(client.run() for client in self.clients))

    def _home(self) -> Path:
        """Stdio servers get HOME and their working directory in state_dir/mcp/NAME."""
        if self.state_dir is not None:
            return self.state_dir / "mcp"
        self._scratch = tempfile.TemporaryDirectory(prefix="edge-agent-mcp-")
        return Path(self._scratch.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.clients = []
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def check_lines(servers: list[McpServerConfig], online: bool) -> list[str]:
    """`check`: each server, its credentials (found or missing) and, online, its tools."""
    from edge_agent.credentials import MissingCredential, read_credential

    lines = []
    installed = importlib.util.find_spec("mcp") is not None
    if not installed:
        lines.append(f"# mcp: {MISSING}")
    for server in servers:
        if server.command:
            how = f"stdio: {server.command}"
        else:
            how = f"{'SSE' if server.url.rstrip('/').endswith('/sse') else 'HTTP'}: {server.url}"
        lines.append(f"# mcp {server.name}: {how}")
        for name in server.credential_names():
            try:
                read_credential(name)
                lines.append(f"#   credential {name}: set, not shown")
            except MissingCredential as exc:
                lines.append(f"#   {exc}")
        for key, value in server.headers.items():
            if "credential:" not in value and key.lower() in {"authorization", "x-api-key"}:
                lines.append(f"#   headers.{key} is written in the config: use credential:NAME")
    if online and installed:
        module = importlib.import_module(CLIENT_MODULE)
        with tempfile.TemporaryDirectory(prefix="edge-agent-mcp-") as home:
            lines += asyncio.run(module.list_online(servers, Path(home)))
    return lines
