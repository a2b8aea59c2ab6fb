"""Turns and answers on one connection: the scripted or deterministic answer to each user
turn, streamed as the service streams it, with tool calls, transcripts, usage and resumption
updates; a user who starts speaking cuts the answer."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from edge_agent.emulator import brain, reply, rules, voice
from edge_agent.emulator.channel import Channel, Host
from edge_agent.emulator.scenario import ToolCallStep, Turn
from edge_agent.emulator.state import (
    AUDIO_TOKENS_PER_SECOND,
    TEXT_CHARS_PER_TOKEN,
    VIDEO_TOKENS,
    VIDEO_TOKENS_DEFAULT,
    OpenCall,
)


@dataclass
class UserTurn:
    audio_seconds: float = 0.0
    text: list[str] = field(default_factory=list)
    video_frames: int = 0

    @property
    def empty(self) -> bool:
        return not self.audio_seconds and not self.text and not self.video_frames


class Answering(Channel):
    """A Channel that answers: the queue of turns to answer and the answer being given."""

    def __init__(
        self, emulator: Host, ws: web.WebSocketResponse, number: int, request: web.Request
    ) -> None:
        super().__init__(emulator, ws, number, request)
        self.answering: asyncio.Task[None] | None = None
        self.answers: asyncio.Queue[tuple[UserTurn | None, Turn | None]] = asyncio.Queue()
        self.loose_frames = 0  # images sent outside any turn since the last one
        self.prompt_told = False  # the answer's prompt usage went before it (3.1)

    async def _user_started(self) -> None:
        handling = self.setup.get("realtimeInputConfig", {}).get("activityHandling")
        if handling == "NO_INTERRUPTION":
            return
        waiting = self._drop_waiting_answers()
        if self.answering is not None and not self.answering.done():
            self.answering.cancel()
            await self.send({"serverContent": {"interrupted": True}})
            await self._cancel_open_calls()
        elif waiting:  # a turn ended and its answer had not begun: it never will
            await self.send({"serverContent": {"interrupted": True}})

    def _drop_waiting_answers(self) -> int:
        """Answers to user turns still queued: the new activity interrupts them too."""
        kept, dropped = [], 0
        while not self.answers.empty():
            item = self.answers.get_nowait()
            if item[0] is not None:
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self.answers.put_nowait(item)
        return dropped

    async def _cancel_open_calls(self) -> None:
        assert self.session is not None
        ids = [i for i, call in self.session.open_calls.items() if call.blocking]
        if ids:
            for call_id in ids:
                self.session.open_calls.pop(call_id)
                self.session.cancelled_calls.add(call_id)
            await self.send({"toolCallCancellation": {"ids": ids}})

    def _queue_answer(self, turn: UserTurn) -> None:
        if self._turn_coverage() != "TURN_INCLUDES_ONLY_ACTIVITY":
            turn.video_frames += self.loose_frames  # frames sent between turns count too
        self.loose_frames = 0
        self.answers.put_nowait((turn, None))

    def _turn_coverage(self) -> str:
        assert self.model is not None
        chosen = self.setup.get("realtimeInputConfig", {}).get("turnCoverage")
        return str(chosen or self.model.turn_coverage)

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
        said = spec.input_transcript or " ".join(t for t in user_turn.text if t.strip())
        heard = f"({user_turn.audio_seconds:.1f} s of speech)" if user_turn.audio_seconds else ""
        user_text = said or heard
        scripted = bool(spec.transcript or spec.wav or spec.tool_call)
        answers = scripted or bool(user_text) or bool(user_turn.video_frames)
        self.prompt_told = False
        assert self.model is not None
        if self.model.usage_before_answer and answers:
            await self._prompt_usage()
        if options.latency_ms:
            await asyncio.sleep(options.latency_ms / 1000)
        if "inputAudioTranscription" in self.setup and user_turn.audio_seconds:
            await self._transcribe_input(said.split() or [heard])
        if spec.close is not None and spec.close.before_reply:
            await self.close(spec.close.code, spec.close.reason)
            return
        if not answers:
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

    async def _prompt_usage(self) -> None:
        """3.1: once the turn's input is in, a serverContent with nothing but usageMetadata (the
        prompt's tokens), before the answer's first model turn. The turnComplete's usage then
        carries the response's only, so the sums come out as on the other models (chosen)."""
        assert self.session is not None
        text_mode = "TEXT" in self.setup.get("generationConfig", {}).get("responseModalities", [])
        self.prompt_told = True
        await self.send({"serverContent": {}, "usageMetadata": self._usage(0, text_mode)})

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
        if (read_out := brain.read_aloud(said)) is not None:
            answer.text = read_out
            return answer
        chosen = brain.pick_function(said, brain.declarations(self.setup))
        sum_code = brain.arithmetic(said) if brain.has_tool(self.setup, "codeExecution") else None
        if chosen is not None:
            step = ToolCallStep(
                name=chosen.name,
                args=brain.arguments(chosen.schema, said, chosen.name),
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
        prompt, self.prompt_told = not self.prompt_told, False
        usage = self._usage(response_tokens, text_mode, thought_tokens, prompt)
        await self.send({"serverContent": done, "usageMetadata": usage})
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
        self,
        response_tokens: int,
        text_mode: bool,
        thought_tokens: int = 0,
        prompt_too: bool = True,
    ) -> dict[str, Any]:
        """The prompt's tokens (unless told already) and the response's."""
        assert self.session is not None
        prompt = self.session.usage.prompt if prompt_too else {}
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
