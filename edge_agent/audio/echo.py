"""Echo guard: keeps the model's own voice, coming back through the mic, from opening turns.

half_duplex: while the speaker plays (plus echo_tail_ms) the mic may not open a turn, unless
  the user is clearly louder than the echo heard so far (barge-in by voice still works).
aec: WebRTC AEC3 (pywebrtc-audio) with the speaker mix as the far end, taken where audio
  really leaves (the playback pull).
none / system: frames pass (headsets, XMOS boards, or PipeWire's echo-cancel upstream).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from edge_agent.audio import pcm
from edge_agent.audio.playback import SampleFifo, Speaker
from edge_agent.audio.resample import MODEL_INPUT_RATE, Resampler

LOUDER_THAN_ECHO = 3.0  # 10 dB over the expected echo counts as a person talking over the reply
BARGE_IN_FRAMES = 3  # loud frames in a row that release the guard
RELEASE_QUIET_FRAMES = 10  # a released guard closes again after this many frames without them


@dataclass
class EchoVerdict:
    frame: bytes
    suppressed: bool  # True: this frame may not open a turn


class EchoGuard:
    def __init__(self, mode: str, speaker: Speaker, tail_ms: int) -> None:
        self.mode = mode
        self.speaker = speaker
        self.tail_ms = tail_ms
        self._coupling = 1.0  # echo level / output level, learned while the speaker plays
        self._loud_frames = 0
        self._quiet_frames = 0
        self._released = False
        self._canceller: Any = None
        self.cancelled = b""  # aec: the last frame after cancellation (the wake word hears it)
        if mode == "aec":
            from pywebrtc_audio import EchoCanceller

            self._canceller = EchoCanceller(sample_rate=MODEL_INPUT_RATE)
            self._reference = SampleFifo()
            self._reference_lock = threading.Lock()
            self._to_16k = Resampler(speaker.device_rate, MODEL_INPUT_RATE)
            speaker.reference_sink = self._take_reference

    def _take_reference(self, mix: bytes) -> None:
        reference = self._to_16k.process(mix)
        with self._reference_lock:
            self._reference.push(reference)
            if self._reference.size > MODEL_INPUT_RATE:  # keep at most 1 s of far end
                self._reference.pop(self._reference.size - MODEL_INPUT_RATE)

    def check(self, frame: bytes) -> EchoVerdict:
        if self.speaker.paused:  # its device rests: nothing has played for a while (idle)
            if self._canceller is not None and self._reference.size:
                with self._reference_lock:  # its last silence must not delay the next far end
                    self._reference.clear()
            self.cancelled = frame
            self._loud_frames, self._released = 0, False
            return EchoVerdict(frame, False)
        if self._canceller is not None:
            with self._reference_lock:
                far = self._reference.pop(len(frame) // 2)
            if not self.speaker.speaking and self.speaker.quiet_ms() >= self.tail_ms:
                # nothing played for a while: no echo to cancel, and AEC3 left running on a
                # silent far end takes seconds to pass the user's first words through
                self.cancelled = frame
                return EchoVerdict(frame, False)
            self.cancelled = self._cancel(frame, far)
            return EchoVerdict(self.cancelled, False)
        if self.mode != "half_duplex":
            return EchoVerdict(frame, False)
        playing = self.speaker.speaking or self.speaker.quiet_ms() < self.tail_ms
        if not playing:
            self._loud_frames, self._released = 0, False
            return EchoVerdict(frame, False)
        level = pcm.rms(frame)
        expected_echo = self._coupling * self.speaker.output_level
        if level > LOUDER_THAN_ECHO * expected_echo + 100.0:
            self._loud_frames += 1
            self._quiet_frames = 0
        else:
            self._loud_frames = 0
            self._quiet_frames += 1
            output = self.speaker.output_level
            # learn only while the speaker sounds at its recent level: in a pause between
            # sentences the echo is gone but output_level decays slowly, and learning there
            # drove the coupling towards 0 until the next sentence's echo released the guard
            if output > 100.0 and self.speaker.last_level > 0.5 * output and not self._released:
                ratio = min(1.0, level / output)
                self._coupling = 0.9 * self._coupling + 0.1 * ratio
        if self._loud_frames >= BARGE_IN_FRAMES:
            self._released = True
        elif self._quiet_frames >= RELEASE_QUIET_FRAMES:
            self._released = False
        return EchoVerdict(frame, not self._released)

    def _cancel(self, near: bytes, far: bytes) -> bytes:
        import numpy as np  # AEC3 takes arrays; aec mode only

        pair = np.frombuffer(near, dtype="<i2"), np.frombuffer(far, dtype="<i2")
        return bytes(self._canceller.process(*pair).tobytes())
