"""live/wire.py's fast path against the real google-genai SDK over real TLS WebSockets.

The fast path writes a microphone frame as the JSON AsyncSession.send_realtime_input writes, and
reads answer audio without the SDK's pydantic models, on the SDK session's own websocket. These
tests fail when an SDK upgrade changes what it relies on: then check wire.py against the new
SDK, or drop the fast path (wire.py's public path needs nothing internal).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from google.genai import live, types
from websockets.asyncio.client import ClientConnection

from edge_agent.config import Config
from edge_agent.live import wire
from edge_agent.live.setup import build_live_config
from tests.conftest import sdk_client
from tests.hostile_server import CHUNK, Frame, HostileServer, Peer, audio, b64, tone
from tests.test_emulator import ask

# AsyncSession._receive of google-genai 3.6.1, which wire.receiver and events_from_frame mirror
RECEIVE_SHA256 = "c33b714bacf6928be5f932367c030da3c5813fdc98243a56027ddbb836ba92c2"
# websockets' Connection.send_context and drain, whose open, unpaused path wire.direct_sender takes
SEND_SHA256 = "87c13cb40b09e54ac98716863585523540b1ff5e439cf519fb387d3f83b8a674"
MIC_FRAME = bytes(range(256)) * 3 + bytes(192)  # 30 ms; in base64, urlsafe "-" and "_"
MIME = "audio/pcm;rate=16000"


def test_the_sdk_still_receives_as_the_fast_path_mirrors() -> None:
    source = inspect.getsource(live.AsyncSession._receive)
    assert hashlib.sha256(source.encode()).hexdigest() == RECEIVE_SHA256, (
        "google-genai changed AsyncSession._receive: compare it with wire.receiver and "
        "wire.events_from_frame, then update RECEIVE_SHA256"
    )
    assert "decode" in inspect.signature(ClientConnection.recv).parameters


def test_websockets_still_sends_as_the_direct_path_mirrors() -> None:
    source = "".join(
        inspect.getsource(method)
        for method in (ClientConnection.send_context, ClientConnection.drain)
    )
    assert hashlib.sha256(source.encode()).hexdigest() == SEND_SHA256, (
        "websockets changed how send() writes: compare it with wire.direct_sender, then update "
        "SEND_SHA256"
    )


@contextlib.asynccontextmanager
async def connected(server: HostileServer) -> AsyncIterator[tuple[Any, Peer]]:
    """The SDK's session, as LiveSession opens it, and the server's side of it."""
    config = Config()
    connection = sdk_client(server).aio.live.connect(
        model=config.live.model, config=build_live_config(config, [], resume_handle=None)
    )
    entering = asyncio.create_task(connection.__aenter__())
    peer = await server.next_peer(10)
    assert peer is not None
    assert "setup" in json.loads(await peer.ws.recv())
    await peer.send({"setupComplete": {}})
    session = await entering
    try:
        yield session, peer
    finally:
        with contextlib.suppress(Exception):
            await connection.__aexit__(None, None, None)
        peer.abort()
        peer.done.set()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[HostileServer]:
    server = HostileServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_a_microphone_frame_on_the_wire_is_what_the_sdk_writes(
    server: HostileServer,
) -> None:
    jpeg = bytes(range(256)) * 8
    async with connected(server) as (session, peer):
        assert wire.raw_socket(session) is not None, "the SDK session has no _ws: fast path off"
        for kind, payload, mime in (
            ("audio", MIC_FRAME, "audio/pcm;rate=16000"),
            ("video", jpeg, "image/jpeg"),
        ):
            await wire.send(session, kind, payload)
            fast = await peer.ws.recv()
            await session.send_realtime_input(**{kind: types.Blob(data=payload, mime_type=mime)})
            assert fast == await peer.ws.recv()  # the same frame type and bytes


async def test_a_frame_sent_at_once_is_the_same_frame_and_waits_when_the_socket_is_held(
    server: HostileServer,
) -> None:
    async with connected(server) as (session, peer):
        send_now = wire.direct_sender(session)
        assert send_now is not None, "the websocket is not the shape direct_sender knows"
        assert send_now("audio", MIC_FRAME)
        direct = await peer.ws.recv()
        await session.send_realtime_input(audio=types.Blob(data=MIC_FRAME, mime_type=MIME))
        assert direct == await peer.ws.recv()
        assert not send_now("activity_start", b"")  # only frames; the rest keeps its order
        session._ws.paused = True  # flow control holds the socket: send() would wait
        assert not send_now("audio", MIC_FRAME)
        session._ws.paused = False
        await session._ws.close()
        assert not send_now("audio", MIC_FRAME)


async def test_without_a_usable_socket_the_public_api_is_used_and_said_once(
    server: HostileServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "_fallback_logged", [])
    async with connected(server) as (session, peer):
        session._api_client.vertexai = True  # the fast path knows the Gemini API only
        with caplog.at_level(logging.INFO, "edge_agent.live.wire"):
            for _ in range(3):
                await wire.send(session, "audio", MIC_FRAME)
            assert isinstance(wire.receiver(session), wire._PublicReceiver)
        sent = [json.loads(await peer.ws.recv()) for _ in range(3)]
    data = base64.urlsafe_b64encode(MIC_FRAME).decode()
    assert [m["realtime_input"]["audio"]["data"] for m in sent] == [data] * 3
    assert sum("public API" in r.getMessage() for r in caplog.records) == 1


async def answer_frames(start_emulator: Callable[..., Any]) -> list[bytes]:
    """One answer of the project's emulator, as it arrives on the socket."""
    emulator = await start_emulator()
    config = Config()
    live_config = build_live_config(config, [], resume_handle=None)
    frames = []
    async with sdk_client(emulator).aio.live.connect(
        model=config.live.model, config=live_config
    ) as session:
        await ask(session, "hello there")
        while b"turnComplete" not in (frames or [b""])[-1]:
            frames.append(await session._ws.recv(decode=False))
    return frames


