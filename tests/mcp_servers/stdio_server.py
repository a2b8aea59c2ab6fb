"""A real MCP server over stdio (the mcp package's MCPServer) for the tests.

Every call is appended to $CALLS_LOG as one JSON line {"tool", "args"} before it runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("test-stdio")


def record(tool: str, **args: object) -> None:
    with open(os.environ["CALLS_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    record("add", a=a, b=b)
    return a + b


@server.tool(description="Where the server runs: its working directory, HOME, API_TOKEN.")
def where() -> dict[str, str]:
    record("where")
    return {
        "cwd": os.getcwd(),
        "home": os.environ.get("HOME", ""),
        "api_token": os.environ.get("API_TOKEN", ""),
    }


@server.tool(description="Takes 30 s; writes 'cancelled' to the marker file when cancelled.")
async def slow(marker: str) -> str:
    record("slow", marker=marker)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise
    return "finished"


@server.tool(description="The process dies in the middle of the call.")
def crash() -> str:
    record("crash")
    sys.stdout.flush()
    os._exit(3)


@server.tool(description="A very long answer.")
def big(size: int) -> str:
    record("big", size=size)
    return "x" * size


@server.tool(description="Always fails.")
def fail() -> str:
    record("fail")
    raise ToolError("the light bulb is broken")


@server.tool(description="Logs in.")
def login(user: str, password: str) -> str:
    record("login", user=user)
    return f"hello {user}"


if __name__ == "__main__":
    server.run("stdio")
