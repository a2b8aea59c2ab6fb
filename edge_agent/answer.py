"""The model's answer to the last turn, as it arrives and plays.

It is streamed to the Speaker; a barge-in cuts it, and what the service sent before it heard of
the cut is dropped until it says the answer was interrupted (or done). The wait for an answer is
watched: with no sign of one for `reply_timeout_s` the session tries a new connection, which
replays the turns that are still fresh and reports the older ones lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge_agent.audio.playback import Speaker
from edge_agent.turns import TurnLedger, TurnRecord

log = logging.getLogger(__name__)


class Answer:
    def __init__(
        self,
        speaker: Speaker,
        clock: Callable[[], float],
        ledger: TurnLedger,
        reply_timeout_s: float,
        reconnect: Callable[[str], None],
    ) -> None:
        self.speaker = speaker
        self.clock = clock
        self.ledger = ledger
        self.reply_timeout_s = reply_timeout_s
        self.reconnect = reconnect
        self.turn: TurnRecord | None = None  # the turn the current answer belongs to
        self.awaited = False  # a turn ended, its answer has not completed
        self.streaming = False  # the model's audio is arriving
        self._stale = False  # the cut answer's audio in flight: not played
        self._last_sign_of_life = 0.0  # the last model output (or turn end) while awaited

    @property
    def playing(self) -> bool:
        return self.speaker.speaking or self.streaming

    def cut(self) -> bool:
        """Silences the answer now, without waiting for the service. True when there was one."""
        if not self.playing:
            return False
        self.speaker.flush()
        if self.turn is not None:
            self.turn.interrupted = True
        self._stale = self.streaming
        self.streaming = False
        log.info("barge-in: answer cut")
        return True

    def expect(self, turn: TurnRecord) -> None:
        """The turn ended: its answer is awaited from now (a turn after an unanswered one does
        not restart the wait)."""
        if not self.awaited:
            self._last_sign_of_life = self.clock()
        self.awaited = True
        self.turn = turn

    def sign_of_life(self) -> None:
        self._last_sign_of_life = self.clock()

    def _received(self) -> None:
        if self.turn is not None and self.turn.reply_received_s is None:
            self.turn.reply_received_s = self.clock()

    def audio(self, pcm: bytes, play: bool) -> bool:
        """False for the cut answer's stale audio."""
        if self._stale:
            return False
        self._received()
        self.streaming = True
        if play:
            self.speaker.play(pcm)
        return True

    def text(self, text: str, spoken: bool) -> None:
        self._received()
        if spoken:  # text replies: the text is the answer
            self.ledger.agent_said(self.turn, text)
        log.info("model: %s", text)

    def interrupted(self) -> None:
        """The service says the answer was cut (also after turnComplete)."""
        self._stale = False
        if self.playing:
            self.speaker.flush()
            if self.turn is not None:
                self.turn.interrupted = True
        self.streaming = False

    def complete(self) -> TurnRecord | None:
        """The model is done: what is buffered plays out. Returns the answered turn."""
        self.streaming = self._stale = False
        self.awaited = False
        self.speaker.end_of_reply()
        return self.turn

    def connection_lost(self) -> None:
        """The service drops an answer its connection lost; the turn is asked again."""
        self._stale = False
        if self.streaming and self.turn is not None:
            self.speaker.flush()
            self.turn.reply_received_s = None
        self.ledger.to_be_replayed()
        self.streaming = False

    def _first_sample(self, turn: TurnRecord, first: float) -> None:
        """The speaker's first sample belongs to this answer when it left after its audio came."""
        if turn.reply_received_s is not None and first >= turn.reply_received_s - 0.001:
            turn.first_sample_s = first

    def poll(self, connected: bool, tool_running: bool) -> None:
        """Every mic frame: the first sample heard, and the wait for an answer (counted only
        while connected and no tool call runs)."""
        turn, first = self.turn, self.speaker.first_sample_at
        if turn is not None and not turn.logged:
            if turn.first_sample_s is None and first is not None:
                self._first_sample(turn, first)
            self.ledger.maybe_log(turn)  # its line once the answer has played out
        if not self.awaited or not connected:
            return
        now = self.clock()
        if tool_running:
            self._last_sign_of_life = now
        elif now - self._last_sign_of_life >= self.reply_timeout_s:
            log.info("no sign of an answer for %g s: trying a new connection", self.reply_timeout_s)
            self._last_sign_of_life = now
            self.streaming = False
            self.reconnect("no answer")
