"""The page, the event stream and the command API on aiohttp. Every request passes the Gate;
handlers call only the Agent's public commands, the Volume and the Timers. No route reads a path
from the request: the page's three files are loaded from the package once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from edge_agent.agent import Agent
from edge_agent.audio.volume import Volume
from edge_agent.config import WebConfig
from edge_agent.web.auth import COOKIE, Gate
from edge_agent.web.hub import Hub

if TYPE_CHECKING:
    from edge_agent.timers.app import Timers

log = logging.getLogger(__name__)


class OneLine(logging.Filter):
    """aiohttp logs a malformed request as an error with its traceback: one warning line is
    enough (traffic that is not HTTP at all it logs at debug level only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            reason = " ".join(str(record.exc_info[1]).split())[:200]
            record.msg, record.args = f"web: {record.getMessage()}: {reason}", None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


http_log = logging.getLogger("edge_agent.web.http")
http_log.addFilter(OneLine())

FILES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
PUBLIC = {"/login", "/style.css"}
MAX_TEXT = 2000
MAX_ANNOUNCEMENT = 1000
TIMERS_OFF = "timers are off: [timers] enabled = false in the config"
MAX_BODY = 16 * 1024
COOKIE_AGE_S = 365 * 24 * 3600
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOGIN_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-agent: log in</title><link rel="stylesheet" href="/style.css"></head>
<body class="login"><form method="post" action="/login"><h1>edge-agent</h1>
<label>Token <input name="token" type="password" autocomplete="current-password" autofocus>
</label><button type="submit">Log in</button>{note}</form></body></html>"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(web.HTTPException):
    """A request refused with a JSON reason and one log line."""

    def __init__(self, status: int, why: str, **fields: Any) -> None:
        self.status_code = status
        body = json.dumps({**fields, "error": why})
        super().__init__(text=body, content_type="application/json")
        self.why = why


class WebFace:
    """The running server; `close()` stops it and drops every client."""

    def __init__(self, runner: web.AppRunner, hub: Hub) -> None:
        self.runner = runner
        self.hub = hub

    async def close(self) -> None:
        self.hub.detach()
        await self.runner.cleanup()


async def start_web(
    config: WebConfig, token: str | None, agent: Agent, volume: Volume, timers: Timers | None = None
) -> WebFace:
    hub = Hub(agent, volume, timers)
    app = make_app(hub, Gate(token))
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=1.0, logger=http_log
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, config.address, config.port).start()
    except BaseException:
        hub.detach()
        await runner.cleanup()
        raise
    log.info("web page on http://%s:%d/", _host(config.address), config.port)
    return WebFace(runner, hub)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def make_app(hub: Hub, gate: Gate) -> web.Application:
    files = _load_files()
    app = web.Application(middlewares=[_guard(gate)], client_max_size=MAX_BODY)
    commands = Commands(hub)

    async def page(request: web.Request) -> web.Response:
        body, content_type = files[request.path]
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    async def login(request: web.Request) -> web.Response:
        if request.method == "POST":
            candidate = str((await request.post()).get("token", ""))
        else:
            candidate = request.query.get("token", "")
        if not candidate:
            return web.Response(text=LOGIN_FORM.format(note=""), content_type="text/html")
        if not gate.token_matches(candidate):
            log.warning("web: a wrong token from %s", request.remote)
            note = '<p class="refused">That token is not right.</p>'
            return web.Response(
                status=403, text=LOGIN_FORM.format(note=note), content_type="text/html"
            )
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE, gate.cookie, max_age=COOKIE_AGE_S, httponly=True, samesite="Strict", path="/"
        )
        raise response

    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    for path in FILES:
        app.router.add_get(path, page)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_route("GET", "/login", login)
    app.router.add_route("POST", "/login", login)
    app.router.add_get("/events", commands.events)
    app.on_shutdown.append(commands.close_streams)
    app.router.add_get("/api/state", commands.state)
    app.router.add_post("/api/conversation", commands.conversation)
    app.router.add_post("/api/mute", commands.mute)
    app.router.add_post("/api/volume", commands.volume)
    app.router.add_post("/api/text", commands.text)
    app.router.add_get("/api/timers", commands.timers)
    app.router.add_post("/api/timers", commands.stop_ringing)
    app.router.add_post("/api/announce", commands.announce)
    return app


def _load_files() -> dict[str, tuple[bytes, str]]:
    static = resources.files("edge_agent.web").joinpath("static")
    return {
        path: (static.joinpath(name).read_bytes(), TYPES[name.rsplit(".", 1)[1]])
        for path, name in FILES.items()
    }


