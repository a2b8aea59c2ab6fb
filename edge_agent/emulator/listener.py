"""Automatic activity detection, as the service does it: webrtcvad on audio time, not wall time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import numpy as np
import soxr
import webrtcvad

VAD_RATE = 16000
FRAME_SAMPLES = 480  # 30 ms
FRAME_MS = 30


class Activity(Enum):
    START = "start"
    END = "end"


@dataclass
class DetectorSettings:
    silence_ms: int = 500
    prefix_ms: int = 20
    low_start_sensitivity: bool = False


def audio_rate(mime_type: str) -> int:
    match = re.search(r"rate=(\d+)", mime_type)
    return int(match.group(1)) if match else VAD_RATE


class SpeechDetector:
    """Feeds PCM at any rate; reports when a user's speech starts and ends."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self._vad = webrtcvad.Vad(3 if settings.low_start_sensitivity else 2)
        self._pending = np.zeros(0, dtype=np.int16)
        self._resampler: soxr.ResampleStream | None = None
        self._rate = VAD_RATE
        self.speaking = False
        self._voiced_ms = 0
        self._silent_ms = 0
        self.samples_heard = 0  # 16 kHz samples, the audio clock

    def feed(self, pcm: bytes, rate: int) -> list[Activity]:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        if rate != VAD_RATE:
            if self._resampler is None or self._rate != rate:
                self._resampler = soxr.ResampleStream(rate, VAD_RATE, 1, dtype="int16")
                self._rate = rate
            samples = self._resampler.resample_chunk(samples)
        self._pending = np.concatenate([self._pending, samples])
        events = []
        while len(self._pending) >= FRAME_SAMPLES:
            frame, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
            self.samples_heard += FRAME_SAMPLES
            event = self._step(self._vad.is_speech(frame.tobytes(), VAD_RATE))
            if event is not None:
                events.append(event)
        return events

    def _step(self, voiced: bool) -> Activity | None:
        if not self.speaking:
            self._voiced_ms = self._voiced_ms + FRAME_MS if voiced else 0
            if self._voiced_ms >= max(self.settings.prefix_ms, FRAME_MS * 3):
                self.speaking, self._silent_ms = True, 0
                return Activity.START
            return None
        self._silent_ms = 0 if voiced else self._silent_ms + FRAME_MS
        if self._silent_ms >= self.settings.silence_ms:
            self.speaking, self._voiced_ms = False, 0
            return Activity.END
        return None

    def stream_ended(self) -> Activity | None:
        """audioStreamEnd: a turn in progress ends now."""
        self._pending = np.zeros(0, dtype=np.int16)
        if self.speaking:
            self.speaking, self._voiced_ms = False, 0
            return Activity.END
        return None
