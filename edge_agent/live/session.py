"""LiveSession: one Live API session that survives GoAway, drops, outages and refused resumes.

Sending never blocks the caller: messages go to an outbox. What was sent since the service last
showed it had the user's turn (model output, turnComplete) stays in a journal, and a new
connection replays it first, so no turn and no tool response is lost in a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from google import genai
from google.genai import errors, types

from edge_agent.config import Config
from edge_agent.credentials import Credential
from edge_agent.errors import UserError
from edge_agent.events import (
    Connected,
    Disconnected,
    GoAway,
    InputTranscript,
    Interrupted,
    LiveEvent,
    ModelAudio,
    ModelText,
    Offline,
    OutputTranscript,
    Reseeded,
    ResumptionUpdate,
    ToolResponseLost,
    TurnComplete,
)
from edge_agent.live.models import effective_api_version
from edge_agent.live.setup import build_live_config
from edge_agent.live.translate import events_from_message

log = logging.getLogger(__name__)

HANDLE_VALID_S = 2 * 3600  # the service keeps a handle 2 h after the session ends
HANDLE_FILE = "resumption.json"
GAP_AUDIO_LIMIT_S = 30.0  # audio kept while disconnected; older audio is dropped
HISTORY_LINES = 20  # transcript lines kept to re-seed a fresh session
STABLE_AFTER_S = 5.0  # a connection this old resets the backoff
TURN_ENDS = {"activity_end", "text", "audio_stream_end"}
KeyProvider = Callable[[], Credential]
Declarations = Callable[[], Sequence[dict[str, Any]]]


class FatalLiveError(Exception):
    """The key or the model is refused: the user must fix the config (exit 2)."""


class _Switch(Exception):
    """A planned reconnect (after goAway): resume on a new socket."""


@dataclass
class Outgoing:
    kind: str  # audio video text activity_start activity_end audio_stream_end content tool_response
    payload: Any = None

    @property
    def ends_turn(self) -> bool:
        return self.kind in TURN_ENDS or (self.kind == "content" and self.payload[1])

    @property
    def audio_seconds(self) -> float:
        return len(self.payload) / 32000 if self.kind == "audio" else 0.0


class LiveSession:
    def __init__(
        self,
        config: Config,
        on_event: Callable[[LiveEvent], None],
        key_provider: KeyProvider,
        declarations: Sequence[dict[str, Any]] | Declarations = (),
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.key_provider = key_provider
        self.declarations = declarations  # a callable is asked again before each connect
        self.state_dir = state_dir
        self.reconnects = 0
        self.connected = False
        self.connected_at = 0.0
        self.handle: str | None = self._load_handle()
        self.handles_used: list[str] = []  # every handle a resume was attempted with
        self._outbox: deque[Outgoing] = deque()
        self._journal: list[Outgoing] = []
        self._journal_turn_end = 0
        self._journal_audio_s = 0.0
        self._history: deque[tuple[str, str]] = deque(maxlen=HISTORY_LINES)
        self._wake = asyncio.Event()
        self._switch = asyncio.Event()
        self._goaway_pending = False
        self._model_busy = False
        self._user_turn_open = False
        self._ever_connected = False
        self._reseed = False  # the next fresh session gets the recent transcript
        self._reseed_now = False  # ... and is opened without a backoff
        self._closing = False
        self._disconnected_at: float | None = None
        self._goaway_timer: asyncio.TimerHandle | None = None

    # ---- sending (never blocks) ------------------------------------------------------------

    def send_audio(self, pcm16k: bytes) -> None:
        self._queue(Outgoing("audio", pcm16k))

    def send_video(self, jpeg: bytes) -> None:
        if self.connected:  # a stale frame is worth nothing after a gap
            self._queue(Outgoing("video", jpeg))

    def send_text(self, text: str) -> None:
        self._queue(Outgoing("text", text))

    def activity_start(self) -> None:
        self._user_turn_open = True
        self._queue(Outgoing("activity_start"))

    def activity_end(self) -> None:
        self._user_turn_open = False
        self._queue(Outgoing("activity_end"))

    def audio_stream_end(self) -> None:
        self._queue(Outgoing("audio_stream_end"))

    def send_client_content(self, turns: list[tuple[str, str]], turn_complete: bool) -> None:
        self._queue(Outgoing("content", (turns, turn_complete)))

    def send_tool_response(
        self, call_id: str, name: str, response: dict[str, Any], scheduling: str | None = None
    ) -> None:
        self._queue(Outgoing("tool_response", (call_id, name, response, scheduling)))

    def _queue(self, item: Outgoing) -> None:
        self._outbox.append(item)
        if not self.connected:
            self._bound_gap_audio()
        self._wake.set()

    def _bound_gap_audio(self) -> None:
        buffered = sum(item.audio_seconds for item in self._outbox)
        dropped = 0.0
        while buffered > GAP_AUDIO_LIMIT_S:
            oldest = next(i for i, item in enumerate(self._outbox) if item.kind == "audio")
            seconds = self._outbox[oldest].audio_seconds
            del self._outbox[oldest]
            buffered -= seconds
            dropped += seconds
        if dropped:
            log.warning("offline too long: dropped %.1f s of the oldest buffered audio", dropped)

    # ---- the connection loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Connects, serves, reconnects; returns after close(). Raises FatalLiveError."""
        self._closing = False
        self._switch.clear()
        try:
            await self._run()
        finally:
            self.connected = False

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            cause = ""
            try:
                await self._connect_and_serve()
                continue
            except _Switch:
                cause = "goAway"
            except errors.APIError as exc:
                cause = f"{exc.code} {exc.message or exc.status or ''}".strip()
                self._handle_api_error(exc)
            except TimeoutError:
                cause = "no setupComplete within the connect timeout"
            except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
                cause = f"network: {exc}"  # ssl.SSLError is an OSError: a clock before NTP
            except ValueError as exc:
                cause = f"malformed server message: {str(exc)[:120]}"
            except UserError as exc:  # the token command failed
                if not self._ever_connected:
                    raise FatalLiveError(str(exc)) from None
                cause = str(exc)
                log.error("%s", exc)
            if self._closing:
                break
            self._lost(cause)
            if cause == "goAway" or self._reseed_now:
                self._reseed_now = False
                continue
            if self.connected_at and time.monotonic() - self.connected_at > STABLE_AFTER_S:
                attempt = 0
            delay = self._backoff(attempt)
            attempt += 1
            if cause.startswith("network") or attempt >= 3:
                self.on_event(Offline(cause, delay))
            log.info("reconnecting in %.1f s (%s)", delay, cause)
            await asyncio.sleep(delay)

    def _handle_api_error(self, exc: errors.APIError) -> None:
        text = f"{exc.message or ''} {exc.details or ''}"
        code = exc.code
        if (code == 1007 and "API key" in text) or (code == 1008 and "API Key" in text):
            if not self._ever_connected:
                raise FatalLiveError(
                    "the Live API rejected the API key: set a valid GEMINI_API_KEY"
                ) from None
            log.error("the API key was rejected (%s); retrying with backoff", text.strip())
        elif code == 1008 and "not found" in text and not self._ever_connected:
            raise FatalLiveError(
                f"the Live API does not know model {self.config.live.model!r}: {text.strip()}"
            ) from None
        elif code == 1007:
            log.warning("the service refused the session (%s): starting a fresh one", text.strip())
            self._forget_handle()
            self._reseed, self._reseed_now = True, True

    def _backoff(self, attempt: int) -> float:
        cap = self.config.live.max_backoff_s
        if attempt == 0:
            return random.uniform(0.05, 0.25)  # a single drop: come back at once
        return float(min(cap, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))

    def _lost(self, cause: str) -> None:
        if self.connected:
            self.connected = False
            self._disconnected_at = time.monotonic()
            self.on_event(Disconnected(cause))
        self._model_busy = False
        self._goaway_pending = False
        if self._goaway_timer is not None:
            self._goaway_timer.cancel()
        self._switch.clear()

    async def _connect_and_serve(self) -> None:
        loop = asyncio.get_running_loop()
        credential = await loop.run_in_executor(None, self.key_provider)
        client = self._client(credential)
        handle = self.handle if self.config.live.session_resumption else None
        if handle:
            self.handles_used.append(handle)
        declared = self.declarations() if callable(self.declarations) else self.declarations
        live_config = build_live_config(self.config, list(declared), resume_handle=handle)
        connection = client.aio.live.connect(model=self.config.live.model, config=live_config)
        async with asyncio.timeout(self.config.live.connect_timeout_s):
            session = await connection.__aenter__()
        try:
            self._on_connected(resumed=bool(handle))
            await self._serve(session)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):  # servers can go silent: never wait on them
                    await connection.__aexit__(None, None, None)

    def _client(self, credential: Credential) -> genai.Client:
        live = self.config.live
        args: dict[str, Any] = {
            "ping_interval": live.ping_interval_s or None,
            "ping_timeout": live.ping_timeout_s,
            "close_timeout": 1.0,
            "compression": "deflate" if live.compression else None,
        }
        if live.ca_file:
            args["ssl"] = ssl.create_default_context(cafile=live.ca_file)
        version = "v1alpha" if credential.is_ephemeral_token else effective_api_version(self.config)
        return genai.Client(
            api_key=credential.value,
            http_options=types.HttpOptions(
                base_url=live.endpoint or None, api_version=version, async_client_args=args
            ),
        )

    def _on_connected(self, resumed: bool) -> None:
        now = time.monotonic()
        gap = now - self._disconnected_at if self._disconnected_at is not None else 0.0
        if self._ever_connected:
            self.reconnects += 1
        self.connected, self.connected_at = True, now
        replay = self._journal
        if not resumed:
            replay = self._drop_dead_tool_responses(replay)
            if self._reseed and self._history:
                replay = [Outgoing("content", (list(self._history), False)), *replay]
                self.on_event(Reseeded(len(self._history)))
                log.info("re-seeded the fresh session with %d transcript lines", len(self._history))
        self._reseed = False
        self._outbox.extendleft(reversed(replay))
        self._journal, self._journal_turn_end, self._journal_audio_s = [], 0, 0.0
        if self._ever_connected:
            kind = "resumed" if resumed else "fresh session"
            log.info("reconnected (%s) after %.2f s", kind, gap)
        self._ever_connected = True
        self.on_event(Connected(resumed, self.reconnects, gap))
        self._wake.set()

    def _drop_dead_tool_responses(self, replay: list[Outgoing]) -> list[Outgoing]:
        """A fresh session has no open calls: responses for the old session's calls are lost."""
        dead = [i for i in [*replay, *self._outbox] if i.kind == "tool_response"]
        for item in dead:
            call_id, name = item.payload[0], item.payload[1]
            log.warning(
                "tool response for %s (%s) dropped: its call ended with the session", name, call_id
            )
            self.on_event(ToolResponseLost(call_id, name))
        self._outbox = deque(i for i in self._outbox if i.kind != "tool_response")
        return [i for i in replay if i.kind != "tool_response"]

    async def _serve(self, session: Any) -> None:
        sender = asyncio.create_task(self._send_loop(session))
        receiver = asyncio.create_task(self._receive_loop(session))
        switch: asyncio.Task[Any] = asyncio.create_task(self._switch.wait())
        try:
            done, _ = await asyncio.wait(
                [sender, receiver, switch], return_when=asyncio.FIRST_COMPLETED
            )
            for task in (receiver, sender):
                if task in done:
                    task.result()  # re-raises the connection's error
            if self._closing:
                return
            raise _Switch()
        finally:
            for task in (sender, receiver, switch):
                task.cancel()
            await asyncio.gather(sender, receiver, switch, return_exceptions=True)

    async def _send_loop(self, session: Any) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            item = self._outbox[0]
            await self._send(session, item)
            self._outbox.popleft()
            if item.kind != "video":
                self._journal.append(item)
                self._journal_audio_s += item.audio_seconds
                if item.ends_turn:
                    self._journal_turn_end = len(self._journal)
                self._bound_journal()

    def _bound_journal(self) -> None:
        """Streamed audio with no turn end (server VAD) keeps only its last seconds."""
        while self._journal_audio_s > GAP_AUDIO_LIMIT_S:
            oldest = next(i for i, item in enumerate(self._journal) if item.kind == "audio")
            self._journal_audio_s -= self._journal.pop(oldest).audio_seconds
            if oldest < self._journal_turn_end:
                self._journal_turn_end -= 1

    async def _send(self, session: Any, item: Outgoing) -> None:
        kind, payload = item.kind, item.payload
        if kind == "audio":
            blob = types.Blob(data=payload, mime_type="audio/pcm;rate=16000")
            await session.send_realtime_input(audio=blob)
        elif kind == "video":
            await session.send_realtime_input(
                video=types.Blob(data=payload, mime_type="image/jpeg")
            )
        elif kind == "text":
            await session.send_realtime_input(text=payload)
        elif kind == "activity_start":
            await session.send_realtime_input(activity_start=types.ActivityStart())
        elif kind == "activity_end":
            await session.send_realtime_input(activity_end=types.ActivityEnd())
        elif kind == "audio_stream_end":
            await session.send_realtime_input(audio_stream_end=True)
        elif kind == "content":
            turns, complete = payload
            contents = [
                types.Content(role=role, parts=[types.Part(text=text)]) for role, text in turns
            ]
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

    async def _receive_loop(self, session: Any) -> None:
        while True:
            async for message in session.receive():
                for event in events_from_message(message):
                    self._note(event)
                    self.on_event(event)

    def _note(self, event: LiveEvent) -> None:
        """Bookkeeping before the agent sees the event."""
        if isinstance(event, TurnComplete | Interrupted):
            # the turn is answered (or cut by the user): a reconnect need not replay it. Until
            # then it is replayed, since the service drops an answer its connection lost.
            del self._journal[: self._journal_turn_end]
            self._journal_turn_end = 0
            self._journal_audio_s = sum(item.audio_seconds for item in self._journal)
        if isinstance(event, ModelAudio | ModelText):
            self._model_busy = True
        elif isinstance(event, TurnComplete | Interrupted):
            self._model_busy = False
            self._maybe_switch()
        if isinstance(event, ResumptionUpdate) and event.resumable and event.handle:
            self.handle = event.handle
            self._save_handle()
        elif isinstance(event, GoAway):
            self._on_goaway(event.time_left_s)
        elif isinstance(event, InputTranscript):
            self._remember("user", event.text)
        elif isinstance(event, OutputTranscript | ModelText):
            self._remember("model", event.text)

    def _remember(self, role: str, text: str) -> None:
        if self._history and self._history[-1][0] == role:
            self._history[-1] = (role, f"{self._history[-1][1]} {text}".strip())
        else:
            self._history.append((role, text.strip()))

    def _on_goaway(self, time_left_s: float) -> None:
        margin = min(5.0, time_left_s * 0.2)
        log.info("goAway: %.0f s left; switching at the next idle moment", time_left_s)
        self._goaway_pending = True
        loop = asyncio.get_running_loop()
        self._goaway_timer = loop.call_later(max(0.0, time_left_s - margin), self._switch.set)
        self._maybe_switch()

    def _maybe_switch(self) -> None:
        if self._goaway_pending and not self._model_busy and not self._user_turn_open:
            self._switch.set()

    # ---- the persisted handle ----------------------------------------------------------------

    def _handle_path(self) -> Path | None:
        return self.state_dir / HANDLE_FILE if self.state_dir is not None else None

    def _load_handle(self) -> str | None:
        path = self._handle_path()
        if path is None or not self.config.live.session_resumption:
            return None
        try:
            saved = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        fresh = time.time() - float(saved.get("saved_at", 0)) < HANDLE_VALID_S
        if fresh and saved.get("model") == self.config.live.model and saved.get("handle"):
            return str(saved["handle"])
        return None

    def _save_handle(self) -> None:
        path = self._handle_path()
        if path is None or self.handle is None:
            return
        record = {"handle": self.handle, "model": self.config.live.model, "saved_at": time.time()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record), "utf-8")
            temporary.replace(path)
        except OSError as exc:
            log.warning("cannot keep the resumption handle in %s: %s", path, exc)

    def _forget_handle(self) -> None:
        self.handle = None
        path = self._handle_path()
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def forget_session(self) -> None:
        """The next connection starts a new session (a conversation too old to continue)."""
        self._forget_handle()
        self._history.clear()

    def stop(self) -> None:
        """Ends run(); what was not sent belongs to the conversation that ended."""
        self._closing = True
        self._switch.set()
        self._outbox.clear()
        self._journal, self._journal_turn_end, self._journal_audio_s = [], 0, 0.0
        self._user_turn_open = False

    async def close(self) -> None:
        self.stop()
