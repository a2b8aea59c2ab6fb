"""The SDK's side of a Live connection: the client, connect, send, receive, and its errors.

Importing google-genai (and websockets, aiohttp with it) costs more than everything else the
agent loads, so LiveSession loads this module in a worker thread, after READY, while the loop
and the microphone keep running; nothing else in the agent imports the SDK.

The fast path: per message, the SDK's public API builds and validates pydantic models, which on
a Pi is most of a conversation's CPU. A microphone frame is written as the JSON the SDK would
write, and an answer's audio frame read without the models, on the SDK session's own websocket;
every other message still goes through the SDK's conversion. `raw_socket` is the one place that
reaches into the SDK; where the session is not the shape it knows, the public API is used.
tests/test_wire_fastpath.py fails when an SDK upgrade changes what the fast path relies on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn

import httpx2
import websockets
from google import genai
from google.genai import _live_converters, errors, types
from websockets.exceptions import ConnectionClosed
from websockets.frames import CLOSE_CODE_EXPLANATIONS
from websockets.protocol import State

from edge_agent.config import Config
from edge_agent.credentials import Credential
from edge_agent.events import LiveEvent, ModelAudio, OutputTranscript
from edge_agent.live.models import effective_api_version
from edge_agent.live.probe import tls_context
from edge_agent.live.setup import build_live_config
from edge_agent.live.translate import events_from_message

__all__ = ["NETWORK_ERRORS", "APIError", "connect", "direct_sender", "receiver", "send"]

log = logging.getLogger(__name__)
APIError = errors.APIError
NETWORK_ERRORS = (OSError, websockets.InvalidHandshake, websockets.InvalidURI)


def connect(
    config: Config,
    credential: Credential,
    declarations: list[dict[str, Any]],
    resume_handle: str | None,
    seed_history: bool = False,
) -> AbstractAsyncContextManager[Any]:
    live_config = build_live_config(config, declarations, resume_handle, seed_history)
    return _client(config, credential).aio.live.connect(model=config.live.model, config=live_config)


async def try_setup(
    config: Config, credential: Credential, declarations: list[dict[str, Any]]
) -> str | None:
    """Sends the setup a session would send and closes once the service took it (the SDK's
    connect waits for its first answer). None: taken; else the service's refusal ("1007 ...")."""
    try:
        async with asyncio.timeout(config.live.connect_timeout_s):
            async with connect(config, credential, declarations, None):
                return None
    except errors.APIError as exc:
        return f"{exc.code} {error_detail(exc)}".strip()


def _client(config: Config, credential: Credential) -> genai.Client:
    live = config.live
    context = tls_context(live.ca_file)
    version = "v1alpha" if credential.is_ephemeral_token else effective_api_version(config)
    return genai.Client(
        api_key=credential.value,
        http_options=types.HttpOptions(
            base_url=live.endpoint or None,
            api_version=version,
            client_args=_no_http(context),
            async_client_args={
                **_no_http(context),
                "ping_interval": live.ping_interval_s or None,
                "ping_timeout": live.ping_timeout_s,
                "close_timeout": 1.0,
                "compression": "deflate" if live.compression else None,
                "ssl": context,
            },
        ),
    )


def _no_http(context: ssl.SSLContext) -> dict[str, Any]:
    """The SDK builds an HTTP client (sync and async) with every genai.Client, which a Live
    session never uses: with its own transport and the shared TLS context they stay empty
    shells. Otherwise the first one imports httpx2's connection stack (5 MB) and each loads a
    CA store."""
    return {"transport": httpx2.MockTransport(_refuse), "verify": context, "trust_env": False}


def _refuse(request: httpx2.Request) -> httpx2.Response:
    raise RuntimeError(f"edge-agent's Live client makes no HTTP requests ({request.url.path})")


def error_detail(exc: errors.APIError) -> str:
    return f"{exc.message or ''} {exc.details or ''}".strip() or exc.status or ""


# ---- the fast path ------------------------------------------------------------------------------

_fallback_logged: list[str] = []  # the session type the fast path did not fit, once


