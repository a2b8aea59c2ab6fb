"""The Live API emulator: wss:// and https:// on one port, faults, log, ephemeral tokens."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from edge_agent.emulator.certs import make_server_context, write_authority
from edge_agent.emulator.connection import Connection
from edge_agent.emulator.options import EmulatorOptions as EmulatorOptions  # callers find it here
from edge_agent.emulator.state import Registry
from edge_agent.emulator.wire import (
    WireError,
    encode_for_log,
    encode_for_wire,
    parse_client_message,
    to_camel,
)
from edge_agent.live.models import ModelTraits, traits

LIVE_PATH = (
    r"/{prefix:(?:.*/)?}ws/google.ai.generativelanguage.{version:v1|v1beta|v1alpha}"
    r".GenerativeService.BidiGenerateContent{constrained:(?:Constrained)?}"
)
MAX_CLIENT_FRAME = 8 * 1024 * 1024
INVALID_KEY = "API key not valid. Please pass a valid API key."
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


class Emulator:
    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.scenario = options.scenario
        self.registry = Registry()
        self.parsed_setups: list[dict[str, Any]] = []
        self.video_frames: list[bytes] = []  # every image received, for tests and demos
        self.offered_extensions: list[str] = []  # Sec-WebSocket-Extensions of each connection
        self.connections: dict[int, Connection] = {}
        self._count = 0
        self._started = time.monotonic()
        self._log: IO[str] | None = None
        self._runner: web.AppRunner | None = None
        self._timers: list[asyncio.Task[None]] = []
        self.port = options.port

    @property
    def url(self) -> str:
        return f"https://{self.options.host}:{self.port}"

    @property
    def cert_path(self) -> Path:
        return self.options.cert_dir / "cert.pem"

    async def start(self) -> None:
        authority, context = make_server_context()
        app = web.Application()
        app.router.add_get(LIVE_PATH, self._websocket)
        app.router.add_post("/{version:v1|v1beta|v1alpha}/auth_tokens", self._auth_tokens)
        app.router.add_get("/{version:v1|v1beta|v1alpha}/models/{model}", self._get_model)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port, ssl_context=context)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        # only now that the port is ours: a second emulator on a busy port must not replace
        # the certificate the running one's clients trust
        write_authority(authority, self.options.cert_dir)
        if self.options.log_path is not None:
            self._log = self.options.log_path.open("a", buffering=1, encoding="utf-8")
        if self.options.drop_every > 0:
            self._timers.append(asyncio.create_task(self._drop_every(self.options.drop_every)))

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for connection in list(self.connections.values()):
            await connection.close(1001, "emulator stopping")
            connection.cancel()  # a handler asleep in --latency-ms would hold the stop 60 s
        if self._runner is not None:
            await self._runner.cleanup()
        if self._log is not None:
            self._log.close()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _drop_every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            for connection in list(self.connections.values()):
                if connection.session is not None:
                    self.log_event(connection.number, "drop")
                    connection.drop()

    # ---- HTTP handlers ---------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_CLIENT_FRAME, autoping=True)
        self.offered_extensions.append(request.headers.get("Sec-WebSocket-Extensions", ""))
        await ws.prepare(request)
        self._count += 1
        connection = Connection(self, ws, self._count, request)
        connection.handler = asyncio.current_task()
        self.connections[connection.number] = connection
        try:
            await connection.serve()
        except ConnectionError:
            pass
        finally:
            del self.connections[connection.number]
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
        return ws

    async def _auth_tokens(self, request: web.Request) -> web.Response:
        refused = self._rest_key_error(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "Invalid JSON payload received.")
        now = datetime.now(UTC)
        expire = _timestamp(body.get("expireTime")) or now + timedelta(minutes=30)
        new_session = _timestamp(body.get("newSessionExpireTime")) or now + timedelta(minutes=1)
        setup = body.get("bidiGenerateContentSetup") or {}
        if setup:
            try:
                setup = parse_client_message(json.dumps({"setup": setup}), "v1alpha")["setup"]
            except WireError as exc:
                return _error(400, str(exc))
        mask = body.get("fieldMask")
        field_mask = tuple(to_camel_path(p) for p in str(mask).split(",") if p) if mask else None
        token = self.registry.mint_token(
            int(body.get("uses", 1)), expire.timestamp(), new_session.timestamp(), setup, field_mask
        )
        return web.json_response(
            {
                "name": token.name,
                "expireTime": expire.isoformat(),
                "newSessionExpireTime": new_session.isoformat(),
                "uses": int(body.get("uses", 1)),
            }
        )

    async def _get_model(self, request: web.Request) -> web.Response:
        refused = self._rest_key_error(request)
        if refused is not None:
            return refused
        name = request.match_info["model"].removeprefix("models/")
        known = self.model_traits(name)
        if known is None:
            version = request.match_info["version"]
            return _error(
                404,
                f"models/{name} is not found for API version {version}, or is not supported "
                "for get. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        return web.json_response(
            {
                "name": f"models/{name}",
                "version": known.version,
                "displayName": known.display_name,
                "description": f"{known.display_name} (Live API emulator)",
                "inputTokenLimit": known.input_token_limit,
                "outputTokenLimit": known.output_token_limit,
                "supportedGenerationMethods": ["bidiGenerateContent", "countTokens"],
            }
        )

    def _rest_key_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if not key:
            return _error(403, NO_KEY)
        if not self._key_ok(key):
            return _error(400, INVALID_KEY, reason="API_KEY_INVALID")
        return None

    # ---- models ----------------------------------------------------------------------------

    def model_traits(self, model: str) -> ModelTraits | None:
        """The rules a model follows here; None when the service would not know it."""
        name = model.removeprefix("models/")
        if name in self.options.reject_models:
            return None
        known = traits(name)
        if known is None and self.options.any_model:
            return ModelTraits(
                display_name=name,
                version="0",
                thinking_budget=True,
                thinking_levels=("minimal", "low", "medium", "high"),
                affective_dialog=True,
                proactive_audio=True,
                non_blocking_tools=True,
            )
        return known

    # ---- credentials -----------------------------------------------------------------------

    def _key_ok(self, key: str) -> bool:
        return bool(key) and (not self.options.api_key or key == self.options.api_key)

    def check_credentials(self, request: web.Request, constrained: bool) -> tuple[int, str] | None:
        """None when the connection may go on, else the close code and reason."""
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Token ").strip() if auth.startswith("Token ") else ""
        token = token or request.query.get("access_token", "")
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if constrained:
            known = self.registry.tokens.get(token or key)
            if known is None or time.time() > known.expires:
                return 1007, INVALID_KEY
            return None
        if not key:
            return 1008, NO_KEY
        return None if self._key_ok(key) else (1007, INVALID_KEY)

    def apply_token_constraints(
        self, request: web.Request, setup: dict[str, Any]
    ) -> dict[str, Any]:
        auth = request.headers.get("Authorization", "").removeprefix("Token ").strip()
        name = (
            auth
            or request.query.get("access_token", "")
            or request.headers.get("x-goog-api-key", "")
        )
        token = self.registry.tokens[name]
        resuming = bool(setup.get("sessionResumption", {}).get("handle"))
        if not resuming:
            if time.time() > token.new_session_expires:
                raise WireError("The auth token can no longer start new sessions.", 1008)
            if token.uses_left == 1:
                del self.registry.tokens[name]
            elif token.uses_left > 1:
                token.uses_left -= 1
        return lock_fields(setup, token.locked_setup, token.field_mask)

    # ---- I/O and log -----------------------------------------------------------------------

    async def send(self, number: int, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        self._write_log(number, "out", encode_for_log(message))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(encode_for_wire(message))

    def log_in(self, number: int, message: dict[str, Any]) -> None:
        self._write_log(number, "in", encode_for_log(message))

    def log_close(self, number: int, code: int, reason: str, by: str = "server") -> None:
        direction = "out" if by == "server" else "in"
        self._write_log(number, direction, {"close": {"code": code, "reason": reason}})

    def log_event(self, number: int, event: str) -> None:
        self._write_log(number, "out", {"fault": event})

    def _write_log(self, number: int, direction: str, message: Any) -> None:
        if self._log is None:
            return
        entry = {
            "t": round(time.monotonic() - self._started, 4),
            "dir": direction,
            "conn": number,
            "msg": message,
        }
        self._log.write(json.dumps(entry) + "\n")


def to_camel_path(path: str) -> str:
    return ".".join(to_camel(part) for part in path.strip().split("."))


def lock_fields(
    client: dict[str, Any], locked: dict[str, Any], mask: tuple[str, ...] | None
) -> dict[str, Any]:
    """The token's setup wins field by field: every field it sets (no mask), or the masked
    paths, where a masked path the token leaves unset is taken away from the client."""
    if mask is None:
        return _deep_merge(client, locked)
    merged = copy.deepcopy(client)
    for path in mask:
        keys = path.split(".")
        source: Any = locked
        for key in keys:
            source = source.get(key) if isinstance(source, dict) else None
        target = merged
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if source is None:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = source
    return merged


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _error(status: int, message: str, reason: str = "") -> web.Response:
    """The service's JSON error shape (google.rpc.Status)."""
    codes = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
    }
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": codes.get(status, "UNKNOWN"),
    }
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ]
    return web.json_response({"error": error}, status=status)


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
