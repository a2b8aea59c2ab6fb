"""A server shaped like Home Assistant's MCP Server integration (its tool names, argument shapes
and answers), served over Streamable HTTP at /api/mcp with a bearer token.

Home Assistant builds its tools from the Assist API's intents with the mcp package's low-level
Server; so does this one (with AuthSettings and a TokenVerifier for the long-lived token). `serve`
runs it with uvicorn on 127.0.0.1 in a thread of the test process."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from mcp import types
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import Response
from starlette.routing import Mount, Route

TARGET = {
    "name": {"type": "string"},
    "area": {"type": "string"},
    "floor": {"type": "string"},
    "domain": {"type": "array", "items": {"type": "string"}},
    "device_class": {"type": "array", "items": {"type": "string"}},
}
BRIGHTNESS = {
    "type": "integer",
    "minimum": 0,
    "maximum": 100,
    "description": "The brightness percentage of the light between 0 and 100, where 0 is off "
    "and 100 is fully lit",
}
TOOLS = [
    types.Tool(
        name="HassTurnOn",
        description="Turns on/opens/presses a device or entity",
        input_schema={"type": "object", "properties": TARGET},
    ),
    types.Tool(
        name="HassTurnOff",
        description="Turns off/closes a device or entity",
        input_schema={"type": "object", "properties": TARGET},
    ),
    types.Tool(
        name="HassLightSet",
        description="Sets the brightness percentage or color of a light",
        input_schema={
            "type": "object",
            "properties": {
                **TARGET,
                "color": {"type": "string"},
                "temperature": {"type": "integer"},
                "brightness": BRIGHTNESS,
            },
        },
    ),
    types.Tool(
        name="GetLiveContext",
        description="Provides real-time information about the CURRENT state, value, or mode of "
        "devices, sensors, entities, or areas.",
        input_schema={"type": "object", "properties": {}},
    ),
    types.Tool(
        name="SlowScene",
        description="Activates a scene slowly (30 s); writes 'cancelled' to the marker file "
        "when the call is cancelled.",
        input_schema={
            "type": "object",
            "properties": {"marker": {"type": "string"}},
            "required": ["marker"],
        },
    ),
]


@dataclass
class Home:
    """The entities a user exposed, and every call the server received."""

    entities: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "light.kitchen": {"name": "Kitchen Light", "area": "Kitchen", "state": "on"},
            "light.living_room": {
                "name": "Living Room Lamp",
                "area": "Living Room",
                "state": "off",
            },
            "fan.bedroom": {"name": "Fan", "area": "Bedroom", "state": "off"},
        }
    )
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def matching(self, args: dict[str, Any]) -> list[str]:
        found = []
        for entity_id, entity in self.entities.items():
            if "name" in args and args["name"].lower() != entity["name"].lower():
                continue
            if "area" in args and args["area"].lower() != entity["area"].lower():
                continue
            if "domain" in args and entity_id.split(".")[0] not in args["domain"]:
                continue
            found.append(entity_id)
        return found

    def intent(self, args: dict[str, Any], change: dict[str, Any]) -> types.CallToolResult:
        targets = self.matching(args)
        if not targets:
            return text_result(
                {"error": "MatchFailedError", "error_text": "no entity matched"}, True
            )
        for entity_id in targets:
            self.entities[entity_id].update(change)
        done = [{"name": self.entities[e]["name"], "type": "entity", "id": e} for e in targets]
        answer = {"targets": [], "success": done, "failed": []}
        return text_result({"speech": {}, "response_type": "action_done", "data": answer})

    def live_context(self) -> types.CallToolResult:
        lines = ["Live Context: An overview of the areas and the devices in this smart home:"]
        for entity_id, entity in self.entities.items():
            lines += [
                f"- names: {entity['name']}",
                f"  domain: {entity_id.split('.')[0]}",
                f"  state: '{entity['state']}'",
                f"  areas: {entity['area']}",
            ]
        return text_result({"success": True, "result": "\n".join(lines)})


def text_result(answer: dict[str, Any], error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(answer))], is_error=error
    )


class Tokens:
    """The TokenVerifier: one long-lived access token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def verify_token(self, token: str) -> AccessToken | None:
        if token != self.token:
            return None
        return AccessToken(token=token, client_id="edge-agent", scopes=[])


def build(home: Home, token: str) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = dict(params.arguments or {})
        home.calls.append((params.name, args))
        if params.name == "HassTurnOn":
            return home.intent(args, {"state": "on"})
        if params.name == "HassTurnOff":
            return home.intent(args, {"state": "off"})
        if params.name == "HassLightSet":
            change = {"state": "on", **{k: args[k] for k in ("brightness", "color") if k in args}}
            return home.intent(args, change)
        if params.name == "GetLiveContext":
            return home.live_context()
        if params.name == "SlowScene":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                Path(args["marker"]).write_text("cancelled")
                raise
            return text_result({"success": True})
        return text_result({"error": f"unknown tool {params.name}"}, True)

    return Server("Home Assistant", on_list_tools=list_tools, on_call_tool=call_tool)


class Served:
    """uvicorn serving an app on 127.0.0.1:port in a thread until stop()."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test MCP server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(home: Home, token: str, port: int) -> Served:
    auth = AuthSettings(
        issuer_url="http://127.0.0.1/auth",  # type: ignore[arg-type]
        resource_server_url=None,
        validate_token_resource=False,
    )
    app = build(home, token).streamable_http_app(
        streamable_http_path="/api/mcp", auth=auth, token_verifier=Tokens(token)
    )
    return Served(app, port)


def serve_sse(home: Home, token: str, port: int) -> Served:
    """The same server the way Home Assistant before /api/mcp offered it: SSE at
    /mcp_server/sse, messages posted to /mcp_server/messages/."""
    server = build(home, token)
    sse = SseServerTransport("/mcp_server/messages/")

    async def handle_sse(scope: Any, receive: Any, send: Any) -> Response:
        async with sse.connect_sse(scope, receive, send) as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return Response()

    app = Starlette(
        routes=[
            Route("/mcp_server/sse", RequireAuthMiddleware(handle_sse, []), methods=["GET"]),
            Mount("/mcp_server/messages/", RequireAuthMiddleware(sse.handle_post_message, [])),
        ],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(Tokens(token))),
            Middleware(AuthContextMiddleware),
        ],
    )
    return Served(app, port)
