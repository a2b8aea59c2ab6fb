"""The SDK's side of a Live connection: the client, connect, send, and its errors.

Importing google-genai (and websockets, aiohttp with it) costs more than everything else the
agent loads, so LiveSession loads this module in a worker thread, after READY, while the loop
and the microphone keep running; nothing else in the agent imports the SDK.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import websockets
from google import genai
from google.genai import errors, types

from edge_agent.config import Config
from edge_agent.credentials import Credential
from edge_agent.live.models import effective_api_version
from edge_agent.live.probe import tls_context
from edge_agent.live.setup import build_live_config
from edge_agent.live.translate import events_from_message

__all__ = ["NETWORK_ERRORS", "APIError", "connect", "events_from_message", "send"]

APIError = errors.APIError
NETWORK_ERRORS = (OSError, websockets.InvalidHandshake, websockets.InvalidURI)


def connect(
    config: Config,
    credential: Credential,
    declarations: list[dict[str, Any]],
    resume_handle: str | None,
) -> AbstractAsyncContextManager[Any]:
    live_config = build_live_config(config, declarations, resume_handle=resume_handle)
    return _client(config, credential).aio.live.connect(model=config.live.model, config=live_config)


def _client(config: Config, credential: Credential) -> genai.Client:
    live = config.live
    args: dict[str, Any] = {
        "ping_interval": live.ping_interval_s or None,
        "ping_timeout": live.ping_timeout_s,
        "close_timeout": 1.0,
        "compression": "deflate" if live.compression else None,
        "ssl": tls_context(live.ca_file),
    }
    version = "v1alpha" if credential.is_ephemeral_token else effective_api_version(config)
    return genai.Client(
        api_key=credential.value,
        http_options=types.HttpOptions(
            base_url=live.endpoint or None, api_version=version, async_client_args=args
        ),
    )


def error_detail(exc: errors.APIError) -> str:
    return f"{exc.message or ''} {exc.details or ''}".strip() or exc.status or ""


async def send(session: Any, kind: str, payload: Any) -> None:
    if kind == "audio":
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
