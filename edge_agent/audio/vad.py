"""SpeechGate: webrtcvad with pre-roll, minimum speech length, hangover and maximum turn length.

Feed 16 kHz mono frames; it returns what to send: a turn start (with the pre-roll, so onsets are
never cut), the turn's audio, and a turn end. Times are input-timeline seconds (frames counted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from edge_agent.audio.resample import MODEL_INPUT_RATE
from edge_agent.config import VadConfig


@dataclass(frozen=True)
class TurnStart:
    preroll: bytes  # audio from before the onset through the frame that confirmed speech
    speech_start_s: float


@dataclass(frozen=True)
class TurnAudio:
    pcm: bytes


@dataclass(frozen=True)
class TurnEnd:
    speech_end_s: float  # end of the last voiced frame: the hangover is not counted
    reason: str  # "silence" | "max_length"


GateEvent = TurnStart | TurnAudio | TurnEnd


class SpeechGate:
    def __init__(self, config: VadConfig) -> None:
        self.frame_ms = config.frame_ms
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._min_power = (32768 * 10 ** (config.min_level_dbfs / 20)) ** 2
        self._preroll: deque[bytes] = deque(maxlen=max(1, config.preroll_ms // self.frame_ms))
        self._candidate: list[bytes] = []
        self._candidate_voiced = 0
        self._min_frames = max(1, config.min_speech_ms // self.frame_ms)
        self._hangover_frames = max(1, config.hangover_ms // self.frame_ms)
        self._max_frames = int(config.max_turn_s * 1000 / self.frame_ms)
        self._frames_seen = 0
        self._in_turn = False
        self._turn_frames = 0
        self._silent_frames = 0
        self._candidate_start = 0

    @property
    def in_turn(self) -> bool:
        return self._in_turn

    def _seconds(self, frames: int) -> float:
        return frames * self.frame_ms / 1000

    def is_speech(self, frame: bytes) -> bool:
        """webrtcvad judges spectral shape only; a level floor keeps faint sounds out."""
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        if float(np.mean(samples * samples)) < self._min_power:
            return False
        return bool(self._vad.is_speech(frame, MODEL_INPUT_RATE))

    def feed(self, frame: bytes, suppressed: bool = False) -> list[GateEvent]:
        """`suppressed` (the echo guard's verdict) keeps the frame from opening a turn."""
        index = self._frames_seen
        self._frames_seen += 1
        voiced = not suppressed and self.is_speech(frame)
        if self._in_turn:
            return self._inside(frame, voiced, index)
        return self._outside(frame, voiced, index)

    def _outside(self, frame: bytes, voiced: bool, index: int) -> list[GateEvent]:
        if not self._candidate and not voiced:
            self._preroll.append(frame)
            return []
        if not self._candidate:
            self._candidate_start = index
        self._candidate.append(frame)
        self._candidate_voiced += voiced
        unvoiced_tail = len(self._candidate) - self._candidate_voiced
        if self._candidate_voiced >= self._min_frames:
            return [self._open()]
        if unvoiced_tail > max(2, self._min_frames // 2):  # a click or a cough: no turn
            for old in self._candidate:
                self._preroll.append(old)
            self._candidate, self._candidate_voiced = [], 0
        return []

    def _open(self) -> TurnStart:
        audio = b"".join([*self._preroll, *self._candidate])
        start = TurnStart(audio, self._seconds(self._candidate_start))
        self._turn_frames = len(self._candidate)
        self._preroll.clear()
        self._candidate, self._candidate_voiced = [], 0
        self._in_turn, self._silent_frames = True, 0
        return start

    def _inside(self, frame: bytes, voiced: bool, index: int) -> list[GateEvent]:
        self._turn_frames += 1
        self._silent_frames = 0 if voiced else self._silent_frames + 1
        events: list[GateEvent] = [TurnAudio(frame)]
        if self._silent_frames >= self._hangover_frames:
            end = index + 1 - self._silent_frames
            events.append(self._close(end, "silence"))
        elif self._turn_frames >= self._max_frames:
            events.append(self._close(index + 1, "max_length"))
        return events

    def _close(self, end_frame: int, reason: str) -> TurnEnd:
        self._in_turn = False
        self._silent_frames = 0
        return TurnEnd(self._seconds(end_frame), reason)

    def force_end(self) -> TurnEnd | None:
        """Ends a turn now (the button took over, the conversation closed)."""
        if not self._in_turn:
            return None
        return self._close(self._frames_seen - self._silent_frames, "forced")
