"""The conductor: routes mic frames, button presses and Live events; owns the agent's state.

It does no I/O itself. The driver (the daemon or simulate) calls on_mic_frame() for every mic
frame, on_button() for presses, and on_live_event() for what LiveSession reports; the Agent
talks back through the LiveSession and the Speaker it was given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent import events as ev
from edge_agent.answer import Answer
from edge_agent.audio.echo import EchoGuard
from edge_agent.audio.playback import Speaker
from edge_agent.audio.vad import SpeechGate, TurnAudio, TurnEnd, TurnStart
from edge_agent.config import Config
from edge_agent.conversation import Conversation
from edge_agent.events import State
from edge_agent.gestures import Button
from edge_agent.link_status import LinkStatus
from edge_agent.live.uplink import Uplink
from edge_agent.tools.runner import ToolRunner
from edge_agent.turns import TurnLedger, TurnRecord

if TYPE_CHECKING:
    from edge_agent.camera import Camera  # numpy: only when a camera is configured

log = logging.getLogger(__name__)

MODEL_OUTPUT = (ev.ModelAudio, ev.ModelText, ev.ModelThought, ev.OutputTranscript, ev.ToolCall)


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
        self.listeners: list[Callable[[ev.AgentEvent], None]] = []  # the one stream out
        tools.listeners.append(self.emit)
        conversation.listeners.append(
            lambda is_open, reason: self.emit(ev.ConversationChanged(is_open, reason))
        )
        self.ledger = TurnLedger(clock, self.emit, self.text_replies, lambda: speaker.speaking)
        self.answer = Answer(
            speaker, clock, self.ledger, config.live.reply_timeout_s, uplink.reconnect
        )
        self.link = LinkStatus(clock, conversation.chime, self.emit, self.ledger)
        self.button = Button(self, self.mode == "push_to_talk", config.gpio.long_press_s)
        self._frame_s = config.vad.frame_ms / 1000
        self._input_s = 0.0  # input timeline: frames seen so far
        self.button_held = False  # self.button.held, read here on every push-to-talk frame
        self._turn_ignored = False  # the gate heard speech that opens nothing (button mode)
        self._called = False  # woken (wake word or press): listening before any speech
        self._taker: Callable[[str], None] | None = None
        self._turn_taken = self._press_taken = False  # the gate's turn, the press: to the taker
        self._open_turn: TurnRecord | None = None
        self._live_handlers = self._live_routes()

    # ---- commands (for the capabilities beside the Agent: wake word, page, event stream) ----

    def start(self) -> None:
        if self.conversation.always:
            self.open_conversation("always on")

    def open_conversation(self, reason: str, listening: bool = True) -> bool:
        """False when the daily budget refuses it."""
        was_open = self.conversation.is_open
        if not self.conversation.open(reason, listening):
            return False
        if not was_open:
            self.link.connecting = True  # until the session is up
        self._update_state()
        return True

    def close_conversation(self, reason: str) -> None:
        self._called = False
        turn, self._open_turn = self._open_turn, None
        if turn is not None:
            self.ledger.withdraw(turn)
        self.barge_in()
        self.conversation.close(reason)
        self._update_state()

    def send_text(self, text: str, reason: str = "text", listening: bool = True) -> bool:
        """A typed question, answered like a spoken one; opens a conversation if none is open."""
        text = text.strip()
        if not text or not self.open_conversation(reason, listening):
            return False
        self.barge_in()
        now = self._input_s
        self._start_turn(now)
        self.ledger.user_said(self._open_turn, text)
        number = self.ledger.count
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

    def say(self, text: str, reason: str) -> bool:
        """The model's answer to `text` (worded by the caller: a reminder, an announcement) is
        spoken. Never while a person speaks or an answer is under way: False then, and the
        caller asks again. Where the person starts conversations (wake word, button), the
        microphone stays closed for it."""
        person = self._called or self.gate.in_turn or self.gate.holding
        if person or self.busy or self.answer.playing:
            return False
        listening = self.conversation.config.start in ("speech", "always")
        return self.send_text(text, reason, listening)

    def alert(self, samples: bytes) -> None:
        """An urgent sound (a timer's ring, at the device's rate): it cuts any answer, and the
        echo guard counts it as the agent's own sound."""
        self.barge_in()
        self.speaker.sound(samples)

    def take_next_input(self, taker: Callable[[str], None] | None) -> None:
        """The next speech the gate hears, wake word or button press goes to `taker` ("speech",
        "wake word", "button") instead of opening or cutting anything (a ringing timer's stop);
        None gives them back."""
        self._taker = taker

    def _taken(self, what: str) -> bool:
        taker, self._taker = self._taker, None
        if taker is not None:
            taker(what)
        return taker is not None

    def set_muted(self, muted: bool) -> None:
        if muted == self.muted:
            return
        self.muted = muted
        log.info("microphone %s", "muted" if muted else "unmuted")
        self.conversation.chime("done" if muted else "listening")
        self.emit(ev.MutedChanged(muted))
        self._update_state()

    def barge_in(self) -> bool:
        """The user talks over the answer: silence it now. True when there was one to cut."""
        return self.answer.cut()

    def wake(self, source: str) -> None:
        """The wake word (or a press): cut any answer and open a conversation. Speech the gate
        had heard start without opening a turn (the wake word itself) is dropped there: the
        speech that follows opens the turn, so nothing said before this moment is sent, and a
        wake word followed by silence sends no empty turn."""
        if self._taken("wake word") or (self._turn_taken and self.gate.in_turn):
            return
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
            if self.button_held and self.conversation.listening:
                self.uplink.send_audio(verdict.frame)
        else:
            for event in self.gate.feed(verdict.frame, verdict.suppressed):
                self._gate_event(event)
            if self.mode == "server_vad" and self.conversation.listening:
                silence = bytes(len(frame)) if verdict.suppressed else verdict.frame
                self.uplink.send_audio(silence)
        if self.camera is not None:
            self.camera.update_window(self._open_turn is not None, self.conversation.listening)
            self.camera.tick()
        self.answer.poll(self.link.up, bool(self.tools.running))
        if self.conversation.is_open:
            self.conversation.tick(busy=self.busy or self.answer.streaming)
        self._update_state()

    def on_button(self, pressed: bool) -> None:
        """Its gestures and what each does: edge_agent/gestures.py."""
        is_open = self.conversation.listening
        gesture = self.button.change(pressed, self._input_s, is_open)
        self.button_held = self.button.held
        if pressed and gesture is not None:
            self._press_taken = self._taken("button")
        if gesture is not None and not self._press_taken:  # its release is taken too
            self.button.act(gesture, is_open)
        self._update_state()

    def talk(self) -> None:
        """Push-to-talk pressed: a turn opens, its audio goes up while the button is held."""
        was_open = self.conversation.listening
        if not self.open_conversation("button"):
            return
        if was_open:
            self.conversation.chime("listening")
        self.barge_in()
        self._start_turn(self._input_s)
        self.uplink.activity_start()

    def talk_end(self) -> None:
        if self._open_turn is not None:
            self.uplink.activity_end(self._open_turn.number)
            self._end_turn(self._input_s)

    def _gate_event(self, event: TurnStart | TurnAudio | TurnEnd) -> None:
        if isinstance(event, TurnStart):
            self._turn_taken = self._taken("speech")
            opens = self.conversation.config.start == "speech" or self.conversation.listening
            opens = opens and not self._turn_taken
            self._turn_ignored = not (opens and self.open_conversation("speech"))
            if self._turn_ignored:
                return
            answer_cut = self.barge_in()
            last = self.answer.turn
            resumes = event.resumed or event.continued
            if resumes and last is not None and self.ledger.resumable(last) and not self._open_turn:
                self._called = False
                self.ledger.resume(last, event.speech_start_s, answer_cut)
                self.answer.awaited = bool(self.ledger.unanswered)
                self._open_turn = last
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

    def _start_turn(self, start_s: float) -> None:
        self._called = False
        self._open_turn = self.ledger.start(start_s, cut=self.answer.turn)

    def _end_turn(self, end_s: float) -> None:
        turn = self._open_turn
        if turn is None:
            return
        self.ledger.end(turn, end_s, self.clock() - (self._input_s - end_s))
        self._open_turn = None
        self.answer.expect(turn)
        self.link.turn_ended()

    # ---- Live events -----------------------------------------------------------------------

    def on_live_event(self, event: ev.LiveEvent) -> None:
        if isinstance(event, MODEL_OUTPUT):
            self.answer.sign_of_life()
        handler = self._live_handlers.get(type(event))
        if handler is not None:
            handler(event)
        self._update_state()

    def _live_routes(self) -> dict[type, Callable[[Any], None]]:
        """Where each live event goes: the Agent's own _on_ handler where it moves the state,
        else straight on (the turn ledger, the tools, the event stream, the log)."""
        routes: dict[type, Callable[[Any], None]] = {
            getattr(ev, name[4:]): getattr(self, name) for name in dir(self) if name[:4] == "_on_"
        }
        ledger, answer, link = self.ledger, self.answer, self.link
        return routes | {
            ev.ModelText: lambda e: answer.text(e.text, self.text_replies),
            ev.Interrupted: lambda e: answer.interrupted(),
            ev.Connected: link.connected,
            ev.Online: lambda e: link.back_online(),
            ev.KeyRefused: link.key_refused,
            ev.Offline: lambda e: link.went_offline(e, self.conversation.is_open),
            ev.OutputTranscript: lambda e: ledger.agent_said(answer.turn, e.text),
            ev.Grounding: lambda e: ledger.grounded(e, answer.turn),
            ev.CodeExecution: lambda e: ledger.code_ran(e, answer.turn),
            ev.ToolCallCancellation: lambda e: self.tools.cancel(e.ids),
            ev.BadServerMessage: lambda e: self.emit(ev.ServerMessageDropped(e.reason)),
            ev.ToolResponseLost: lambda e: ledger.report(
                "tool", f"tool response for {e.name} lost with its session"
            ),
            ev.ModelThought: lambda e: log.debug("thought: %s", e.text),
            ev.WaitingForInput: lambda e: log.info("the model waits for more input"),
            ev.GoAway: lambda e: log.info(
                "the service will close this connection in %.0f s", e.time_left_s
            ),
            ev.Reseeded: lambda e: log.info(
                "fresh session re-seeded with %d transcript lines", e.turns
            ),
        }

    def _on_ModelAudio(self, event: ev.ModelAudio) -> None:
        if self.answer.audio(event.pcm, play=not self.text_replies):
            self.conversation.activity()

    def _on_InputTranscript(self, event: ev.InputTranscript) -> None:
        self.ledger.user_said(self.answer.turn or self._open_turn, event.text)
        log.debug("user said: %s", event.text)

    def _on_TurnComplete(self, event: ev.TurnComplete) -> None:
        """An answer, or the model's choice of silence: either way the turn is answered."""
        if event.reason and event.reason != "TURN_COMPLETE_REASON_UNSPECIFIED":
            log.info("turn complete: %s", event.reason)
        turn = self.answer.complete()
        if turn is not None and turn is not self._open_turn:  # else the person carried on
            self.ledger.answered(turn)

    def _on_TurnLost(self, event: ev.TurnLost) -> None:
        self.ledger.lost(event)
        self.answer.awaited = bool(self.ledger.unanswered)

    def _on_Usage(self, event: ev.Usage) -> None:  # numbers already checked by translate
        self.conversation.add_tokens(event.total_tokens)
        self.ledger.add_usage(event, self.answer.turn)

    def _on_ToolCall(self, event: ev.ToolCall) -> None:
        for call in event.calls:
            self.tools.start(call)

    def _on_Disconnected(self, event: ev.Disconnected) -> None:
        self.answer.connection_lost()
        self.emit(ev.ConnectionLost(event.cause))

    # ---- state -----------------------------------------------------------------------------

    def _update_state(self) -> None:
        if self.link.refused:
            state = State.ERROR
        elif self.speaker.speaking or (self.answer.streaming and not self.text_replies):
            state = State.SPEAKING
        elif self.link.offline:
            state = State.OFFLINE
        elif self._open_turn is not None or (self._called and self.conversation.is_open):
            state = State.LISTENING
        elif self.answer.awaited:
            state = State.THINKING
        elif self.muted:
            state = State.MUTED
        else:
            state = State.IDLE
        if state is not self.state:
            self.state = state
            self.emit(ev.StateChanged(state.value))

    def emit(self, event: ev.AgentEvent) -> None:
        """The one stream out; a capability beside the Agent puts its own events on it too."""
        for listener in self.listeners:
            listener(event)

    @property
    def busy(self) -> bool:
        """A turn is open, an answer is awaited, or audio is still queued."""
        return self._open_turn is not None or self.answer.awaited or self.speaker.buffered_s > 0

    @property
    def awaiting_service(self) -> bool:
        """Waiting on the network: simulate's clock then runs at real-time pace."""
        if not self.link.up and self.conversation.is_open:
            return True
        return self.answer.awaited and self.speaker.buffered_s < 0.5