CRAFTED: list[Frame] = [
    audio(),
    audio(b64(tone(0.01)).rstrip("=")),  # unpadded: the SDK accepts it
    audio(b64(MIC_FRAME).replace("+", "-").replace("/", "_")),  # urlsafe: so does the SDK
    audio("AB=="),  # non-zero bits after the last byte: the SDK refuses it
    audio("AAEC /w=="),
    audio("AAEC\n/w=="),
    audio("AAé="),
    audio("!!!!"),
    audio(""),
    audio(None),
    audio(12),
    audio(CHUNK, mime=5),
    audio(CHUNK, mime=None),
    {"serverContent": {"modelTurn": {"role": 5, "parts": [{"inlineData": {"data": CHUNK}}]}}},
    {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": CHUNK}}, {"text": "hi"}]}}},
    {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": CHUNK}, "thought": True}]}}},
    {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": "AQ=="}}] * 3}}},
    {"serverContent": {"modelTurn": {"parts": []}}},
    {"serverContent": {"modelTurn": {"parts": [None]}}},
    {"serverContent": {"modelTurn": {"parts": "x"}}},
    {"serverContent": {"modelTurn": {"role": "model"}}},
    {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": CHUNK, "x": 1}}]}}},
    {**audio(), "usageMetadata": {"totalTokenCount": 5}},
    {"serverContent": {**audio()["serverContent"], "outputTranscription": {"text": "Hi"}}},
    {"serverContent": {**audio()["serverContent"], "outputTranscription": {"finished": True}}},
    {"serverContent": {**audio()["serverContent"], "outputTranscription": {"text": 7}}},
    {"serverContent": {**audio()["serverContent"], "outputTranscription": None}},
    {"serverContent": {**audio()["serverContent"], "interrupted": True}},
    {"serverContent": {**audio()["serverContent"], "turnComplete": True}},
    {"serverContent": {"inputTranscription": {"text": "hello", "finished": True}}},
    {"serverContent": {"interrupted": True}},
    {"serverContent": {"turnComplete": True, "turnCompleteReason": "NEED_MORE_INPUT"}},
    {"toolCall": {"functionCalls": [{"id": "1", "name": "lights", "args": {"on": True}}]}},
    {"toolCallCancellation": {"ids": ["1"]}},
    {"goAway": {"timeLeft": "50s"}},
    {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True}},
    {"usageMetadata": {"promptTokenCount": "many"}},
    {"setupComplete": {}},
    {"code": 400, "message": "an error object"},
    {"serverContent": "x"},
    {},
    [],
    "not json",
    b"\xff\xfe",
    b"",
]


def outcome(result: list[Any] | BaseException) -> Any:
    if isinstance(result, BaseException):
        return type(result).__name__, str(result), getattr(result, "code", None)
    return result


async def read_all(receive: wire.Receive, count: int) -> list[Any]:
    results: list[Any] = []
    for _ in range(count):
        try:
            results.append(outcome(await receive()))
        except Exception as exc:
            results.append(outcome(exc))
    return results


async def test_the_fast_path_makes_the_events_the_sdk_makes(
    server: HostileServer, start_emulator: Callable[..., Any]
) -> None:
    real = await answer_frames(start_emulator)
    assert any(wire._answer_audio(json.loads(f)) for f in real), "no answer takes the fast path"
    frames: list[Frame] = [*real, *CRAFTED]
    results = []
    for make in (wire.receiver, wire._PublicReceiver):  # the fast path, then the SDK's own
        async with connected(server) as (session, peer):
            receive = make(session)
            assert isinstance(receive, wire._PublicReceiver) == (make is wire._PublicReceiver)
            assert await peer.send(*frames)
            closing = asyncio.create_task(peer.close(1011, "Deadline expired"))
            results.append(await read_all(receive, len(frames) + 2))
            await closing
    fast, sdk = results
    for frame, got, expected in zip([*frames, "close", "after"], fast, sdk, strict=True):
        assert got == expected, f"{frame!r:.200}"
    assert [result[2] for result in fast[-2:]] == [1011, 1011]  # APIError codes, as the SDK's