def _guard(gate: Gate) -> Any:
    """Host, credential and Origin checks; security headers; one log line per refusal or
    failure, and no exception escapes to aiohttp."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            _check(gate, request)
            response = await handler(request)
        except Refused as refused:
            log.warning("web: %s %s refused: %s", request.method, request.path, refused.why)
            refused.headers.update(HEADERS)
            raise
        except web.HTTPException as exc:
            if exc.status >= 400:
                log.info("web: %s %s: %d %s", request.method, request.path, exc.status, exc.reason)
            exc.headers.update(HEADERS)
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            log.error("web: %s %s failed: %r", request.method, request.path, exc)
            response = web.json_response({"error": "internal error"}, status=500)
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    return guard


def _check(gate: Gate, request: web.Request) -> None:
    if not gate.host_allowed(request.host):
        raise Refused(421, "this page answers only to its own loopback address")
    if request.path not in PUBLIC and not gate.authorized(
        request.headers.get("Authorization", ""), request.cookies.get(COOKIE, "")
    ):
        raise Refused(401, "a token is needed: /login, or an Authorization: Bearer header")
    writes = request.method not in ("GET", "HEAD") or request.path == "/events"
    if writes and not gate.same_origin(request.headers.get("Origin", ""), request.host):
        raise Refused(403, "cross-site request")


class Commands:
    """The command API and the event stream: each handler is one Agent command."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.agent = hub.agent
        self.streams: set[web.WebSocketResponse] = set()

    async def close_streams(self, app: web.Application) -> None:
        for ws in list(self.streams):
            await ws.close(code=1001, message=b"the agent is stopping")

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.hub.snapshot())

    async def conversation(self, request: web.Request) -> web.Response:
        action = (await _body(request)).get("action")
        if action == "start":
            if not self.agent.open_conversation("web page"):
                raise Refused(409, "the daily token budget is spent")
        elif action == "stop":
            self.agent.close_conversation("web page")
        else:
            raise Refused(400, 'expected {"action": "start"} or {"action": "stop"}')
        return web.json_response({"open": self.agent.conversation.listening})

    async def mute(self, request: web.Request) -> web.Response:
        muted = (await _body(request)).get("muted", not self.agent.muted)
        if not isinstance(muted, bool):
            raise Refused(400, 'expected {"muted": true} or {"muted": false}')
        self.agent.set_muted(muted)
        self.hub.broadcast(self.hub.muted_message())
        return web.json_response({"muted": self.agent.muted})

    async def volume(self, request: web.Request) -> web.Response:
        percent = (await _body(request)).get("percent")
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise Refused(400, 'expected {"percent": 0..100}')
        if not 0 <= percent <= 100:  # NaN too
            raise Refused(400, f"percent must be 0..100 (got {percent})")
        return web.json_response({"percent": self.hub.volume.set(round(percent))})

    async def text(self, request: web.Request) -> web.Response:
        text = (await _body(request)).get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise Refused(400, f'expected {{"text": "..."}} of 1..{MAX_TEXT} characters')
        if not self.agent.send_text(text):
            raise Refused(409, "the daily token budget is spent")
        return web.json_response({"sent": True, "turn": self.agent.ledger.count})

    async def timers(self, request: web.Request) -> web.Response:
        self._timers()
        return web.json_response({"timers": self.hub.timers_now()})

    async def stop_ringing(self, request: web.Request) -> web.Response:
        timers = self._timers()
        if (await _body(request)).get("action") != "stop":
            raise Refused(400, 'expected {"action": "stop"}')
        return web.json_response({"stopped": timers.stop("web page")})

    async def announce(self, request: web.Request) -> web.Response:
        timers = self._timers()
        body = await _body(request)
        text, with_chime = body.get("text"), body.get("chime", True)
        words = printable(text) if isinstance(text, str) else ""
        if not words or len(str(text)) > MAX_ANNOUNCEMENT:
            raise Refused(400, f'expected {{"text": "..."}} of 1..{MAX_ANNOUNCEMENT} characters')
        if not isinstance(with_chime, bool):
            raise Refused(400, '"chime" must be true or false')
        why_not = timers.announce(words, with_chime)
        if why_not:
            raise Refused(409, why_not, queued=False, reason=why_not)
        return web.json_response({"queued": True})

    def _timers(self) -> Timers:
        if self.hub.timers is None:
            raise Refused(404, TIMERS_OFF)
        return self.hub.timers

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
        await ws.prepare(request)
        client = self.hub.subscribe()
        self.streams.add(ws)
        reader = asyncio.create_task(_drain(ws))
        batch: asyncio.Future[list[str]] | None = None
        try:
            while not ws.closed:
                batch = asyncio.ensure_future(client.next_batch())
                await asyncio.wait({batch, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    batch.cancel()
                    break
                if client.overflowed:
                    log.warning("web: an event client fell behind and was dropped")
                    await ws.close(code=1013, message=b"too slow")
                    break
                for text in batch.result():
                    await ws.send_str(text)
        except ConnectionError:
            pass
        finally:
            self.hub.unsubscribe(client)
            self.streams.discard(ws)
            for task in (reader, batch):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """The stream is one-way: what a client sends is read and dropped."""
    async for message in ws:
        if message.type == WSMsgType.ERROR:
            break


def printable(text: str) -> str:
    """Printable characters, whitespace runs (newlines too) as one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Refused(415, "send JSON with Content-Type: application/json")
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    return data
