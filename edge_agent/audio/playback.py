"""Speaker: 24 kHz model audio -> device rate, adaptive jitter buffer, instant flush, chimes.

The loop calls play(), end_of_reply(), flush() and chime(); the device (a PortAudio writer
thread, a WAV writer, or simulate's virtual clock) calls pull() once per period. A PortAudio
device stops after a stretch of silence (pause_if_idle) and is started again by on_wake when
sound is queued: an idle speaker then costs no wake-ups at all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from edge_agent.audio import pcm
from edge_agent.audio.devices import PortAudioStream, drop_queued, preferred_rate
from edge_agent.audio.resample import MODEL_OUTPUT_RATE, Resampler
from edge_agent.logs import RateLimitedLog

log = logging.getLogger(__name__)
overflow_log = RateLimitedLog(log)

MAX_QUEUED_S = 300.0  # model audio queued beyond this (a flooding server) is dropped
PA_OUTPUT_UNDERFLOWED = -9980  # PortAudio's paOutputUnderflowed

Clock = Callable[[], float]
ReferenceSink = Callable[[bytes], None]
Wake = Callable[[], None]


class SampleFifo:
    """int16 PCM in arrival order; reads from the front without moving the rest."""

    def __init__(self) -> None:
        self._held = bytearray()

    @property
    def size(self) -> int:
        """Samples held."""
        return len(self._held) // 2

    def push(self, samples: bytes) -> None:
        self._held.extend(samples)

    def pop(self, count: int) -> bytes:
        """The next count samples, silence after what is held."""
        held = self._held
        out = bytes(held[: 2 * count])
        del held[: 2 * count]  # a bytearray drops its front in O(1)
        if len(out) < 2 * count:
            out += pcm.silence(count - len(out) // 2)
        return out

    def clear(self) -> int:
        dropped = self.size
        self._held.clear()
        return dropped


class Speaker:
    def __init__(
        self,
        device_rate: int,
        jitter_ms: int = 100,
        volume: float = 1.0,
        clock: Clock = time.monotonic,
        idle_stop_s: float = 0.0,
    ) -> None:
        self.device_rate = device_rate
        self.idle_stop_samples = int(idle_stop_s * device_rate)  # 0: the device never pauses
        self.paused = False
        self.on_wake: Wake | None = None  # starts a paused device; called on the loop
        self.jitter_samples = device_rate * jitter_ms // 1000  # the most buffered before play
        self.jitter_s = jitter_ms / 1000  # delivery jitter: the longest gap seen between chunks
        self.volume = volume
        self.clock = clock
        self.underruns = 0
        self.flushes = 0  # flushes that dropped a reply being played
        self.first_sample_at: float | None = None  # when the current reply's first sample left
        self.reference_sink: ReferenceSink | None = None  # echo canceller's far end
        self._voice = SampleFifo()
        self._chimes = SampleFifo()
        self._sounds = SampleFifo()  # alerts (a timer's ring): guarded as echo, not flushed
        self._resampler = Resampler(MODEL_OUTPUT_RATE, device_rate)
        self._lock = threading.Lock()
        self._primed = False
        self._reply_ended = False
        self._reply_started = False
        self._quiet_samples = 10**9  # device samples pulled since the last audible one
        self.last_level = 0.0  # RMS of the last period pulled
        self._voice_energy = 0.0  # voice and alerts pulled since take_voice_rms() (echo guard)
        self._pulled_samples = 0
        self._period = 0  # samples per pull, as last seen
        self._last_chunk_at: float | None = None  # arrival of the reply's previous chunk
        self._reply_gap_s = 0.0  # this reply's longest gap between chunks

    # ---- loop side -------------------------------------------------------------------------

    def play(self, pcm24: bytes) -> None:
        whole = len(pcm24) - len(pcm24) % 2  # a server may send an odd byte count
        samples = self._gain(self._resampler.process(pcm24[:whole]))
        now = self.clock()
        with self._lock:
            if not self._reply_started:
                self._reply_started, self.first_sample_at = True, None
                self._last_chunk_at, self._reply_gap_s = None, 0.0
            elif self._last_chunk_at is not None:
                self._reply_gap_s = max(self._reply_gap_s, now - self._last_chunk_at)
                self.jitter_s = max(self.jitter_s, self._reply_gap_s)
            self._last_chunk_at = now
            self._reply_ended = False
            if self._voice.size + len(samples) // 2 > MAX_QUEUED_S * self.device_rate:
                overflow_log.warning("overflow", "speaker queue full: model audio dropped")
                return
            self._voice.push(samples)
        self._wake_device()

    def _gain(self, samples: bytes) -> bytes:
        return samples if self.volume == 1.0 else pcm.scale(samples, self.volume)

    def end_of_reply(self) -> None:
        """The model finished: play out what is buffered even if below the jitter target."""
        tail = self._gain(self._resampler.process(b"", last=True))
        self._resampler.reset()
        with self._lock:
            self._voice.push(tail)
            self._reply_ended = True
            self._reply_started = False
            # a longer gap counts at once (in play); a calmer reply lowers the estimate slowly
            self.jitter_s = max(self._reply_gap_s, 0.7 * self.jitter_s + 0.3 * self._reply_gap_s)

    def flush(self) -> float:
        """Drops all queued model audio; returns the seconds dropped. Chimes keep playing."""
        self._resampler.reset()
        with self._lock:
            dropped = self._voice.clear()
            if dropped or self._primed:
                self.flushes += 1  # the device may still hold some of it
            self._primed = False
            self._reply_ended = False
            self._reply_started = False
        return dropped / self.device_rate

    def chime(self, samples: bytes) -> None:
        with self._lock:
            self._chimes.push(samples)
        self._wake_device()

    def sound(self, samples: bytes) -> None:
        """An alert at the device's rate: it plays beside the voice, a flush keeps it, and the
        echo guard counts it as the agent's own sound (it is long enough to pass for speech)."""
        with self._lock:
            self._sounds.push(samples)
        self._wake_device()

    def stop_sounds(self) -> None:
        with self._lock:
            self._sounds.clear()

    @property
    def sounds_s(self) -> float:
        """Alert audio still queued."""
        return self._sounds.size / self.device_rate

    def _wake_device(self) -> None:
        """Sound was just queued: a device paused for silence must start again."""
        with self._lock:
            wake, self.paused = self.paused, False
        if wake and self.on_wake is not None:
            self.on_wake()

    def start_samples(self) -> int:
        """Model audio that must be buffered before playback starts: enough to cover the delivery
        jitter observed (and one device period), at most jitter_ms."""
        covered = int(self.jitter_s * self.device_rate) + self._period
        return min(self.jitter_samples, covered)

    @property
    def buffered_s(self) -> float:
        return self._voice.size / self.device_rate

    @property
    def speaking(self) -> bool:
        """Model audio is queued or still leaving the device."""
        return (
            self._voice.size > 0 or self.quiet_ms() < 1000 * self.jitter_samples / self.device_rate
        )

    def quiet_ms(self) -> float:
        """Time since the last audible sample left (voice or chime), in device time."""
        if self.paused:  # the device has long been silent; its clock is stopped
            return float("inf")
        return self._quiet_samples * 1000 / self.device_rate

    # ---- device side -----------------------------------------------------------------------

    def pull(self, count: int) -> bytes:
        self._period = count
        with self._lock:
            waiting = self._voice.size
            if (
                not self._primed
                and waiting
                and (waiting >= self.start_samples() or self._reply_ended)
            ):
                self._primed = True
            voice: bytes | None = None
            if self._primed:
                voice = self._voice.pop(count)
                if self.first_sample_at is None:
                    self.first_sample_at = self.clock()
                if waiting < count:
                    if not self._reply_ended:
                        self.underruns += 1
                    self._primed = False
            chimes = self._chimes.pop(count) if self._chimes.size else None
            if self._sounds.size:
                voice = self._with_sound(voice, count)
        if voice is None and chimes is None:  # the usual case on a speaker: nothing to play
            mix, level, voice_level = pcm.silence(count), 0.0, 0.0
        elif chimes is None:
            mix = voice if voice is not None else pcm.silence(count)
            level = voice_level = pcm.rms(mix)
        else:
            mix = pcm.mix(voice, chimes) if voice is not None else chimes
            level = pcm.rms(mix)
            voice_level = pcm.rms(voice) if voice is not None else 0.0
        self.last_level = level
        self._voice_energy += voice_level * voice_level * count
        self._pulled_samples += count
        if level:
            self._quiet_samples = 0
        else:
            self._quiet_samples += count
        if self.reference_sink is not None:
            self.reference_sink(mix)
        return mix

    def _with_sound(self, voice: bytes | None, count: int) -> bytes:
        """The alert mixed into the voice's share of the period, so the guard hears both."""
        sound = self._sounds.pop(count)
        return pcm.mix(voice, sound) if voice is not None else sound

    def take_voice_rms(self) -> float:
        """RMS of the model's voice (and alerts) that left for the device since the last call.
        Chimes are left out: too short and too high to pass for speech, they need no guard."""
        energy, count = self._voice_energy, self._pulled_samples
        self._voice_energy, self._pulled_samples = 0.0, 0
        return (energy / count) ** 0.5 if count else 0.0

    def pause_if_idle(self) -> bool:
        """Device side, after a pull: True, once, when nothing is queued and nothing has sounded
        for idle_stop_s. The device may then stop until on_wake is called."""
        with self._lock:
            if (
                self.paused
                or not self.idle_stop_samples
                or self._voice.size
                or self._chimes.size
                or self._sounds.size
                or self._quiet_samples < self.idle_stop_samples
            ):
                return False
            self.paused = True
        return True


