"""The conductor: routes mic frames, button presses and Live events; owns the agent's state.

It does no I/O itself. The driver (the daemon or simulate) calls on_mic_frame() for every mic
frame, on_button() for presses, and on_live_event() for what LiveSession reports; the Agent
talks back through the LiveSession and the Speaker it was given.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent.audio.echo import EchoGuard
from edge_agent.audio.playback import Speaker
from edge_agent.audio.vad import SpeechGate, TurnAudio, TurnEnd, TurnStart
from edge_agent.config import Config
from edge_agent.conversation import Conversation
from edge_agent.events import (
    AgentError,
    AgentEvent,
    BadServerMessage,
    CodeExecution,
    Connected,
    ConnectionChanged,
    ConnectionLost,
    ConversationChanged,
    Disconnected,
    GoAway,
    Grounding,
    InputTranscript,
    Interrupted,
    KeyRefused,
    LiveEvent,
    ModelAudio,
    ModelText,
    ModelThought,
    MutedChanged,
    Offline,
    Online,
    OutputTranscript,
    Reseeded,
    ServerMessageDropped,
    StateChanged,
    TokensUsed,
    ToolCall,
    ToolCallCancellation,
    ToolResponseLost,
    TranscriptDelta,
    TurnComplete,
    TurnLost,
    TurnSummary,
    Usage,
    WaitingForInput,
)
from edge_agent.tools.runner import ToolRunner

if TYPE_CHECKING:
    from edge_agent.camera import Camera  # numpy: only when a camera is configured

log = logging.getLogger(__name__)

DOUBLE_PRESS_S = 0.5
TURNS_KEPT = 1000  # turn records kept for summaries; older ones are dropped
TRANSCRIPT_CHARS = 4000  # per turn and side
OFFLINE_CHIME_EVERY_S = 60.0
MODEL_OUTPUT = (ModelAudio, ModelText, ModelThought, OutputTranscript, ToolCall)


class State(Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    MUTED = "muted"
    OFFLINE = "offline"
    ERROR = "error"


class Uplink(Protocol):
    """What the Agent needs from a LiveSession."""

    def send_audio(self, pcm16k: bytes) -> None: ...
    def send_text(self, text: str, turn: int = 0) -> None: ...
    def activity_start(self) -> None: ...
    def activity_end(self, turn: int = 0) -> None: ...
    def audio_stream_end(self, turn: int = 0) -> None: ...
    def send_tool_response(
        self, call_id: str, name: str, response: dict[str, Any], scheduling: str | None = None
    ) -> None: ...
    def reconnect(self, cause: str) -> None: ...


@dataclass
class TurnPart:
    start_s: float
    end_s: float | None = None


@dataclass
class TurnRecord:
    """One question: one part, or more when the person carried on after a pause (or past
    max_turn_s) before the answer was done."""

    number: int
    start_s: float
    end_s: float | None = None
    reply_received_s: float | None = None
    first_sample_s: float | None = None
    interrupted: bool = False
    input_transcript: str = ""
    output_transcript: str = ""
    prompt_tokens: int = 0
    response_tokens: int = 0
    sources: list[str] = field(default_factory=list)  # grounding: searches, pages, URLs read
    code_results: list[str] = field(default_factory=list)  # service-side code execution output
    complete: bool = False
    logged: bool = False
    parts: list[TurnPart] = field(default_factory=list)
    earlier_answer_cut: bool = False  # an answer to its first part(s) was cut when it resumed

    @property
    def first_audio_ms(self) -> float | None:
        if self.first_sample_s is None or self.end_s is None:
            return None
        return round((self.first_sample_s - self.end_s) * 1000, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3) if self.end_s is not None else None,
            "first_audio_ms": self.first_audio_ms,
            "interrupted": self.interrupted or self.earlier_answer_cut,
            "input_transcript": self.input_transcript.strip(),
            "output_transcript": self.output_transcript.strip(),
            "parts": [
                {"start_s": round(part.start_s, 3), "end_s": _rounded(part.end_s)}
                for part in self.parts
            ],
        }


@dataclass
class Tokens:
    prompt: int = 0
    response: int = 0
    total: int = 0


class Agent:
    def __init__(
        self,
        config: Config,
        uplink: Uplink,
        speaker: Speaker,
        clock: Callable[[], float],
        conversation: Conversation,
        tools: ToolRunner,
        camera: Camera | None = None,
    ) -> None:
        self.config = config
        self.uplink = uplink
        self.speaker = speaker
        self.clock = clock
        self.mode = config.turns.mode
        # server_vad: audioStreamEnd ends the service's turn at once, so it waits for the
        # service's own silence_duration_ms (a shorter pause must not split the turn)
        server_silence = config.turns.silence_duration_ms if self.mode == "server_vad" else None
        self.gate = SpeechGate(config.vad, hangover_ms=server_silence)
        self.echo = EchoGuard(
            config.audio.echo, speaker, config.audio.echo_tail_ms, config.vad.frame_ms
        )
        self.text_replies = config.live.response_modality == "text"
        self.conversation = conversation
        self.tools = tools
        self.camera = camera
        self.muted = False
        self.state = State.IDLE
        self.listeners: list[Callable[[AgentEvent], None]] = []  # the one stream out
        tools.listeners.append(self._emit)
        conversation.listeners.append(
            lambda is_open, reason: self._emit(ConversationChanged(is_open, reason))
        )
        self.turns: deque[TurnRecord] = deque(maxlen=TURNS_KEPT)
        self.turn_count = 0
        self.tokens = Tokens()
        self.errors: list[str] = []
        self.reconnects = 0
        self.session_started_s: float | None = None
        self._frame_s = config.vad.frame_ms / 1000
        self._input_s = 0.0  # input timeline: frames seen so far
        self._button_held = False
        self._pressed_at = -10.0
        self._released_at = -10.0
        self._turn_ignored = False  # the gate heard speech that opens nothing (button mode)
        self._awaiting_reply = False  # a turn ended, its answer has not completed
        self._unanswered: deque[TurnRecord] = deque(maxlen=TURNS_KEPT)
        self._last_sign_of_life = 0.0  # the last model output (or turn end) while awaiting
        self._model_streaming = False
        self._stale_audio = False  # the cut answer's audio in flight: not played
        self._connecting = True  # a conversation is open and its session is not up yet
        self._offline = False  # the service cannot be reached (an outage, not a connect)
        self._key_refused = False
        self._called = False  # woken (wake word or press): listening before any speech
        self._offline_chimed_at = -OFFLINE_CHIME_EVERY_S
        self._reply_turn: TurnRecord | None = None  # the turn the current answer belongs to
        self._open_turn: TurnRecord | None = None

    # ---- commands (for the capabilities beside the Agent: wake word, page, event stream) ----

    def start(self) -> None:
        if self.conversation.always:
            self.open_conversation("always on")

    def open_conversation(self, reason: str) -> bool:
        """False when the daily budget refuses it."""
        if self.conversation.is_open:
            return True
        if not self.conversation.open(reason):
            return False
        self._connecting = True  # until the session is up
        self._update_state()
        return True

    def close_conversation(self, reason: str) -> None:
        self._called = False
        turn, self._open_turn = self._open_turn, None
        if turn is not None and len(turn.parts) > 1:
            turn.parts.pop()  # a part the conversation closed on: the turn is what was sent
            turn.end_s = turn.parts[-1].end_s
        elif turn is not None:
            self.turns.pop()
        self.barge_in()
        self.conversation.close(reason)
        self._update_state()

    def send_text(self, text: str) -> bool:
        """A typed question, answered like a spoken one; opens a conversation if none is open."""
        text = text.strip()
        if not text or not self.open_conversation("text"):
            return False
        self.barge_in()
        now = self._input_s
        self._start_turn(now)
        self._emit_transcript("user", text)
        number = self.turn_count
        if self.mode == "server_vad":
            self.uplink.send_text(text, number)
        else:  # activity detection is off: the activity brackets the text
            self.uplink.activity_start()
            self.uplink.send_text(text)
            self.uplink.activity_end(number)
        self.conversation.activity()
        self._end_turn(now)
        self._update_state()
        return True

    def set_muted(self, muted: bool) -> None:
        if muted == self.muted:
            return
        self.muted = muted
        log.info("microphone %s", "muted" if muted else "unmuted")
        self._play_chime("done" if muted else "listening")
        self._emit(MutedChanged(muted))
        self._update_state()

    def barge_in(self) -> bool:
        """The user talks over the answer: silence it now, do not wait for the service. True
        when there was an answer to cut."""
        if self.speaker.speaking or self._model_streaming:
            self.speaker.flush()
            if self._reply_turn is not None:
                self._reply_turn.interrupted = True
            # what the service sent before it heard of the cut is still on its way: dropped
            # until it says the answer was interrupted (or done)
            self._stale_audio = self._model_streaming
            self._model_streaming = False
            log.info("barge-in: answer cut")
            return True
        return False

    def wake(self, source: str) -> None:
        """The wake word (or a press): cut any answer and open a conversation. Speech the gate
        had heard start without opening a turn (the wake word itself) is dropped there: the
        speech that follows opens the turn, so nothing said before this moment is sent, and a
        wake word followed by silence sends no empty turn."""
        self.barge_in()
        if not self.open_conversation(source):
            return
        self._called = True  # the lights say "listening" now, not when speech opens a turn
        if self.gate.in_turn and self._open_turn is None:
            self.gate.force_end()
            self._turn_ignored = False
        self.gate.forget()  # its look-back must not reach the wake word either
        self._update_state()

    # ---- inputs ----------------------------------------------------------------------------

    def on_mic_frame(self, frame: bytes) -> None:
        self._input_s += self._frame_s
        verdict = self.echo.check(bytes(len(frame)) if self.muted else frame)
        if self.mode == "push_to_talk":
            if self._button_held and self.conversation.is_open:
                self.uplink.send_audio(verdict.frame)
        else:
            for event in self.gate.feed(verdict.frame, verdict.suppressed):
                self._gate_event(event)
            if self.mode == "server_vad" and self.conversation.is_open:
                silence = bytes(len(frame)) if verdict.suppressed else verdict.frame
                self.uplink.send_audio(silence)
        if self.camera is not None:
            self.camera.update_window(self._open_turn is not None, self.conversation.is_open)
            self.camera.tick()
        self._poll_speaker()
        self._check_reply_timeout()
        if self.conversation.is_open:
            self.conversation.tick(busy=self.busy or self._model_streaming)
        self._update_state()

    def on_button(self, pressed: bool) -> None:
        """A press opens a conversation (and, in push-to-talk, a turn); a double press ends it;
        a long press (not in push-to-talk) mutes or unmutes the microphone."""
        now = self._input_s
        if pressed and not self._button_held:
            self._button_held = True
            double = now - self._released_at < DOUBLE_PRESS_S and self.conversation.is_open
            self._pressed_at = now
            if double:
                self._double_press()
            elif self.mode == "push_to_talk":
                self._ptt_press()
            elif not self.conversation.is_open:
                self.open_conversation("button")
            else:
                self.barge_in()  # in vad mode the button is a manual override
        elif not pressed and self._button_held:
            self._button_held = False
            self._released_at = now
            if self._open_turn is not None and self.mode == "push_to_talk":
                self.uplink.activity_end(self._open_turn.number)
                self._end_turn(now)
            elif self.mode != "push_to_talk" and now - self._pressed_at >= self._long_press_s:
                self.set_muted(not self.muted)
        self._update_state()

    @property
    def _long_press_s(self) -> float:
        return self.config.gpio.long_press_s

    def _ptt_press(self) -> None:
        was_open = self.conversation.is_open
        if not self.open_conversation("button"):
            return
        if was_open:
            self._play_chime("listening")
        self.barge_in()
        self._start_turn(self._input_s)
        self.uplink.activity_start()

    def _double_press(self) -> None:
        self.close_conversation("double press")


    def _gate_event(self, event: TurnStart | TurnAudio | TurnEnd) -> None:
        if isinstance(event, TurnStart):
            opens = self.conversation.config.start == "speech" or self.conversation.is_open
            self._turn_ignored = not (opens and self.open_conversation("speech"))
            if self._turn_ignored:
                return
            answer_cut = self.barge_in()
            last = self.turns[-1] if self.turns else None
            if (event.resumed or event.continued) and self._resumable(last):
                assert last is not None
                self._resume_turn(last, event.speech_start_s, answer_cut)
            else:
                self._start_turn(event.speech_start_s)
            self.conversation.activity()
            if self.mode == "vad":
                self.uplink.activity_start()
                if event.preroll:  # empty when a turn is continued past max_turn_s
                    self.uplink.send_audio(event.preroll)
        elif self._turn_ignored:
            return
        elif isinstance(event, TurnAudio):
            if self.mode == "vad":
                self.uplink.send_audio(event.pcm)
        else:
            number = self._open_turn.number if self._open_turn is not None else 0
            if self.mode == "vad":
                self.uplink.activity_end(number)
            else:
                self.uplink.audio_stream_end(number)
            self.conversation.activity()
            self._end_turn(event.speech_end_s)

    def _play_chime(self, name: str) -> None:
        self.conversation.chime(name)

    def _start_turn(self, start_s: float) -> None:
        self._called = False
        cut = self._reply_turn
        if cut is not None and cut.interrupted and not cut.logged:
            cut.complete = True  # its answer was cut for this turn: its outcome is known
            self._maybe_log_turn(cut)
        self.turn_count += 1
        self._open_turn = TurnRecord(self.turn_count, start_s=start_s)
        self._open_turn.parts.append(TurnPart(start_s))
        self.turns.append(self._open_turn)

    def _resumable(self, turn: TurnRecord | None) -> bool:
        """The last turn may take more speech while its answer is not done (nor logged)."""
        return (
            turn is not None
            and self._open_turn is None
            and turn is self._reply_turn
            and not turn.logged
            and turn.parts[-1].end_s is not None
        )

    def _resume_turn(self, turn: TurnRecord, start_s: float, answer_cut: bool) -> None:
        """The person carried on (after a pause, or past max_turn_s): the same turn takes the
        new part, and the answer to come is the one to the whole."""
        self._called = False
        turn.earlier_answer_cut = turn.earlier_answer_cut or answer_cut
        turn.interrupted = False
        turn.reply_received_s = turn.first_sample_s = None
        turn.complete = False
        turn.parts.append(TurnPart(start_s))
        if turn in self._unanswered:
            self._unanswered.remove(turn)
        self._awaiting_reply = bool(self._unanswered)
        self._open_turn = turn

    def _check_reply_timeout(self) -> None:
        """Counted only while connected and no tool call runs; a new user turn does not reset
        it. When it fires the session tries a new connection, which replays the turns that are
        still fresh and reports the older ones lost."""
        if not self._awaiting_reply or self._connecting or self._offline:
            return
        now = self.clock()
        if self.tools.running:
            self._last_sign_of_life = now
            return
        limit = self.config.live.reply_timeout_s
        if now - self._last_sign_of_life >= limit:
            log.info("no sign of an answer for %g s: trying a new connection", limit)
            self._last_sign_of_life = now
            self._model_streaming = False
            self.uplink.reconnect("no answer")

    def _end_turn(self, end_s: float) -> None:
        turn = self._open_turn
        if turn is None:
            return
        turn.end_s = turn.parts[-1].end_s = end_s
        self._open_turn = None
        if not self._awaiting_reply:
            self._last_sign_of_life = self.clock()
        self._awaiting_reply = True
        self._unanswered.append(turn)
        self._reply_turn = turn
        if self._offline and self.clock() - self._offline_chimed_at >= OFFLINE_CHIME_EVERY_S:
            self._offline_chimed_at = self.clock()
            self._play_chime("offline")

    # ---- Live events -----------------------------------------------------------------------

    def on_live_event(self, event: LiveEvent) -> None:
        if isinstance(event, MODEL_OUTPUT):
            self._last_sign_of_life = self.clock()
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
        self._update_state()

    def _on_ModelAudio(self, event: ModelAudio) -> None:
        if self._stale_audio:
            return
        turn = self._reply_turn
        if turn is not None and turn.reply_received_s is None:
            turn.reply_received_s = self.clock()
        self._model_streaming = True
        self.conversation.activity()
        if not self.text_replies:
            self.speaker.play(event.pcm)

    def _on_ModelText(self, event: ModelText) -> None:
        turn = self._reply_turn
        if turn is not None:
            if turn.reply_received_s is None:
                turn.reply_received_s = self.clock()
            if self.text_replies:
                turn.output_transcript = _capped(turn.output_transcript + event.text)
                self._emit(TranscriptDelta("agent", event.text, turn.number))
        log.info("model: %s", event.text)

    def _on_ModelThought(self, event: ModelThought) -> None:
        log.debug("thought: %s", event.text)

    def _on_InputTranscript(self, event: InputTranscript) -> None:
        target = self._reply_turn or self._open_turn
        if target is not None:
            target.input_transcript = _capped(target.input_transcript + event.text)
            self._emit(TranscriptDelta("user", event.text, target.number))
        log.debug("user said: %s", event.text)

    def _on_OutputTranscript(self, event: OutputTranscript) -> None:
        if self._reply_turn is not None:
            self._reply_turn.output_transcript = _capped(
                f"{self._reply_turn.output_transcript}{event.text} "
            )
            self._emit(TranscriptDelta("agent", event.text, self._reply_turn.number))

    def _on_Interrupted(self, event: Interrupted) -> None:
        self._stale_audio = False
        if self.speaker.speaking or self._model_streaming:  # also after turnComplete
            self.speaker.flush()
            if self._reply_turn is not None:
                self._reply_turn.interrupted = True
        self._model_streaming = False

    def _on_TurnComplete(self, event: TurnComplete) -> None:
        """An answer, or the model's choice of silence: either way the turn is answered."""
        if event.reason and event.reason != "TURN_COMPLETE_REASON_UNSPECIFIED":
            log.info("turn complete: %s", event.reason)
        self._model_streaming = self._stale_audio = False
        self._awaiting_reply = False
        self.speaker.end_of_reply()
        turn = self._reply_turn
        if turn is not None and turn is self._open_turn:
            return  # the answer to its first part: the person has carried on
        if turn is not None:
            turn.complete = True
            while self._unanswered and (earlier := self._unanswered.popleft()) is not turn:
                if earlier.reply_received_s is None and not earlier.interrupted:
                    message = f"turn {earlier.number}: no answer of its own (merged into the next)"
                    self._report("merged", message, earlier.number)
            self._maybe_log_turn(turn)

    def _on_TurnLost(self, event: TurnLost) -> None:
        turn = next((t for t in self._unanswered if t.number == event.turn), None)
        if turn is None and not event.turn and self._unanswered:
            turn = self._unanswered[0]  # a loss the session could not name: the oldest
        if turn is not None:
            self._unanswered.remove(turn)
        number = turn.number if turn is not None else event.turn
        name = f"turn {number}" if number else "a turn"
        self._report(event.cause, f"{name} lost ({event.cause}): {event.detail}", number)
        self._awaiting_reply = bool(self._unanswered)

    def _on_Usage(self, event: Usage) -> None:  # numbers already checked by translate
        self.conversation.add_tokens(event.total_tokens)
        self.tokens.prompt += event.prompt_tokens
        self.tokens.response += event.response_tokens
        self.tokens.total += event.total_tokens
        if self._reply_turn is not None:
            self._reply_turn.prompt_tokens += event.prompt_tokens
            self._reply_turn.response_tokens += event.response_tokens
        self._emit(
            TokensUsed(
                event.prompt_tokens, event.response_tokens, event.total_tokens, event.by_modality
            )
        )

    def _on_ToolCall(self, event: ToolCall) -> None:
        for call in event.calls:
            self.tools.start(call)

    def _on_ToolCallCancellation(self, event: ToolCallCancellation) -> None:
        self.tools.cancel(event.ids)

    def _on_Grounding(self, event: Grounding) -> None:
        queries = event.metadata.get("web_search_queries") or []
        if queries:
            log.info("searched: %s", "; ".join(queries))
        sources = event.sources
        if sources:
            log.info("sources: %s", ", ".join(sources))
            if self._reply_turn is not None:
                self._reply_turn.sources += sources

    def _on_CodeExecution(self, event: CodeExecution) -> None:
        if event.code:
            log.info("the model runs code: %s", event.code.strip())
            return
        log.info("code result (%s): %s", event.outcome or "-", event.output.strip())
        if self._reply_turn is not None:
            self._reply_turn.code_results.append(event.output.strip())

    def _on_WaitingForInput(self, event: WaitingForInput) -> None:
        log.info("the model waits for more input")

    def _on_GoAway(self, event: GoAway) -> None:
        log.info("the service will close this connection in %.0f s", event.time_left_s)

    def _on_Connected(self, event: Connected) -> None:
        self._connecting = self._offline = self._key_refused = False
        self._emit(ConnectionChanged("online"))
        self.reconnects = event.reconnects
        if self.session_started_s is None or not event.resumed:
            self.session_started_s = self.clock()

    def _on_Disconnected(self, event: Disconnected) -> None:
        self._stale_audio = False
        if self._model_streaming and self._reply_turn is not None:
            # the service drops an answer its connection lost; the turn is asked again
            self.speaker.flush()
            self._reply_turn.reply_received_s = None
        self._model_streaming = False
        self._emit(ConnectionLost(event.cause))

    def _on_BadServerMessage(self, event: BadServerMessage) -> None:
        self._emit(ServerMessageDropped(event.reason))

    def _on_Offline(self, event: Offline) -> None:
        """LiveSession (or the idle probe) logs the outage; here it becomes a state and a chime."""
        if not self._offline and self.conversation.is_open:
            self._offline_chimed_at = self.clock()
            self._play_chime("offline")
        self._offline = True
        self._emit(ConnectionChanged("offline", event.cause))

    def _on_Online(self, event: Online) -> None:
        if self._offline or self._key_refused:
            self._offline = self._key_refused = False
            self._emit(ConnectionChanged("online"))

    def _on_KeyRefused(self, event: KeyRefused) -> None:
        if not self._key_refused:
            self._key_refused = True
            self._play_chime("error")
            self._report("key", f"the service refused the key or the model: {event.detail}")
            self._emit(ConnectionChanged("error", event.detail))

    def _on_Reseeded(self, event: Reseeded) -> None:
        log.info("fresh session re-seeded with %d transcript lines", event.turns)

    def _on_ToolResponseLost(self, event: ToolResponseLost) -> None:
        self._report("tool", f"tool response for {event.name} lost with its session")

    # ---- state -----------------------------------------------------------------------------

    def _poll_speaker(self) -> None:
        turn = self._reply_turn
        first = self.speaker.first_sample_at
        if turn is None or turn.first_sample_s is not None or first is None:
            return
        if turn.reply_received_s is not None and first >= turn.reply_received_s - 0.001:
            turn.first_sample_s = first
            self._maybe_log_turn(turn)

    def _maybe_log_turn(self, turn: TurnRecord) -> None:
        """One line per turn, once its answer is complete and its first sample has played."""
        played = turn.first_sample_s is not None or self.text_replies or turn.interrupted
        if turn.complete and played and not turn.logged:
            turn.logged = True
            self._log_turn(turn)
            latency = None
            if turn.reply_received_s is not None and turn.end_s is not None:
                latency = turn.reply_received_s - turn.end_s
            self._emit(TurnSummary(turn.number, turn.summary(), latency, turn.interrupted))

    def _log_turn(self, turn: TurnRecord) -> None:
        number = turn.number
        received = (
            f"+{(turn.reply_received_s - turn.end_s) * 1000:.0f} ms"
            if turn.reply_received_s is not None and turn.end_s is not None
            else "-"
        )
        first = f"+{turn.first_audio_ms:.0f} ms" if turn.first_audio_ms is not None else "-"
        age = self.clock() - (self.session_started_s or self.clock())
        user, agent = (
            " ".join(text.split())[:120] for text in (turn.input_transcript, turn.output_transcript)
        )
        used = "".join(
            f", {name}: {'; '.join(values)}"
            for name, values in (("sources", turn.sources), ("code results", turn.code_results))
            if values
        )
        spans = ", ".join(f"{p.start_s:.2f}-{p.end_s or 0.0:.2f}" for p in turn.parts)
        speech = f"{turn.start_s:.2f}-{turn.end_s or 0.0:.2f} s"
        if len(turn.parts) > 1:
            speech += f" in {len(turn.parts)} parts ({spans})"
        log.info(
            'turn %d: user "%s" -> agent "%s"; speech %s, reply received %s, '
            "first sample %s, interrupted %s, tokens %d/%d, session age %.0f s, reconnects %d%s",
            number,
            user,
            agent,
            speech,
            received,
            first,
            "yes" if turn.interrupted or turn.earlier_answer_cut else "no",
            turn.prompt_tokens,
            turn.response_tokens,
            age,
            self.reconnects,
            used,
            extra={
                "turn": number,
                "first_audio_ms": turn.first_audio_ms,
                "interrupted": turn.interrupted or turn.earlier_answer_cut,
                "parts": turn.summary()["parts"],
                "user": user,
                "agent": agent,
                "sources": turn.sources,
                "code_results": turn.code_results,
            },
        )

    def _update_state(self) -> None:
        if self._key_refused:
            state = State.ERROR
        elif self.speaker.speaking or (self._model_streaming and not self.text_replies):
            state = State.SPEAKING
        elif self._offline:
            state = State.OFFLINE
        elif self._open_turn is not None or (self._called and self.conversation.is_open):
            state = State.LISTENING
        elif self._awaiting_reply:
            state = State.THINKING
        elif self.muted:
            state = State.MUTED
        else:
            state = State.IDLE
        if state is not self.state:
            self.state = state
            self._emit(StateChanged(state.value))

    def _emit(self, event: AgentEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def _emit_transcript(self, role: str, text: str) -> None:
        turn = self._open_turn or self._reply_turn
        if turn is not None:
            if role == "user":
                turn.input_transcript = _capped(turn.input_transcript + text)
            self._emit(TranscriptDelta(role, text, turn.number))

    def _report(self, cause: str, message: str, lost_turn: int | None = None) -> None:
        """A turn that cannot be answered (lost_turn: its number), or another fault."""
        log.warning("%s", message)
        if len(self.errors) < TURNS_KEPT:
            self.errors.append(message)
        self._emit(AgentError(cause, message, lost_turn))

    @property
    def button_held(self) -> bool:
        return self._button_held

    @property
    def busy(self) -> bool:
        """A turn is open, an answer is awaited, or audio is still queued."""
        return self._open_turn is not None or self._awaiting_reply or self.speaker.buffered_s > 0

    @property
    def awaiting_service(self) -> bool:
        """Waiting on the network: simulate's clock then runs at real-time pace."""
        if (self._connecting or self._offline) and self.conversation.is_open:
            return True
        return self._awaiting_reply and self.speaker.buffered_s < 0.5


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


def _capped(text: str) -> str:
    return text if len(text) <= TRANSCRIPT_CHARS else text[:TRANSCRIPT_CHARS]
