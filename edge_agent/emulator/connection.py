"""One client WebSocket: setup, realtime input, turns, answers, tool calls, interruptions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from edge_agent.emulator import brain, reply, rules, voice
from edge_agent.emulator.listener import Activity, DetectorSettings, SpeechDetector, audio_rate
from edge_agent.emulator.options import EmulatorOptions
from edge_agent.emulator.scenario import Scenario, ToolCallStep, Turn
from edge_agent.emulator.state import (
    AUDIO_TOKENS_PER_SECOND,
    TEXT_CHARS_PER_TOKEN,
    VIDEO_TOKENS,
    VIDEO_TOKENS_DEFAULT,
    OpenCall,
    Registry,
    Session,
)
from edge_agent.emulator.wire import WireError, close_reason, parse_client_message
from edge_agent.live.models import ModelTraits

DEADLINE = "Deadline expired before operation could complete."
CONNECTION_LIFETIME_S = 600.0  # the service's connection limit, on the scaled clock
GOAWAY_NOTICE_S = 60.0  # goAway comes this long before it
STREAM_STOP_S = 1.0  # wall time without audio after speech that ends a turn (as audioStreamEnd)


class Host(Protocol):
    """What a connection asks of the server that accepted it (emulator/server.py's Emulator)."""

    options: EmulatorOptions
    scenario: Scenario
    registry: Registry
    parsed_setups: list[dict[str, Any]]
    video_frames: list[bytes]

    def model_traits(self, model: str) -> ModelTraits | None: ...

    def check_credentials(
        self, request: web.Request, constrained: bool
    ) -> tuple[int, str] | None: ...

    def apply_token_constraints(
        self, request: web.Request, setup: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def send(
        self, number: int, ws: web.WebSocketResponse, message: dict[str, Any]
    ) -> None: ...

    def log_in(self, number: int, message: dict[str, Any]) -> None: ...

    def log_close(self, number: int, code: int, reason: str, by: str = "server") -> None: ...

    def log_event(self, number: int, event: str) -> None: ...


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
        self, emulator: Host, ws: web.WebSocketResponse, number: int, request: web.Request
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
        self.held_text: list[str] = []  # realtime text outside an activity (manual detection)
        self.saw_realtime_input = False
        self.consumed = 0  # client messages after setup: lastConsumedClientMessageIndex
        self.stream_watch: asyncio.TimerHandle | None = None
        self.answering: asyncio.Task[None] | None = None
        self.answers: asyncio.Queue[tuple[UserTurn | None, Turn | None]] = asyncio.Queue()
        self.silent = False
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.handler: asyncio.Task[Any] | None = None  # the HTTP handler serving this socket

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
            for task in [*self.tasks, self.answering, self.stream_watch]:
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
        self._spawn(self._lifetime_watch())
        async for frame in self.ws:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            message = self._parse(frame.data)
            if not self.silent:
                await self._handle(message)
                self.consumed += 1

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
        refused = rules.setup_problem(model, model_traits, setup)
        if refused is not None:
            raise WireError(refused)
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

    def cancel(self) -> None:
        """The emulator stops: the handler ends now (serve() then cancels what it started)."""
        if self.handler is not None:
            self.handler.cancel()

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

    async def _lifetime_watch(self) -> None:
        """A connection lives about 10 minutes (scaled clock): goAway a minute before the end.
        `--goaway-every S` sends it S wall seconds into each connection instead."""
        options = self.emulator.options
        if options.goaway_every > 0:
            await asyncio.sleep(options.goaway_every)
            await self.go_away(options.goaway_time_left_s)
            return
        await asyncio.sleep((CONNECTION_LIFETIME_S - GOAWAY_NOTICE_S) / options.clock_scale)
        await self.go_away(GOAWAY_NOTICE_S)

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
        self.saw_realtime_input = True
        if "activityStart" in data:
            self.in_activity = True
            self.turn = UserTurn(text=self.held_text)
            self.held_text = []
            await self._user_started()
        blobs = [data[k] for k in ("audio", "video") if k in data] + data.get("mediaChunks", [])
        for blob in blobs:
            await self._media(blob)
        if "text" in data:
            await self._realtime_text(data["text"])
        ended = "audioStreamEnd" in data and self.detector is not None
        if ended and self.detector is not None and self.detector.stream_ended() is Activity.END:
            self._end_turn()
        if "activityEnd" in data and self.in_activity:
            self.in_activity = False
            self._end_turn()

    async def _realtime_text(self, text: str) -> None:
        """With automatic detection a text is a turn; without it, the client's activityStart
        and activityEnd bracket the turn: text outside an activity waits for the next one."""
        if self.detector is not None:
            await self._user_started()
            self._queue_answer(UserTurn(text=[text]))
        elif self.in_activity:
            self.turn.text.append(text)
        else:
            self.held_text.append(text)

    def _watch_stream(self) -> None:
        """A stream that stops after speech ends the turn, as audioStreamEnd would."""
        if self.stream_watch is not None:
            self.stream_watch.cancel()
        loop = asyncio.get_running_loop()
        self.stream_watch = loop.call_later(STREAM_STOP_S, self._stream_stopped)

    def _stream_stopped(self) -> None:
        self.stream_watch = None
        if self.closed or self.detector is None or not self.detector.speaking:
            return
        if self.detector.stream_ended() is Activity.END:
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
        if self.detector.speaking:
            self._watch_stream()

    async def _client_content(self, data: dict[str, Any]) -> None:
        assert self.session is not None and self.model is not None
        if self.saw_realtime_input and not self.model.client_content_after_realtime:
            raise WireError(
                "Request contains an invalid argument: client_content is only accepted before "
                "the first realtime_input on this model; send text with realtime_input."
            )
        texts = []
        for turn in data.get("turns", []):
            parts = turn.get("parts", [])
            text = " ".join(p["text"] for p in parts if p.get("text"))
            if turn.get("role", "user") == "user" and text:
                texts.append(text)
            self.session.history.append({"role": turn.get("role", "user"), "text": text})
            self.session.usage.add_prompt("TEXT", len(text) // TEXT_CHARS_PER_TOKEN)
            images = sum(
                1 for p in parts if p.get("inlineData", {}).get("mimeType", "").startswith("image/")
            )
            self.session.usage.add_prompt("IMAGE", images * self._image_tokens())
        if data.get("turnComplete"):
            await self._user_started()
            self._queue_answer(UserTurn(text=texts[-1:] or [""]))

    async def _tool_response(self, responses: list[dict[str, Any]]) -> None:
        assert self.session is not None
        for response in responses:
            call_id = response.get("id", "")
            if call_id in self.session.cancelled_calls:
                continue
            if any(
                r.get("id") == call_id and not r.get("willContinue")
                for r in self.session.tool_responses
            ):
                # a client cannot know whether a response sent just before a drop arrived,
                # so a repeat is idempotent rather than an error
                self.emulator.log_event(self.number, f"duplicate tool response {call_id}")
                continue
            call = self.session.open_calls.get(call_id)
            if call is None:
                raise WireError(f"Function response id {call_id!r} matches no open function call.")
            self.session.tool_responses.append(response)
            if not response.get("willContinue"):
                del self.session.open_calls[call_id]
            if call.response is not None and not call.response.done():
                call.response.set_result(response)
            elif call.blocking:  # its turn's answer was lost with a connection: give it now
                turn = call.turn
                if not turn.transcript:
                    turn = Turn(transcript=brain.describe_response(call.name, response))
                self.answers.put_nowait((None, turn))
            else:
                await self._non_blocking_result(call, response)

    async def _non_blocking_result(self, call: OpenCall, response: dict[str, Any]) -> None:
        """WHEN_IDLE (the default) answers after the current answer, INTERRUPT cuts it (3.8
        waits while the user speaks), SILENT only adds the result; an empty response that
        ends a willContinue stream says nothing."""
        scheduling = response.get("scheduling", "WHEN_IDLE")
        body = response.get("response") or {}
        if scheduling == "SILENT" or not any(body.values()):
            return
        turn = Turn(transcript=brain.describe_response(call.name, response))
        user_speaking = self.in_activity or (self.detector is not None and self.detector.speaking)
        busy = self.answering is not None and not self.answering.done()
        if scheduling == "INTERRUPT" and busy and not user_speaking:
            assert self.answering is not None
            self.answering.cancel()
            await self.send({"serverContent": {"interrupted": True}})
        self.answers.put_nowait((None, turn))

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
        said = spec.input_transcript or " ".join(t for t in user_turn.text if t.strip())
        heard = f"({user_turn.audio_seconds:.1f} s of speech)" if user_turn.audio_seconds else ""
        user_text = said or heard
        if "inputAudioTranscription" in self.setup and user_turn.audio_seconds:
            await self._transcribe_input(said.split() or [heard])
        if spec.close is not None and spec.close.before_reply:
            await self.close(spec.close.code, spec.close.reason)
            return
        scripted = bool(spec.transcript or spec.wav or spec.tool_call)
        if not scripted and not user_text and not user_turn.video_frames:
            await self._need_more_input()
            return
        if spec.tool_call is not None:
            if await self._call_tool(spec.tool_call, spec) is None:
                return
            answer = reply.Answer(spec.transcript)
        elif scripted:
            answer = reply.Answer(spec.transcript)
        else:
            found = await self._think(spec, said)
            if found is None:
                return
            answer = found
        await self._reply(spec, user_text, answer)

    async def _transcribe_input(self, words: list[str]) -> None:
        """Known words stream a few at a time; unknown speech is one placeholder."""
        groups = [words[i : i + 3] for i in range(0, len(words), 3)]
        for index, group in enumerate(groups):
            piece: dict[str, Any] = {"text": " ".join(group) + ("" if group is groups[-1] else " ")}
            if index == len(groups) - 1:
                piece["finished"] = True
            await self.send({"serverContent": {"inputTranscription": piece}})

    async def _need_more_input(self) -> None:
        """A turn with nothing in it: the model waits for the user (NEED_MORE_INPUT)."""
        await self.send(
            {
                "serverContent": {
                    "waitingForInput": True,
                    "turnComplete": True,
                    "turnCompleteReason": "NEED_MORE_INPUT",
                },
                "usageMetadata": self._usage(0, False),
            }
        )
        await self._resumption_update(resumable=True)

    async def _think(self, spec: Turn, said: str) -> reply.Answer | None:
        """The deterministic model: a declared function the words call, code for a sum,
        a search; else the default answer. None when a call ended the turn unanswered."""
        assert self.session is not None and self.model is not None
        answer = reply.Answer(default_answer(self.session.turn_count))
        thinking = self.setup.get("generationConfig", {}).get("thinkingConfig", {})
        if thinking.get("includeThoughts"):
            answer.thought = f"**Answering the user** The user said: {said or 'something'}."
        if not said:
            return answer
        chosen = brain.pick_function(said, brain.declarations(self.setup))
        sum_code = brain.arithmetic(said) if brain.has_tool(self.setup, "codeExecution") else None
        if chosen is not None:
            step = ToolCallStep(
                name=chosen.name,
                args=brain.arguments(chosen.schema, said),
                non_blocking=not rules.blocking(self.model, chosen.behavior),
            )
            response = await self._call_tool(step, spec)
            if response is None:
                return None
            answer.text = (
                brain.describe_response(chosen.name, response)
                if response
                else f"I have asked {chosen.name.replace('_', ' ')}; the result will follow."
            )
        elif sum_code is not None:
            code, output = sum_code
            answer.code_parts = [
                {"executableCode": {"language": "PYTHON", "code": code}},
                {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": output + "\n"}},
            ]
            answer.text = f"The result is {output}."
        elif brain.has_tool(self.setup, "urlContext") and brain.urls(said):
            found = brain.urls(said)
            answer.url_context = {
                "urlMetadata": [
                    {"retrievedUrl": url, "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"}
                    for url in found
                ]
            }
            answer.text = f"I read {len(found)} page{'s' if len(found) > 1 else ''} for you."
        elif brain.has_tool(self.setup, "googleSearch"):
            answer.grounding = search_grounding(said)
            topic = said.rstrip("?.!")
            answer.text = f"I searched the web for {topic}; the top result is from example.com."
        return answer

    async def _call_tool(self, call: ToolCallStep, spec: Turn) -> dict[str, Any] | None:
        """Sends a toolCall. Returns the response of a blocking call ({} for a non-blocking
        one), or None when the answer must not follow now."""
        session = self.session
        assert session is not None
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
            return None
        if future is None:
            return {}
        try:
            return await future
        finally:
            if call_id in session.open_calls:
                session.open_calls[call_id].response = None

    async def _reply(self, spec: Turn, user_text: str, answer: reply.Answer | None = None) -> None:
        session = self.session
        assert session is not None and self.model is not None
        text_mode = "TEXT" in self.setup.get("generationConfig", {}).get("responseModalities", [])
        one_part = self.model.one_part_per_message
        number = session.turn_count
        if answer is None:
            answer = reply.Answer(spec.transcript or default_answer(number))
        transcript = answer.text
        if self.model.interaction_status:
            await self.send({"serverContent": {"interactionStatus": "IN_PROGRESS"}})
        for content in reply.preamble(answer, one_part):
            await self.send({"serverContent": content})
        if text_mode:
            steps = reply.text_steps(transcript)
        else:
            pcm = await self._reply_audio(spec, transcript, number)
            transcribe = "outputAudioTranscription" in self.setup
            steps = reply.audio_steps(pcm, transcript, transcribe, one_part)
        pace = self.emulator.options.pace
        played = 0.0
        for step in steps:
            if spec.interrupt_after_s is not None and played >= spec.interrupt_after_s:
                await self.send({"serverContent": {"interrupted": True}})
                await self.send({"serverContent": {"turnComplete": True}})
                return
            for content in step.messages:
                await self.send({"serverContent": content})
            played += step.seconds
            await asyncio.sleep(step.seconds / pace)
        response_tokens = (
            len(transcript) // TEXT_CHARS_PER_TOKEN
            if text_mode
            else round(played * AUDIO_TOKENS_PER_SECOND)
        )
        thought_tokens = len(answer.thought) // TEXT_CHARS_PER_TOKEN
        session.history += [
            {"role": "user", "text": user_text},
            {"role": "model", "text": transcript},
        ]
        await self.send({"serverContent": {"generationComplete": True}})
        done: dict[str, Any] = {"turnComplete": True}
        if self.model.interaction_status:
            done["interactionStatus"] = "IDLE"
        await self.send(
            {
                "serverContent": done,
                "usageMetadata": self._usage(response_tokens, text_mode, thought_tokens),
            }
        )
        session.usage.add_prompt("TEXT" if text_mode else "AUDIO", response_tokens)
        await self._resumption_update(resumable=True)
        if spec.go_away is not None:
            self._spawn(self.go_away(spec.go_away.time_left_s))
        if spec.close is not None and not spec.close.before_reply:
            await self.close(spec.close.code, spec.close.reason)

    async def _reply_audio(self, spec: Turn, transcript: str, number: int) -> bytes:
        """A scenario's WAV; else espeak-ng speaking the answer (off the event loop), unless
        the scenario asks for a length (reply_seconds), which the synthetic voice keeps."""
        if spec.wav:
            return voice.read_wav_as_24k(Path(spec.wav))
        if "reply_seconds" not in spec.model_fields_set:
            loop = asyncio.get_running_loop()
            spoken = await loop.run_in_executor(None, voice.speak, transcript)
            if spoken:
                return spoken
        return voice.synthesize_speech(spec.reply_seconds, seed=number)

    def _image_tokens(self) -> int:
        resolution = self.setup.get("generationConfig", {}).get("mediaResolution", "")
        return VIDEO_TOKENS.get(resolution, VIDEO_TOKENS_DEFAULT)

    def _count_input(self, turn: UserTurn) -> None:
        assert self.session is not None
        usage = self.session.usage
        usage.add_prompt("AUDIO", round(turn.audio_seconds * AUDIO_TOKENS_PER_SECOND))
        usage.add_prompt("TEXT", sum(len(t) for t in turn.text) // TEXT_CHARS_PER_TOKEN + 1)
        usage.add_prompt("IMAGE", turn.video_frames * self._image_tokens())

    def _usage(
        self, response_tokens: int, text_mode: bool, thought_tokens: int = 0
    ) -> dict[str, Any]:
        assert self.session is not None
        prompt = self.session.usage.prompt
        prompt_total = sum(prompt.values())
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_total,
            "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_total + response_tokens + thought_tokens,
            "promptTokensDetails": [
                {"modality": modality, "tokenCount": count} for modality, count in prompt.items()
            ],
            "responseTokensDetails": [
                {"modality": "TEXT" if text_mode else "AUDIO", "tokenCount": response_tokens}
            ],
        }
        if thought_tokens:
            usage["thoughtsTokenCount"] = thought_tokens
        return usage

    async def _resumption_update(self, resumable: bool) -> None:
        if "sessionResumption" not in self.setup or self.session is None:
            return
        if not resumable:
            await self.send({"sessionResumptionUpdate": {"resumable": False}})
            return
        handle = self.emulator.registry.new_handle(self.session)
        update = {
            "newHandle": handle,
            "resumable": True,
            "lastConsumedClientMessageIndex": str(self.consumed),
        }
        await self.send({"sessionResumptionUpdate": update})


def default_answer(number: int) -> str:
    return f"This is the emulator's answer number {number}."


def search_grounding(query: str) -> dict[str, Any]:
    """groundingMetadata for one web search (the emulator has no web: one example source)."""
    words = "+".join(brain.words(query)) or "search"
    uri = f"https://example.com/search?q={words}"
    return {
        "webSearchQueries": [query],
        "groundingChunks": [{"web": {"uri": uri, "title": "example.com"}}],
        "searchEntryPoint": {"renderedContent": f'<a href="{uri}">{query}</a>'},
    }