class PortAudioOutput(PortAudioStream):
    """Plays a Speaker on a PortAudio device: its thread pulls one period at a time and writes
    it in blocking mode.

    A blocking stream starts empty and plays the first write at once, where PortAudio starts a
    callback stream with its whole buffer full of silence (an answer waited 45 ms behind it at
    20 ms periods). For the same reason, when the device may be stopped (speaker_idle_stop_s >
    0), silence queued on a running device is dropped before a sound, and a flush drops the
    voice the device still holds."""

    def __init__(self, device: str, rate: int = 0, channels: int = 0, period_ms: int = 20) -> None:
        super().__init__("speaker", device)
        self.requested_rate = rate
        self.requested_channels = channels
        self.period_ms = period_ms
        self.rate = 0
        self.device_frames = 0  # frames the device's buffer holds
        self._speaker: Speaker | None = None
        self._period = 0  # frames per write
        self._silent_writes = 0  # periods of silence written since the last sound
        self._flushes_seen = 0

    def probe_rate(self) -> int:
        """The rate the device will run at: as configured, else the model's if the device takes
        it, else the device's default (the Speaker resamples to it)."""
        try:
            chosen = self._find("output")
            if self.requested_rate:
                return self.requested_rate
            channels = self.requested_channels or 1
            return preferred_rate(self._pa, chosen, "output", MODEL_OUTPUT_RATE, channels)
        finally:
            self._terminate()

    def start(self, speaker: Speaker, supervise: bool = True) -> None:
        self._speaker = speaker
        speaker.on_wake = self._wakeup.set
        self._serve()
        if supervise:
            self._supervise()

    def _waiting(self) -> bool:
        return self._speaker is not None and self._speaker.paused

    def _step(self, stream: Any) -> bool:
        speaker = self._speaker
        assert speaker is not None
        samples, channels = speaker.pull(self._period), self.requested_channels or 1
        sounding = speaker.last_level > 0
        may_stop = speaker.idle_stop_samples > 0
        if stream.is_stopped():
            stream.start_stream()
        elif may_stop and (
            (sounding and self._silent_writes * self._period >= self.device_frames)
            or speaker.flushes != self._flushes_seen
        ):
            drop_queued(stream)  # what the device holds: silence, or flushed voice
        self._flushes_seen = speaker.flushes
        try:
            stream.write(pcm.to_channels(samples, channels), exception_on_underflow=True)
        except OSError as exc:  # written all the same
            if exc.errno != PA_OUTPUT_UNDERFLOWED:
                raise
            speaker.underruns += 1  # the device ran dry: this thread was late
        self._silent_writes = 0 if sounding else self._silent_writes + 1
        if speaker.pause_if_idle():
            stream.stop_stream()  # plays out what the device holds, then rests
        return True

    def _resting(self) -> bool:
        return self._waiting() and not self._failed

    def _stream_active(self) -> bool:
        return self._resting() or super()._stream_active()

    def alive(self) -> bool:
        return self._resting() or super().alive()

    def _open_stream(self) -> None:
        speaker = self._speaker
        assert speaker is not None
        self.rate = speaker.device_rate
        self._period = self.rate * self.period_ms // 1000
        chosen = self._open_on(
            "output",
            lambda _: {
                "rate": self.rate,
                "channels": self.requested_channels or 1,
                "frames_per_buffer": self._period,
            },
        )
        latency = self._stream.get_output_latency()
        self.device_frames = self._stream.get_write_available()  # nothing written yet
        log.info(
            "speaker: %s at %d Hz, period %d ms, device buffer %.0f ms",
            chosen.name,
            self.rate,
            self.period_ms,
            latency * 1000,
        )

    def close(self) -> None:
        self._shut()