def raw_socket(session: Any) -> Any | None:
    """The websocket under the SDK's AsyncSession (Gemini API), or None (logged once) when the
    session is not the shape this fast path was written against, or talks to Vertex."""
    ws = getattr(session, "_ws", None)
    api = getattr(session, "_api_client", None)
    usable = callable(getattr(ws, "send", None)) and callable(getattr(ws, "recv", None))
    if usable and not getattr(api, "vertexai", True):  # None or False: the Gemini API
        return ws
    if not _fallback_logged:
        _fallback_logged.append(type(session).__name__)
        log.info("the wire fast path does not fit this google-genai session: using its public API")
    return None


# What AsyncSession.send_realtime_input writes for a Blob: json.dumps, urlsafe base64.
_BLOB_JSON = {
    "audio": (
        '{"realtime_input": {"audio": {"data": "',
        '", "mime_type": "audio/pcm;rate=16000"}}}',
    ),
    "video": ('{"realtime_input": {"video": {"data": "', '", "mime_type": "image/jpeg"}}}'),
}


def _blob_message(kind: str, payload: bytes) -> str:
    head, tail = _BLOB_JSON[kind]
    return head + base64.urlsafe_b64encode(payload).decode("ascii") + tail


SendNow = Callable[[str, bytes], bool]


def direct_sender(session: Any) -> SendNow | None:
    """send_now(kind, payload) writes a microphone or camera frame at once, in the caller's turn
    of the loop, when the websocket takes it without waiting (open, not held by flow control, no
    fragmented message under way): what websockets' send() does then, without a coroutine and a
    wake-up of the sender task per frame. False: it did not; send() it. None: no fast path."""
    ws = raw_socket(session)
    protocol: Any = getattr(ws, "protocol", None)
    if (
        ws is None
        or not all(hasattr(ws, name) for name in ("send_in_progress", "paused", "send_data"))
        or not callable(getattr(protocol, "send_text", None))
    ):
        return None

    def send_now(kind: str, payload: bytes) -> bool:
        if (
            kind not in _BLOB_JSON
            or ws.send_in_progress is not None
            or ws.paused
            or protocol.state is not State.OPEN
        ):
            return False
        protocol.send_text(_blob_message(kind, payload).encode())
        ws.send_data()
        return True

    return send_now


async def send(session: Any, kind: str, payload: Any) -> None:
    if kind in _BLOB_JSON and (ws := raw_socket(session)) is not None:
        await ws.send(_blob_message(kind, payload))
    elif kind == "audio":
        blob = types.Blob(data=payload, mime_type="audio/pcm;rate=16000")
        await session.send_realtime_input(audio=blob)
    elif kind == "video":
        await session.send_realtime_input(video=types.Blob(data=payload, mime_type="image/jpeg"))
    elif kind in ("text", "text_in_activity"):
        await session.send_realtime_input(text=payload)
    elif kind == "activity_start":
        await session.send_realtime_input(activity_start=types.ActivityStart())
    elif kind == "activity_end":
        await session.send_realtime_input(activity_end=types.ActivityEnd())
    elif kind == "audio_stream_end":
        await session.send_realtime_input(audio_stream_end=True)
    elif kind == "content":
        turns, complete = payload
        contents = [types.Content(role=role, parts=[types.Part(text=text)]) for role, text in turns]
        await session.send_client_content(turns=contents, turn_complete=complete)
    elif kind == "tool_response":
        call_id, name, response, scheduling = payload
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    id=call_id, name=name, response=response, scheduling=scheduling
                )
            ]
        )


# ---- receiving ----------------------------------------------------------------------------------

Receive = Callable[[], Awaitable[list[LiveEvent]]]


def receiver(session: Any) -> Receive:
    """An awaitable per server message: its events. Raises as AsyncSession.receive() does: an
    APIError when the socket closes (or for an error object), ValueError and kin for a frame
    the SDK cannot read."""
    ws = raw_socket(session)
    if ws is None:
        return _PublicReceiver(session)

    async def receive() -> list[LiveEvent]:
        try:
            raw = await ws.recv(decode=False)
        except TypeError:  # as AsyncSession._receive: a websockets without `decode`
            raw = await ws.recv()
        except ConnectionClosed as exc:
            _closed(exc)
        return events_from_frame(raw)

    return receive


