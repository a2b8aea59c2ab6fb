"""A hostile Live API server: every connection plays the next slot of a plan, a scripted case
(setup answered, then frames no client should trust) or a good connection that answers one turn
properly, so one daemon can be walked through every case in turn (tests/test_hostile_server.py).

A real TLS WebSocket (the `websockets` package, a trustme CA in DIR/cert.pem) on 127.0.0.1; the
client speaks as the google-genai SDK does: `setup` first, then realtimeInput. Like the service,
JSON goes out in binary frames; a case may also send raw text or raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from edge_agent.emulator.certs import make_server_context, write_authority

Frame = dict[str, Any] | str | bytes  # a dict is JSON in a binary frame; str/bytes go raw
AUDIO_MIME = "audio/pcm;rate=24000"
MEGABYTE = 1_000_000


def tone(seconds: float, rate: int = 24000) -> bytes:
    """A quiet 440 Hz tone, 16-bit little-endian PCM."""
    count = int(seconds * rate)
    return b"".join(
        int(3000 * math.sin(2 * math.pi * 440 * i / rate)).to_bytes(2, "little", signed=True)
        for i in range(count)
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CHUNK = b64(tone(0.1))  # one 100 ms answer chunk, as the service streams them


def audio(data: Any = CHUNK, mime: Any = AUDIO_MIME) -> dict[str, Any]:
    return {
        "serverContent": {
            "modelTurn": {"parts": [{"inlineData": {"mimeType": mime, "data": data}}]}
        }
    }


class Peer:
    """One connection of the daemon, as a script sees it. Sending never raises: the daemon
    closing on a case is an outcome, not a test error."""

    def __init__(self, ws: ServerConnection, number: int, server: HostileServer) -> None:
        self.ws = ws
        self.number = number
        self.server = server  # a case may take over the connections that follow its own
        self.setup: dict[str, Any] | None = None
        self.turn_ends = 0
        self.turn_ended = asyncio.Event()
        self.gone = asyncio.Event()  # the daemon closed the socket (or it died)
        self.done = asyncio.Event()  # the script is over: the handler returns and closes
        self._reader: asyncio.Task[None] | None = None

    async def read_setup(self, timeout_s: float = 15.0) -> bool:
        """The first message must be the setup; then every later one is read in the background
        (a client whose frames nobody reads would stall on flow control)."""
        try:
            async with asyncio.timeout(timeout_s):
                first = await self.ws.recv()
            message = json.loads(first)
        except (TimeoutError, ConnectionClosed, ValueError):
            self.gone.set()
            return False
        self.setup = message.get("setup") if isinstance(message, dict) else None
        self._reader = asyncio.create_task(self._read())
        return self.setup is not None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if b"activityEnd" not in (raw.encode() if isinstance(raw, str) else raw):
                    continue
                message = json.loads(raw)
                realtime = message.get("realtimeInput") or message.get("realtime_input") or {}
                if "activityEnd" in realtime:  # the SDK writes realtime_input
                    self.turn_ends += 1
                    self.turn_ended.set()
        except (ConnectionClosed, ValueError):
            pass
        finally:
            self.gone.set()

    async def send(self, *frames: Frame) -> bool:
        try:
            for frame in frames:
                if isinstance(frame, dict):
                    await self.ws.send(json.dumps(frame).encode())
                else:
                    await self.ws.send(frame)
        except ConnectionClosed:
            return False
        return True

    async def wait_gone(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.gone.wait()
        return self.gone.is_set()

    async def wait_turn_end(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.turn_ended.wait()
        return self.turn_ended.is_set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            async with asyncio.timeout(3):
                await self.ws.close(code, reason)
        self.abort()

    def abort(self) -> None:
        """An abrupt network failure: no close frame."""
        if self.ws.transport is not None:
            self.ws.transport.abort()
        self.gone.set()

    async def finish(self) -> None:
        await self.close(1000, "case over")
        self.done.set()
        if self._reader is not None:
            self._reader.cancel()


class HostileServer:
    """Hands each new connection to whoever awaits `next_peer()`; answers the REST model check
    (GET /{version}/models/{model}) as the service does for a known model."""

    def __init__(self, cert_dir: Path) -> None:
        self.cert_dir = cert_dir
        self.port = 0
        self.connections = 0
        self.arrivals: asyncio.Queue[Peer] = asyncio.Queue()
        self._server: Server | None = None
        self._peers: list[Peer] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert_path(self) -> Path:
        return self.cert_dir / "cert.pem"

    async def start(self) -> None:
        authority, context = make_server_context()
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            ssl=context,
            max_size=None,  # setups carry resumption handles of any size
            compression=None,
            ping_interval=None,
            close_timeout=2,
            process_request=self._rest,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        write_authority(authority, self.cert_dir)

    async def stop(self) -> None:
        for peer in self._peers:
            peer.abort()
            peer.done.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def next_peer(self, timeout_s: float) -> Peer | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                return await self.arrivals.get()
        return None

    def stale_peers(self) -> list[Peer]:
        """Connections that arrived and already went away unused."""
        stale: list[Peer] = []
        while not self.arrivals.empty():
            stale.append(self.arrivals.get_nowait())
        return stale

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        peer = Peer(ws, self.connections, self)
        self._peers.append(peer)
        await self.arrivals.put(peer)
        await peer.done.wait()

    def _rest(self, connection: ServerConnection, request: Request) -> Response | None:
        if (
            "/models/" not in request.path
            or "upgrade" in request.headers.get("Connection", "").lower()
        ):
            return None
        model = request.path.split("/models/", 1)[1].split("?")[0]
        body = {
            "name": f"models/{model}",
            "supportedGenerationMethods": ["bidiGenerateContent"],
        }
        response = connection.respond(200, json.dumps(body))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response


# ---- the good connection ---------------------------------------------------------------------


@dataclass
class GoodTurn:
    turn_end_seen: bool = False
    answer_sent: bool = False


async def answer_one_turn(peer: Peer, wait_turn_s: float, handle: str | None) -> GoodTurn:
    """setupComplete; on the first activityEnd a short 24 kHz answer, its transcript,
    turnComplete with sane usage, and a fresh resumption handle (1 MB: the loop of big handles
    runs through every good connection)."""
    result = GoodTurn()
    if not await peer.send({"setupComplete": {}}):
        return result
    result.turn_end_seen = await peer.wait_turn_end(wait_turn_s)
    if not result.turn_end_seen:
        return result
    answer: list[Frame] = [audio() for _ in range(4)]
    answer.append({"serverContent": {"outputTranscription": {"text": "Here is your answer."}}})
    answer.append({"serverContent": {"generationComplete": True}})
    usage = {"promptTokenCount": 40, "responseTokenCount": 10, "totalTokenCount": 50}
    answer.append({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
    result.answer_sent = await peer.send(*answer)
    if handle is not None:
        update = {"newHandle": handle, "resumable": True}
        await peer.send({"sessionResumptionUpdate": update})
    return result


# ---- the cases -------------------------------------------------------------------------------

Script = Callable[[Peer], Awaitable[None]]
LINGER_S = 0.3  # after its frames a case waits this long for the daemon to leave, then closes


@dataclass(frozen=True)
class Case:
    name: str
    play: Script


def frames(*sent: Frame | Callable[[], Frame]) -> Script:
    """setupComplete, the frames (a callable is built only when played: big ones), then close."""

    async def play(peer: Peer) -> None:
        if not await peer.send({"setupComplete": {}}):
            return
        for frame in sent:
            if not await peer.send(frame() if callable(frame) else frame):
                return
        await peer.wait_gone(LINGER_S)

    return play


def repeated(frame: Frame, count: int) -> Script:
    async def play(peer: Peer) -> None:
        if not await peer.send({"setupComplete": {}}):
            return
        for _ in range(count):
            if not await peer.send(frame):
                return
        await peer.wait_gone(LINGER_S)

    return play


def close_mid_answer(code: int, reason: str) -> Script:
    """An answer starts streaming, then the service closes with a code."""

    async def play(peer: Peer) -> None:
        if await peer.send({"setupComplete": {}}, audio(), audio()):
            await peer.close(code, reason)

    return play


async def drop_mid_answer(peer: Peer) -> None:
    if await peer.send({"setupComplete": {}}, audio(), audio()):
        peer.abort()


async def no_setup_complete(peer: Peer) -> None:
    """The setup is never answered: the daemon must give up on its own (connect timeout)."""
    await peer.wait_gone(30.0)


def instead_of_setup_complete(frame: Frame) -> Script:
    async def play(peer: Peer) -> None:
        if await peer.send(frame):
            await peer.wait_gone(LINGER_S * 2)

    return play


async def close_before_setup_complete(peer: Peer) -> None:
    await peer.close(1011, "Internal error occurred.")


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


def huge_audio_frame() -> bytes:
    """About 50 MB: one JSON frame carrying ~37 MB of PCM."""
    return json.dumps(audio(b64(bytes(37 * MEGABYTE)))).encode()


def handles_then_goaway() -> Script:
    async def play(peer: Peer) -> None:
        if not await peer.send({"setupComplete": {}}):
            return
        for number in range(20):
            handle = f"{number:02d}" + "h" * (MEGABYTE - 2)
            update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
            if not await peer.send(update):
                return
        await peer.send({"goAway": {"timeLeft": "0s"}})
        await peer.wait_gone(LINGER_S * 2)

    return play


async def handle_goaway_loop(peer: Peer) -> None:
    """25 connections in a row, each given a fresh 1 MB handle and then goAway "0s": what the
    daemon keeps per connection shows as memory growth (test_memory_does_not_grow)."""
    for number in range(25):
        if number:
            next_peer = await peer.server.next_peer(10.0)
            if next_peer is None:
                return
            peer = next_peer
            if not await peer.read_setup():
                await peer.finish()
                continue
        handle = f"loop-{number:02d}-".ljust(MEGABYTE, "h")
        update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
        await peer.send({"setupComplete": {}}, update, {"goAway": {"timeLeft": "0s"}})
        await peer.wait_gone(3.0)
        if number:
            await peer.finish()


def tool_calls(count: int) -> dict[str, Any]:
    calls = [{"id": f"call-{i}", "name": "get_time", "args": {}} for i in range(count)]
    return {"toolCall": {"functionCalls": calls}}


def usage(**fields: Any) -> dict[str, Any]:
    return {"serverContent": {"turnComplete": True}, "usageMetadata": fields}


CASES: list[Case] = [
    # valid JSON that is not an object
    Case("json_list", frames("[1,2,3]")),
    Case("json_string", frames('"hello"')),
    Case("json_number", frames("42")),
    Case("json_null", frames("null")),
    Case("json_true", frames("true")),
    Case("json_empty_object", frames("{}")),
    Case("not_json", frames("this is not JSON {")),
    # depth and size
    Case("nested_50000_objects", frames(nested(50_000))),
    Case(
        "nested_50000_lists_in_parts",
        frames('{"serverContent":{"modelTurn":{"parts":' + "[" * 50_000 + "]" * 50_000 + "}}}"),
    ),
    Case("frame_50mb", frames(huge_audio_frame)),
    Case("binary_garbage", frames(bytes(range(256)) * 4)),
    Case("binary_empty", frames(b"")),
    # error objects
    Case("error_object", frames({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})),
    Case(
        "error_object_wrong_types", frames({"error": {"code": "x", "message": [1], "details": 7}})
    ),
    Case("error_string", frames({"error": "quota exceeded"})),
    # wrong types at every level
    Case("server_content_list", frames({"serverContent": [1, 2, 3]})),
    Case("server_content_string", frames({"serverContent": "hello"})),
    Case("server_content_number", frames({"serverContent": 42})),
    Case("model_turn_string", frames({"serverContent": {"modelTurn": "speak"}})),
    Case(
        "parts_object",
        frames({"serverContent": {"modelTurn": {"parts": {"inlineData": {"data": CHUNK}}}}}),
    ),
    Case(
        "parts_items_wrong", frames({"serverContent": {"modelTurn": {"parts": ["x", 3, None, []]}}})
    ),
    Case("inline_data_number", frames(audio(12345))),
    Case("inline_data_bad_base64", frames(audio("!!!not*base64@@@"))),
    Case("inline_data_odd_length", frames(audio(b64(b"\x01\x02\x03")), audio(b64(bytes(4801))))),
    Case("inline_data_not_audio", frames(audio(b64(b"\x89PNG\r\n\x1a\n" * 100), "image/png"))),
    Case(
        "turn_complete_wrong_types",
        frames({"serverContent": {"turnComplete": "yes", "interrupted": [1]}}),
    ),
    Case(
        "transcriptions_wrong_types",
        frames({"serverContent": {"outputTranscription": {"text": 5}, "inputTranscription": "hi"}}),
    ),
    Case(
        "lone_surrogates",
        frames(
            '{"serverContent":{"modelTurn":{"parts":[{"text":"\\ud800 x"}]},'
            '"outputTranscription":{"text":"\\udfff"}}}'
        ),
    ),
    Case(
        "nulls_everywhere",
        frames(
            {
                "serverContent": None,
                "toolCall": None,
                "usageMetadata": None,
                "goAway": None,
                "sessionResumptionUpdate": None,
                "setupComplete": None,
            }
        ),
    ),
    Case("unknown_fields_only", frames({"someFutureField": {"a": 1}, "anotherOne": [1, 2]})),
    # usage numbers
    Case("usage_strings", frames(usage(promptTokenCount="many", totalTokenCount="lots"))),
    Case(
        "usage_floats",
        frames(usage(promptTokenCount=1.5, responseTokenCount=2.7, totalTokenCount=4.2)),
    ),
    Case("usage_negative", frames(usage(promptTokenCount=-999999, totalTokenCount=-999999))),
    Case(
        "usage_absurd",
        frames(
            usage(
                promptTokenCount="99999999999999999999999", totalTokenCount=99999999999999999999999
            ),
            '{"usageMetadata":{"promptTokenCount":1e400,"totalTokenCount":NaN,"responseTokenCount":Infinity}}',
        ),
    ),
    Case(
        "usage_details_wrong",
        frames(
            usage(
                promptTokensDetails={"modality": "AUDIO"},
                responseTokensDetails=[{"modality": "SMELL", "tokenCount": -5}, 7],
            )
        ),
    ),
    # tools
    Case("tool_calls_1000", frames(tool_calls(1000))),
    Case(
        "tool_calls_wrong_types",
        frames(
            {"toolCall": {"functionCalls": [{"id": 5, "name": ["x"], "args": "no"}, {}, 3]}},
            {"toolCall": {"functionCalls": {"id": "a"}}},
            {"toolCallCancellation": {"ids": "abc"}},
        ),
    ),
    # resumption and goAway
    Case("handles_1mb_x20_then_goaway", handles_then_goaway()),
    Case("handle_1mb_goaway_loop_x25", handle_goaway_loop),
    Case(
        "resumption_wrong_types",
        frames({"sessionResumptionUpdate": {"newHandle": 123, "resumable": "yes"}}),
    ),
    Case("goaway_0s", frames({"goAway": {"timeLeft": "0s"}})),
    Case("goaway_abc", frames({"goAway": {"timeLeft": "abc"}})),
    Case("goaway_minus_5s", frames({"goAway": {"timeLeft": "-5s"}})),
    Case("goaway_1e400s", frames({"goAway": {"timeLeft": "1e400s"}})),
    Case("goaway_wrong_types", frames({"goAway": {"timeLeft": 5}}, {"goAway": "soon"})),
    # floods
    Case("audio_flood_10000", repeated(audio(b64(tone(0.02))), 10_000)),
    Case("turn_complete_flood_2000", repeated({"serverContent": {"turnComplete": True}}, 2000)),
    # closes and drops
    Case("close_1011_mid_answer", close_mid_answer(1011, "Internal error occurred.")),
    Case("close_1007_mid_answer", close_mid_answer(1007, "Request contains an invalid argument.")),
    Case("close_1008_mid_answer", close_mid_answer(1008, "Policy violation.")),
    Case(
        "close_1007_key_revoked",
        close_mid_answer(1007, "API key not valid. Please pass a valid API key."),
    ),
    Case("drop_mid_answer", drop_mid_answer),
    # the setup itself
    Case("no_setup_complete", no_setup_complete),
    Case("setup_answered_with_list", instead_of_setup_complete("[1,2,3]")),
    Case(
        "setup_answered_with_error",
        instead_of_setup_complete({"error": {"code": 503, "message": "busy"}}),
    ),
    Case("close_before_setup_complete", close_before_setup_complete),
]