class WavOutput:
    """Writes a Speaker to a WAV file (16-bit mono at the speaker's rate), paced in real time.

    Like a PortAudio device it rests while the speaker is idle (not pulled at all) and, woken,
    writes the silence it skipped, so the file keeps wall-clock time."""

    def __init__(self, path: Path, period_ms: int = 20) -> None:
        self.path = path
        self.period_ms = period_ms
        self._task: asyncio.Task[None] | None = None
        self._file: BinaryIO | None = None
        self._wav: wave.Wave_write | None = None
        self._woken = asyncio.Event()

    def start(self, speaker: Speaker) -> None:
        self._file = self.path.open("wb")
        self._wav = open_wav_writer(self._file, speaker.device_rate)
        speaker.on_wake = self._woken.set
        self._task = asyncio.create_task(self._run(speaker))

    async def _run(self, speaker: Speaker) -> None:
        wav = self._wav
        assert wav is not None
        period = speaker.device_rate * self.period_ms // 1000
        period_s = self.period_ms / 1000
        started, count = time.monotonic(), 0
        while True:
            wav.writeframesraw(speaker.pull(period))  # the header is patched at close
            count += 1
            if speaker.pause_if_idle():
                assert self._file is not None
                self._file.flush()  # what has played is in the file while the speaker rests
                self._woken.clear()
                await self._woken.wait()
                skipped = int((time.monotonic() - started) / period_s) - count
                if skipped > 0:
                    wav.writeframesraw(bytes(2 * period * skipped))
                    count += skipped
            await asyncio.sleep(max(0.0, started + count * period_s - time.monotonic()))

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        wav, file, self._wav, self._file = self._wav, self._file, None, None
        try:
            if wav is not None:
                wav.close()  # the header, written to the file: before the file closes
        finally:
            if file is not None:
                file.close()


def open_wav_writer(target: BinaryIO, rate: int) -> wave.Wave_write:
    """A 16-bit mono writer on a file the caller opened (and closes after the writer): a path
    wave.open cannot open leaves a half-built writer whose __del__ complains on stderr."""
    wav = wave.open(target, "wb")  # noqa: SIM115
    wav.setnchannels(1)
    wav.setsampwidth(2)
    wav.setframerate(rate)
    return wav
