"""Microphone: PortAudio input (blocking reads) or a WAV file -> fixed 16 kHz mono int16 frames.

The microphone's own thread reads a block, converts it (mono, 16 kHz) and hands whole frames to
the event loop with call_soon_threadsafe. Nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.audio.devices import AudioDevice, DeviceNotFound, PortAudioStream, preferred_rate
from edge_agent.audio.pcm import silence, to_mono
from edge_agent.audio.resample import MODEL_INPUT_RATE, FrameSplitter, Resampler
from edge_agent.logs import RateLimitedLog

log = logging.getLogger(__name__)
late_log = RateLimitedLog(log)

FrameSink = Callable[[bytes], None]
FILE_PREFIX = "file:"
# Device blocks are shorter than VAD frames: a frame is handed on at most one block after its
# last sample arrives. A block of a whole frame lands on whatever period the driver chose and
# held frames ~15 ms longer on the bench (bench/README.md).
BLOCK_S = 0.01
# While the agent is idle, frames reach the loop this much at a time: a wake-up of the loop
# costs more than the agent spends on a frame (bench/README.md, "Footprint"). The speech gate
# and the wake word still see every frame, in order; a turn's start is heard up to this much
# later (its pre-roll keeps the audio) and from then on every frame goes on at once.
IDLE_WAKEUP_S = 0.2
# While resting the microphone's thread reads this much at a time (a read costs ~6k
# instructions whatever its size), so once the agent listens its next frame waits at most this.
RESTING_READ_S = 0.05
# A loop this far behind the microphone gets its newest audio, not a backlog: older frames are
# dropped (counted, logged at most once a minute) instead of queueing without end.
MAX_BEHIND_S = 2.0


class FrameSource:
    """How many frames a microphone hands to the loop at once."""

    frame_samples: int
    frames_per_wakeup = 1

    def rest(self, idle: bool) -> None:
        """Idle: frames go to the loop IDLE_WAKEUP_S at a time; otherwise each as it is whole."""
        per_wakeup = round(IDLE_WAKEUP_S * MODEL_INPUT_RATE / self.frame_samples)
        self.frames_per_wakeup = max(1, per_wakeup) if idle else 1


def read_wav_16k_mono(path: Path) -> bytes:
    """A WAV of any rate and channel count as 16 kHz mono int16 PCM."""
    try:
        with wave.open(str(path)) as wav:
            if wav.getsampwidth() != 2:
                raise DeviceNotFound(f"{path}: 16-bit PCM WAV expected")
            rate, channels = wav.getframerate(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise DeviceNotFound(f"input WAV {path} not found") from None
    except (wave.Error, EOFError) as exc:
        raise DeviceNotFound(f"{path}: not a WAV file ({exc})") from None
    mono = to_mono(raw, channels)
    return Resampler(rate, MODEL_INPUT_RATE).process(mono, last=True)


class WavMicrophone(FrameSource):
    """A WAV file as the microphone; silence after its end. Paced in real time unless driven."""

    def __init__(self, path: Path, frame_ms: int) -> None:
        self.pcm = read_wav_16k_mono(path)
        self.frame_samples = MODEL_INPUT_RATE * frame_ms // 1000
        self.position = 0  # in samples
        self._task: asyncio.Task[None] | None = None

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / MODEL_INPUT_RATE

    def next_frame(self) -> bytes:
        frame = self.pcm[2 * self.position : 2 * (self.position + self.frame_samples)]
        self.position += self.frame_samples
        if len(frame) < 2 * self.frame_samples:
            frame += silence(self.frame_samples - len(frame) // 2)
        return frame

    def start(self, sink: FrameSink) -> None:
        self._task = asyncio.create_task(self._paced(sink))

    async def _paced(self, sink: FrameSink) -> None:
        period = self.frame_samples / MODEL_INPUT_RATE
        started = time.monotonic()
        count = 0
        while True:
            batch = self.frames_per_wakeup
            due = started + (count + batch - 1) * period  # each frame is handed on at its start
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            for _ in range(batch):
                sink(self.next_frame())
            count += batch

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Microphone(PortAudioStream, FrameSource):
    """A PortAudio input device, re-opened with backoff when it fails or disappears. Its thread
    reads BLOCK_S blocks, or RESTING_READ_S while the agent rests, and hands frames over in
    batches of frames_per_wakeup."""

    def __init__(
        self,
        device: str,
        frame_ms: int,
        rate: int = 0,
        channels: int = 0,
        max_seconds: float | None = None,
    ) -> None:
        super().__init__("microphone", device)
        self.frame_samples = MODEL_INPUT_RATE * frame_ms // 1000
        self.requested_rate = rate
        self.requested_channels = channels
        self.max_seconds = max_seconds
        self.rate = 0  # as opened
        self.channels = 0
        self.dropped_frames = 0  # the loop was more than MAX_BEHIND_S behind
        self._handed = 0  # frames handed to the loop (audio thread) ...
        self._taken = 0  # ... and taken by the sink (loop)
        self._sink: FrameSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cut: Callable[[bytes, bool, list[bytes]], None] = lambda block, last, out: None
        self._remaining: int | None = None  # device frames left to read (a bounded capture)
        self._pending: list[bytes] = []  # whole frames read, not yet handed over (the thread's)
        self._most_behind = max(1, round(MAX_BEHIND_S * MODEL_INPUT_RATE / self.frame_samples))

    def open(self, sink: FrameSink) -> None:
        """Opens the device now; raises DeviceNotFound or OSError (a missing device at start)."""
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        self._serve()

    def start(self, sink: FrameSink) -> None:
        self.open(sink)
        if self.max_seconds is None:  # a bounded capture ends by design
            self._supervise()

    def _open_stream(self) -> None:
        def parameters(chosen: AudioDevice) -> dict[str, Any]:
            self.rate = self.requested_rate or preferred_rate(
                self._pa, chosen, "input", MODEL_INPUT_RATE, self.requested_channels
            )
            self.channels = self.requested_channels or self._mono_if_possible(
                chosen.index, self.rate
            )
            return {
                "rate": self.rate,
                "channels": self.channels,
                "frames_per_buffer": self._block(),
            }

        chosen = self._open_on("input", parameters)
        self._cut = self._frames_of(self.rate, self.channels)
        self._pending = []
        self._remaining = int(self.max_seconds * self.rate) if self.max_seconds else None
        log.info("microphone: %s at %d Hz, %d channel(s)", chosen.name, self.rate, self.channels)

    def _mono_if_possible(self, index: int, rate: int) -> int:
        import pyaudio

        try:
            self._pa.is_format_supported(
                rate, input_device=index, input_channels=1, input_format=pyaudio.paInt16
            )
            return 1
        except ValueError:
            return 2

    def _block(self) -> int:
        return max(1, int(self.rate * BLOCK_S))

    def _step(self, stream: Any) -> bool:
        resting = self.frames_per_wakeup > 1
        count = int(self.rate * RESTING_READ_S) if resting else self._block()
        done = False
        if self._remaining is not None:
            count = min(count, self._remaining)
            self._remaining -= count
            done = self._remaining <= 0
        pending = self._pending
        self._cut(stream.read(count, exception_on_overflow=False), done, pending)
        ready = len(pending) if done else len(pending) - len(pending) % self.frames_per_wakeup
        if ready:
            self._hand_over(pending[:ready])
            del pending[:ready]
        if done:
            stream.stop_stream()
        return not done

    def _hand_over(self, frames: list[bytes]) -> None:
        if self.behind() + len(frames) > self._most_behind:
            self.dropped_frames += len(frames)
            late_log.warning("late", "microphone: the loop is behind; audio dropped")
            return
        self._handed += len(frames)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, frames)

    def _deliver(self, frames: list[bytes]) -> None:
        self._taken += len(frames)
        assert self._sink is not None
        for frame in frames:
            self._sink(frame)

    def behind(self) -> int:
        """Frames handed to the loop that it has not taken yet."""
        return self._handed - self._taken

    def _frames_of(self, rate: int, channels: int) -> Callable[[bytes, bool, list[bytes]], None]:
        """frames(block, last, out): the whole model frames a device block completes, onto out.
        A mono device at the model's rate is only cut into frames (no call it does not need:
        this runs for every block); other rates go through soxr."""
        splitter = FrameSplitter(self.frame_samples)
        if rate == MODEL_INPUT_RATE and channels == 1:
            return lambda block, last, out: splitter.push(block, out)
        resampler = Resampler(rate, MODEL_INPUT_RATE)

        def convert(block: bytes, last: bool, out: list[bytes]) -> None:
            splitter.push(resampler.process(to_mono(block, channels), last=last), out)

        return convert

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._shut)
