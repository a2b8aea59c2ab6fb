"""Client messages after setup on one connection: realtime input (audio, video, text and
activity marks, with the service's own activity detection when it is on), clientContent and
toolResponse, each checked as the service checks it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from edge_agent.emulator import brain
from edge_agent.emulator.answers import Answering, UserTurn
from edge_agent.emulator.channel import Host
from edge_agent.emulator.listener import Activity, SpeechDetector, audio_rate
from edge_agent.emulator.scenario import Turn
from edge_agent.emulator.state import TEXT_CHARS_PER_TOKEN, OpenCall
from edge_agent.emulator.wire import WireError

STREAM_STOP_S = 1.0  # wall time without audio after speech that ends a turn (as audioStreamEnd)


class ClientInput(Answering):
    """An Answering channel that takes the client's messages and makes user turns of them."""

    def __init__(
        self, emulator: Host, ws: web.WebSocketResponse, number: int, request: web.Request
    ) -> None:
        super().__init__(emulator, ws, number, request)
        self.detector: SpeechDetector | None = None  # set at setup unless detection is off
        self.turn = UserTurn()
        self.in_activity = False
        self.held_text: list[str] = []  # realtime text outside an activity (manual detection)
        self.saw_realtime_input = False
        self.history_seeded = False  # 3.1: the initial history ended (turnComplete)
        self.stream_watch: asyncio.TimerHandle | None = None

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
            speaking = self.detector is not None and self.detector.speaking
            if self.in_activity or speaking:
                self.turn.video_frames += 1
            else:
                self.loose_frames += 1
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
        history_only = self.model.client_content_history_only
        seeding = self.setup.get("historyConfig", {}).get("initialHistoryInClientContent")
        if history_only and (not seeding or self.history_seeded or self.saw_realtime_input):
            raise WireError(  # 3.1: clientContent seeds the initial history, nothing else
                "Request contains an invalid argument: client_content is only accepted as the "
                "initial history (historyConfig.initialHistoryInClientContent) on this model."
            )
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
        if data.get("turnComplete") and history_only:
            self.history_seeded = True  # the history is in; no model call
        elif data.get("turnComplete"):
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

    def _end_turn(self) -> None:
        turn, self.turn = self.turn, UserTurn()
        self._queue_answer(turn)