def _closed(exc: ConnectionClosed) -> NoReturn:
    """AsyncSession._receive's error for a closed socket: the session's reconnect logic reads
    its code and message."""
    if exc.rcvd:
        code, reason = exc.rcvd.code, exc.rcvd.reason
    else:
        code, reason = 1006, CLOSE_CODE_EXPLANATIONS.get(1006, "Abnormal closure.")
    errors.APIError.raise_error(code, reason, None)
    raise exc  # raise_error always raises; should it stop, the socket is still closed


def events_from_frame(raw: bytes | str) -> list[LiveEvent]:
    """One frame's events, as AsyncSession._receive and events_from_message make them; answer
    audio (nearly every frame in a conversation) without the SDK's pydantic models."""
    if raw:
        try:
            response = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"Failed to parse response: {raw!r}") from None
    else:
        response = {}
    audio = _answer_audio(response)
    if audio is not None:
        return audio
    return events_from_message(_sdk_message(response))


_NO_KWARGS = types.LiveServerMessage().model_dump()


def _sdk_message(response: Any) -> types.LiveServerMessage:
    """AsyncSession._receive's conversion (Gemini API)."""
    converted = _live_converters._LiveServerMessage_from_mldev(response)
    if not converted and response:
        errors.APIError.raise_error(response.get("code"), response, None)
    return types.LiveServerMessage._from_response(response=converted, kwargs=_NO_KWARGS)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _answer_audio(response: Any) -> list[LiveEvent] | None:
    """The events of {"serverContent": {"modelTurn": {"parts": [{"inlineData": ...}, ...]},
    "outputTranscription": {...}}} (the transcription optional) with nothing else in it, the
    audio in canonical, padded standard base64; None for anything else, which the SDK converts
    (and accepts or refuses) itself."""
    if type(response) is not dict or len(response) != 1:
        return None
    content = response.get("serverContent")
    if type(content) is not dict or not content.keys() <= {"modelTurn", "outputTranscription"}:
        return None
    turn = content.get("modelTurn")
    if type(turn) is not dict or not turn.keys() <= {"parts", "role"}:
        return None
    parts, role = turn.get("parts"), turn.get("role")
    if type(parts) is not list or not (role is None or type(role) is str):
        return None
    events: list[LiveEvent] = []
    for part in parts:
        blob = part.get("inlineData") if type(part) is dict and len(part) == 1 else None
        if type(blob) is not dict or not blob.keys() <= {"data", "mimeType"}:
            return None
        data, mime = blob.get("data"), blob.get("mimeType")
        if type(data) is not str or not (mime is None or type(mime) is str):
            return None
        pcm = _decode(data)
        if pcm is None:
            return None
        if pcm:
            events.append(ModelAudio(pcm))
    transcript = content.get("outputTranscription", {})
    if type(transcript) is not dict or not transcript.keys() <= {"text", "finished"}:
        return None
    text, finished = transcript.get("text"), transcript.get("finished")
    if not (text is None or type(text) is str) or not (finished is None or type(finished) is bool):
        return None
    if text:
        events.append(OutputTranscript(text))
    return events


def _decode(text: str) -> bytes | None:
    """Strict base64, as pydantic decodes it; None where it might differ (the SDK decides)."""
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        return None
    # pydantic refuses non-zero bits after the last byte ("AB=="); a2b_base64 drops them
    if text.endswith("=="):
        return data if _B64.find(text[-3]) & 15 == 0 else None
    if text.endswith("="):
        return data if _B64.find(text[-2]) & 3 == 0 else None
    return data


class _PublicReceiver:
    """The public API: AsyncSession.receive() ends after each turn and is started again."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.messages: AsyncIterator[types.LiveServerMessage] | None = None

    async def __call__(self) -> list[LiveEvent]:
        while True:
            if self.messages is None:
                self.messages = aiter(self.session.receive())
            try:
                message = await anext(self.messages)
            except StopAsyncIteration:
                self.messages = None
                continue
            except BaseException:
                self.messages = None  # a generator that raised is over
                raise
            return events_from_message(message)
