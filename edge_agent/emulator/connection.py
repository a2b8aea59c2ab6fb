"""One client WebSocket: setup, realtime input, turns, answers, tool calls, interruptions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from edge_agent.emulator import voice
from edge_agent.emulator.listener import Activity, DetectorSettings, SpeechDetector, audio_rate
from edge_agent.emulator.scenario import Turn
from edge_agent.emulator.state import (
    AUDIO_TOKENS_PER_SECOND,
    TEXT_CHARS_PER_TOKEN,
    VIDEO_TOKENS,
    VIDEO_TOKENS_DEFAULT,
    OpenCall,
    Session,
)
from edge_agent.emulator.wire import WireError, close_reason, parse_client_message
from edge_agent.live.models import ModelTraits

if TYPE_CHECKING:
    from edge_agent.emulator.server import Emulator

DEADLINE = "Deadline expired before operation could complete."
INVALID_KEY = "API key not valid. Please pass a valid API key."
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


@dataclass
class UserTurn:
    audio_seconds: float = 0.0
    text: list[str] = field(default_factory=list)
    video_frames: int = 0

    @property
    def empty(self) -> bool:
        return not self.audio_seconds and not self.text and not self.video_frames


class Connection:
    def __init__(
        self, emulator: Emulator, ws: web.WebSocketResponse, number: int, request: web.Request
    ) -> None:
        self.emulator = emulator
        self.ws = ws
        self.number = number
        self.request = request
        self.version = request.match_info["version"]
        self.constrained = bool(request.match_info.get("constrained"))
        self.session: Session | None = None
        self.setup: dict[str, Any] = {}
        self.model: ModelTraits | None = None
        self.detector: SpeechDetector | None = None
        self.turn = UserTurn()
        self.in_activity = False
        self.answering: asyncio.Task[None] | None = None
        self.answers: asyncio.Queue[tuple[UserTurn | None, Turn | None]] = asyncio.Queue()
        self.silent = False
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            await self._serve()
        except WireError as exc:
            await self.close(exc.code, str(exc))
        finally:
            if not self.closed:  # the client closed (or the network did)
                self.emulator.log_close(self.number, self.ws.close_code or 1006, "", by="client")
            self.closed = True  # set first: answers cancelled below know the socket died
            for task in [*self.tasks, self.answering]:
                if task is not None:
                    task.cancel()
            if self.session is not None and self.session.open_connection == self.number:
                self.session.open_connection = None

    async def _serve(self) -> None:
        first = await self.ws.receive()
        if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        message = self._parse(first.data)
        if "setup" not in message:
            raise WireError("Request contains an invalid argument: setup must come first.")
        await self._start_session(message["setup"])
        if self.closed:
            return
        self._spawn(self._answer_worker())
        self._spawn(self._limit_watch())
        async for frame in self.ws:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            message = self._parse(frame.data)
            if not self.silent:
                await self._handle(message)

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        try:
            message = parse_client_message(raw, self.version)
        except WireError as exc:
            self.emulator.log_in(self.number, {"unparsed": str(raw)[:200], "error": str(exc)})
            raise
        self.emulator.log_in(self.number, message)
        return message

    async def _start_session(self, setup: dict[str, Any]) -> None:
        problem = self.emulator.check_credentials(self.request, self.constrained)
        if problem is not None:
            await self.close(*problem)
            return
        if self.constrained:
            setup = self.emulator.apply_token_constraints(self.request, setup)
        model = setup.get("model", "")
        if not model:
            raise WireError("Request contains an invalid argument: setup.model is required.")
        model_traits = self.emulator.model_traits(model)
        if model_traits is None:
            name = "models/" + model.removeprefix("models/")
            await self.close(
                1008,
                f"{name} is not found for API version {self.version}, or is not supported "
                "for bidiGenerateContent.",
            )
            return
        self.model = model_traits
        modalities = setup.get("generationConfig", {}).get("responseModalities", [])
        if len(modalities) > 1:
            raise WireError("Request contains an invalid argument.")
        handle = setup.get("sessionResumption", {}).get("handle")
        if handle:
            session = self.emulator.registry.sessions_by_handle.get(handle)
            if session is None:
                raise WireError("Session resumption handle is invalid or expired.")
            if session.open_connection is not None:
                await self.close(1011, "Internal error occurred.")  # the old socket is still open
                return
            session.setup = setup
        else:
            session = self.emulator.registry.new_session(setup)
        session.open_connection = self.number
        self.session, self.setup = session, setup
        self.emulator.parsed_setups.append(setup)
        detection = setup.get("realtimeInputConfig", {}).get("automaticActivityDetection", {})
        if not detection.get("disabled", False):
            self.detector = SpeechDetector(
                DetectorSettings(
                    silence_ms=detection.get("silenceDurationMs") or 500,
                    prefix_ms=detection.get("prefixPaddingMs") or 20,
                    low_start_sensitivity=detection.get("startOfSpeechSensitivity")
                    == "START_SENSITIVITY_LOW",
                )
            )
        if self.emulator.options.no_setup_complete:
            return
        if self.emulator.options.latency_ms:  # a slow service is slow to set up too
            await asyncio.sleep(self.emulator.options.latency_ms / 1000)
        await self.send({"setupComplete": {"sessionId": session.session_id}})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed or self.silent or self.ws.closed:
            return
        await self.emulator.send(self.number, self.ws, message)

    async def close(self, code: int, reason: str) -> None:
        already, self.closed = self.closed, True
        if not already and not self.ws.closed:
            self.emulator.log_close(self.number, code, reason)
            await self.ws.close(code=code, message=close_reason(reason).encode())

    def drop(self) -> None:
        """An abrupt network failure: no close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def go_away(self, time_left_s: float) -> None:
        scale = self.emulator.options.clock_scale
        await self.send({"goAway": {"timeLeft": f"{time_left_s:g}s"}})
        if self.emulator.options.silent_after_goaway:
            self.silent = True
            return
        await asyncio.sleep(time_left_s / scale)
        await self.close(1011, DEADLINE)

    async def _limit_watch(self) -> None:
        """Without context compression the service ends sessions at 15 min (2 min with video)."""
        if "contextWindowCompression" in self.setup:
            return
        assert self.session is not None
        scale = self.emulator.options.clock_scale
        while not self.closed:
            await asyncio.sleep(0.05)
            limit = 120.0 if self.session.saw_video else 900.0
            age = (time.monotonic() - self.session.started) * scale
            if age >= limit:
                await self.close(1011, DEADLINE)

    # ---- client messages -------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        if "setup" in message:
            raise WireError("Request contains an invalid argument: setup was already sent.")
        if "realtimeInput" in message:
            await self._realtime_input(message["realtimeInput"])
        elif "clientContent" in message:
            await self._client_content(message["clientContent"])
        elif "toolResponse" in message:
            await self._tool_response(message["toolResponse"].get("functionResponses", []))

    async def _realtime_input(self, data: dict[str, Any]) -> None:
        manual = self.detector is None
        if ("activityStart" in data or "activityEnd" in data) and not manual:
            raise WireError(
                "Explicit activity control is not supported when automatic activity detection "
                "is enabled."
            )
        if "audioStreamEnd" in data and manual:
            raise WireError("audio_stream_end is only valid with automatic activity detection.")
        if "activityStart" in data:
            self.in_activity = True
            self.turn = UserTurn()
            await self._user_started()
        blobs = [data[k] for k in ("audio", "video") if k in data] + data.get("mediaChunks", [])
        for blob in blobs:
            await self._media(blob)
        if "text" in data:
            await self._user_started()
            self._queue_answer(UserTurn(text=[data["text"]]))
        ended = "audioStreamEnd" in data and self.detector is not None
        if ended and self.detector is not None and self.detector.stream_ended() is Activity.END:
            self._end_turn()
        if "activityEnd" in data and self.in_activity:
            self.in_activity = False
            self._end_turn()

    async def _media(self, blob: dict[str, Any]) -> None:
        mime = blob.get("mimeType", "")
        payload: bytes = blob.get("data", b"")
        if mime.startswith("image/") or mime.startswith("video/"):
            assert self.session is not None
            self.session.saw_video = True
            self.emulator.video_frames.append(payload)
            self.turn.video_frames += 1
            return
        if not mime.startswith("audio/pcm"):
            raise WireError(f"Unsupported mime type: {mime}")
        rate = audio_rate(mime)
        if self.detector is None:
            if self.in_activity:
                self.turn.audio_seconds += len(payload) / 2 / rate
            return
        was_speaking = self.detector.speaking
        if was_speaking:
            self.turn.audio_seconds += len(payload) / 2 / rate
        for event in self.detector.feed(payload, rate):
            if event is Activity.START:
                self.turn = UserTurn(audio_seconds=len(payload) / 2 / rate)
                await self._user_started()
            else:
                self._end_turn()

    async def _client_content(self, data: dict[str, Any]) -> None:
        texts = [
            part.get("text", "")
            for turn in data.get("turns", [])
            for part in turn.get("parts", [])
            if part.get("text")
        ]
        assert self.session is not None
        for turn in data.get("turns", []):
            text = " ".join(p.get("text", "") for p in turn.get("parts", []) if p.get("text"))
            self.session.history.append({"role": turn.get("role", "user"), "text": text})
            self.session.usage.add_prompt("TEXT", len(text) // TEXT_CHARS_PER_TOKEN)
        if data.get("turnComplete"):
            await self._user_started()
            self._queue_answer(UserTurn(text=texts or [""]))

    async def _tool_response(self, responses: list[dict[str, Any]]) -> None:
        assert self.session is not None
        for response in responses:
            call_id = response.get("id", "")
            if call_id in self.session.cancelled_calls:
                continue
            if any(r.get("id") == call_id for r in self.session.tool_responses):
                # a client cannot know whether a response sent just before a drop arrived,
                # so a repeat is idempotent rather than an error
                self.emulator.log_event(self.number, f"duplicate tool response {call_id}")
                continue
            call = self.session.open_calls.pop(call_id, None)
            if call is None:
                raise WireError(f"Function response id {call_id!r} matches no open function call.")
            self.session.tool_responses.append(response)
            if call.response is not None and not call.response.done():
                call.response.set_result(response)
            elif call.blocking or response.get("scheduling") != "SILENT":
                self.answers.put_nowait(
                    (
                        None,
                        call.turn
                        if call.blocking
                        else Turn(reply_seconds=1.0, transcript=f"The {call.name} result is in."),
                    )
                )

    # ---- turns and answers -----------------------------------------------------------------

    async def _user_started(self) -> None:
        handling = self.setup.get("realtimeInputConfig", {}).get("activityHandling")
        if handling == "NO_INTERRUPTION":
            return
        if self.answering is not None and not self.answering.done():
            self.answering.cancel()
            await self.send({"serverContent": {"interrupted": True}})
            await self._cancel_open_calls()

    async def _cancel_open_calls(self) -> None:
        assert self.session is not None
        ids = [i for i, call in self.session.open_calls.items() if call.blocking]
        if ids:
            for call_id in ids:
                self.session.open_calls.pop(call_id)
                self.session.cancelled_calls.add(call_id)
            await self.send({"toolCallCancellation": {"ids": ids}})

    def _end_turn(self) -> None:
        turn, self.turn = self.turn, UserTurn()
        self._queue_answer(turn)

    def _queue_answer(self, turn: UserTurn) -> None:
        self.answers.put_nowait((turn, None))

    async def _answer_worker(self) -> None:
        while True:
            user_turn, continuation = await self.answers.get()
            self.answering = asyncio.ensure_future(self._answer(user_turn, continuation))
            with contextlib.suppress(asyncio.CancelledError):
                await self.answering

    async def _answer(self, user_turn: UserTurn | None, continuation: Turn | None) -> None:
        session = self.session
        assert session is not None
        if continuation is not None:
            await self._reply(continuation, user_text="")
            return
        assert user_turn is not None
        calls_before = set(session.open_calls)
        session.turn_count += 1
        try:
            await self._answer_turn(user_turn, self.emulator.scenario.turn(session.turn_count - 1))
        except asyncio.CancelledError:
            if self.closed:  # the connection died mid-answer: the turn never happened
                session.turn_count -= 1
                for call_id in set(session.open_calls) - calls_before:
                    session.open_calls.pop(call_id)
                    session.cancelled_calls.add(call_id)
            raise

    async def _answer_turn(self, user_turn: UserTurn, spec: Turn) -> None:
        options = self.emulator.options
        self._count_input(user_turn)
        await self._resumption_update(resumable=False)
        if options.latency_ms:
            await asyncio.sleep(options.latency_ms / 1000)
        user_text = (
            spec.input_transcript
            or " ".join(user_turn.text)
            or (f"({user_turn.audio_seconds:.1f} s of speech)")
        )
        if "inputAudioTranscription" in self.setup and user_turn.audio_seconds:
            transcription = {"text": user_text, "finished": True}
            await self.send({"serverContent": {"inputTranscription": transcription}})
        if spec.close is not None and spec.close.before_reply:
            await self.close(spec.close.code, spec.close.reason)
            return
        if spec.tool_call is not None and not await self._call_tool(spec):
            return
        await self._reply(spec, user_text)

    async def _call_tool(self, spec: Turn) -> bool:
        """Sends the scenario's toolCall; False when the answer must not follow now."""
        session = self.session
        assert session is not None and spec.tool_call is not None
        call = spec.tool_call
        session.call_count += 1
        call_id = f"function-call-{session.call_count}"
        blocking = not call.non_blocking
        future: asyncio.Future[dict[str, Any]] | None = (
            asyncio.get_running_loop().create_future() if blocking else None
        )
        session.open_calls[call_id] = OpenCall(call.name, blocking, spec, future)
        await self.send(
            {"toolCall": {"functionCalls": [{"id": call_id, "name": call.name, "args": call.args}]}}
        )
        if call.cancel_after_ms is not None:
            await asyncio.sleep(call.cancel_after_ms / 1000)
            session.open_calls.pop(call_id, None)
            session.cancelled_calls.add(call_id)
            await self.send({"toolCallCancellation": {"ids": [call_id]}})
            await self.send({"serverContent": {"turnComplete": True}})  # the turn ends unanswered
            return False
        if future is not None:
            try:
                await future
            finally:
                if call_id in session.open_calls:
                    session.open_calls[call_id].response = None
        return True

    async def _reply(self, spec: Turn, user_text: str) -> None:
        session = self.session
        assert session is not None
        text_mode = "TEXT" in self.setup.get("generationConfig", {}).get("responseModalities", [])
        number = session.turn_count
        transcript = spec.transcript or f"This is the emulator's answer number {number}."
        pcm = b"" if text_mode else self._reply_audio(spec, session.turn_count)
        pieces = voice.chunks(pcm) if pcm else [b""]
        words = transcript.split()
        per_piece = max(1, -(-len(words) // len(pieces)))
        pace = self.emulator.options.pace
        played = 0.0
        for index, piece in enumerate(pieces):
            if spec.interrupt_after_s is not None and played >= spec.interrupt_after_s:
                await self.send({"serverContent": {"interrupted": True}})
                await self.send({"serverContent": {"turnComplete": True}})
                return
            content: dict[str, Any] = {}
            text = " ".join(words[index * per_piece : (index + 1) * per_piece])
            if text_mode:
                content["modelTurn"] = {"role": "model", "parts": [{"text": transcript}]}
            else:
                content["modelTurn"] = {
                    "role": "model",
                    "parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": piece}}],
                }
                if text and "outputAudioTranscription" in self.setup:
                    content["outputTranscription"] = {"text": text}
            await self.send({"serverContent": content})
            seconds = len(piece) / 2 / voice.OUTPUT_RATE
            played += seconds
            await asyncio.sleep(seconds / pace)
        response_tokens = (
            len(transcript) // TEXT_CHARS_PER_TOKEN
            if text_mode
            else round(played * AUDIO_TOKENS_PER_SECOND)
        )
        session.history += [
            {"role": "user", "text": user_text},
            {"role": "model", "text": transcript},
        ]
        await self.send({"serverContent": {"generationComplete": True}})
        await self.send(
            {
                "serverContent": {"turnComplete": True},
                "usageMetadata": self._usage(response_tokens, text_mode),
            }
        )
        session.usage.add_prompt("TEXT" if text_mode else "AUDIO", response_tokens)
        await self._resumption_update(resumable=True)
        if spec.go_away is not None:
            self._spawn(self.go_away(spec.go_away.time_left_s))
        if spec.close is not None and not spec.close.before_reply:
            await self.close(spec.close.code, spec.close.reason)

    def _reply_audio(self, spec: Turn, number: int) -> bytes:
        if spec.wav:
            return voice.read_wav_as_24k(Path(spec.wav))
        return voice.synthesize_speech(spec.reply_seconds, seed=number)

    def _count_input(self, turn: UserTurn) -> None:
        assert self.session is not None
        usage = self.session.usage
        resolution = self.setup.get("generationConfig", {}).get("mediaResolution", "")
        usage.add_prompt("AUDIO", round(turn.audio_seconds * AUDIO_TOKENS_PER_SECOND))
        usage.add_prompt("TEXT", sum(len(t) for t in turn.text) // TEXT_CHARS_PER_TOKEN + 1)
        usage.add_prompt(
            "IMAGE", turn.video_frames * VIDEO_TOKENS.get(resolution, VIDEO_TOKENS_DEFAULT)
        )

    def _usage(self, response_tokens: int, text_mode: bool) -> dict[str, Any]:
        assert self.session is not None
        prompt = self.session.usage.prompt
        prompt_total = sum(prompt.values())
        return {
            "promptTokenCount": prompt_total,
            "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_total + response_tokens,
            "promptTokensDetails": [
                {"modality": modality, "tokenCount": count} for modality, count in prompt.items()
            ],
            "responseTokensDetails": [
                {"modality": "TEXT" if text_mode else "AUDIO", "tokenCount": response_tokens}
            ],
        }

    async def _resumption_update(self, resumable: bool) -> None:
        if "sessionResumption" not in self.setup or self.session is None:
            return
        if not resumable:
            await self.send({"sessionResumptionUpdate": {"resumable": False}})
            return
        handle = self.emulator.registry.new_handle(self.session)
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})
