"""Audio through real PortAudio/ALSA (file and null PCMs, JACK for pacing) and real webrtcvad."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from edge_agent.audio.capture import Microphone, WavMicrophone
from edge_agent.audio.chimes import CHIMES, chime
from edge_agent.audio.devices import STALLED_AFTER_S, DeviceNotFound
from edge_agent.audio.echo import EchoGuard
from edge_agent.audio.playback import PortAudioOutput, Speaker, WavOutput
from edge_agent.audio.resample import Resampler
from edge_agent.audio.vad import SpeechGate, TurnAudio, TurnEnd, TurnStart
from edge_agent.config import VadConfig
from edge_agent.emulator.voice import synthesize_speech
from tests.conftest import samples, until, write_wav

RATES = [16000, 24000, 44100, 48000]


def make_signal(rate: int, seconds: float, channels: int) -> np.ndarray:
    """Interleaved int16: a chirp on the left, its negative plus an offset tone on the right."""
    t = np.arange(int(rate * seconds)) / rate
    left = 8000 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    if channels == 1:
        return left.astype(np.int16)
    right = 4000 * np.sin(2 * np.pi * 330 * t)
    return np.stack([left, right], axis=1).astype(np.int16).reshape(-1)


def expected_16k(signal: np.ndarray, rate: int, channels: int) -> np.ndarray:
    mono = (signal.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels).astype(np.int16)
    return np.asarray(soxr.resample(mono, rate, 16000), dtype=np.int16)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", RATES)
async def test_capture_equals_the_input_after_resampling(
    alsa_files: tuple[Path, Path], rate: int, channels: int
) -> None:
    mic_raw, _ = alsa_files
    signal = make_signal(rate, 1.0, channels)
    mic_raw.write_bytes(signal.tobytes())
    frames: list[bytes] = []
    mic = Microphone("mic", frame_ms=20, rate=rate, channels=channels, max_seconds=1.0)
    mic.start(frames.append)
    expected = expected_16k(signal, rate, channels)
    whole = len(expected) // 320
    for _ in range(500):
        if len(frames) >= whole:
            break
        await asyncio.sleep(0.01)
    await mic.close()
    got = np.frombuffer(b"".join(frames), dtype=np.int16)
    assert mic.device_name == "mic" and len(frames) >= whole - 1
    assert all(len(frame) == 640 for frame in frames)
    n = min(len(got), len(expected)) - 200  # the streaming tail may differ by a few samples
    assert np.max(np.abs(got[:n].astype(int) - expected[:n])) <= 4


@contextlib.asynccontextmanager
async def loop_steps() -> AsyncIterator[list[int]]:
    """[n]: the loop's iterations so far; frames seen at the same n came in one wake-up."""
    step = [0]

    async def count_steps() -> None:
        while True:
            step[0] += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_steps())
    try:
        yield step
    finally:
        counter.cancel()


def group_sizes(steps_seen: list[int]) -> list[int]:
    return [steps_seen.count(value) for value in sorted(set(steps_seen))]


async def wakeups_of(mic: Microphone | WavMicrophone, frames: int) -> list[int]:
    """How many frames reached the sink at each wake-up of the loop."""
    seen: list[int] = []
    async with loop_steps() as step:
        mic.start(lambda frame: seen.append(step[0]))
        for _ in range(1000):
            if len(seen) >= frames:
                break
            await asyncio.sleep(0.01)
        await mic.close()
    return group_sizes(seen)


@pytest.mark.parametrize("source", ["portaudio", "file"])
async def test_an_idle_agents_microphone_wakes_the_loop_a_few_frames_at_a_time(
    alsa_files: tuple[Path, Path], tmp_path: Path, source: str
) -> None:
    """Each wake-up of the loop costs more than the agent spends on a frame: while the agent is
    idle, frames arrive 200 ms at a time; listening, one at a time."""
    alsa_files[0].write_bytes(bytes(16000 * 2 * 3))

    def microphone() -> Microphone | WavMicrophone:
        if source == "file":
            return WavMicrophone(write_wav(tmp_path / "m.wav", np.zeros(16000 * 3, np.int16)), 30)
        return Microphone("mic", frame_ms=30, rate=16000, channels=1, max_seconds=3.0)

    resting = microphone()
    resting.rest(True)
    assert resting.frames_per_wakeup == 7  # 210 ms of 30 ms frames
    groups = await wakeups_of(resting, 60)
    assert sum(groups) >= 60 and all(size % 7 == 0 for size in groups[:-1]), groups
    if source == "file":  # paced: the file mic cannot flood the loop as an unpaced PCM does
        listening = microphone()
        assert set(await wakeups_of(listening, 20)) == {1}


async def test_a_resting_microphone_hands_over_at_once_when_the_agent_listens(
    jack_clock: object,
) -> None:
    """A turn's first frames must not wait out the rest of a resting batch: once the agent
    listens (here at the first resting hand-over), the next hand-over holds one resting read
    (50 ms: 1-2 frames of 30 ms) and a frame left from the batch, not another 200 ms."""
    mic = Microphone("mic_rt", frame_ms=30, rate=16000, channels=1)
    mic.rest(True)
    seen: list[int] = []
    async with loop_steps() as step:

        def sink(frame: bytes) -> None:
            seen.append(step[0])
            mic.rest(False)

        mic.start(sink)
        await until(lambda: len(set(seen)) >= 3)
        await mic.close()
    groups = group_sizes(seen)
    assert groups[0] == 7 and max(groups[1:]) <= 3, groups


async def test_a_loop_that_falls_behind_the_microphone_gets_its_newest_audio_not_a_backlog(
    alsa_files: tuple[Path, Path],
) -> None:
    """The unpaced test PCM outruns a slow consumer, as a device would a stalled loop: what the
    loop cannot take is dropped and counted, never queued without end."""
    alsa_files[0].write_bytes((np.arange(16000 * 12) // 480).astype(np.int16).tobytes())
    mic = Microphone("mic", frame_ms=30, rate=16000, channels=1, max_seconds=12.0)
    firsts: list[int] = []

    def slow(frame: bytes) -> None:
        firsts.append(int(np.frombuffer(frame[:2], "<i2")[0]))
        time.sleep(0.005)

    mic.start(slow)
    for _ in range(1000):
        if mic._stream is not None and not mic._stream.is_active() and mic.behind() == 0:
            break
        await asyncio.sleep(0.01)
    await mic.close()
    assert mic.dropped_frames > 0 and len(firsts) + mic.dropped_frames == 16000 * 12 // 480
    assert firsts == sorted(firsts)  # in order, gaps where frames were dropped


def test_wav_microphone_reads_any_rate_and_channels(tmp_path: Path) -> None:
    signal = make_signal(44100, 0.5, 2)
    path = write_wav(tmp_path / "in.wav", signal, rate=44100, channels=2)
    mic = WavMicrophone(path, frame_ms=30)
    assert abs(mic.duration_s - 0.5) < 0.01
    got = np.frombuffer(b"".join(mic.next_frame() for _ in range(17)), dtype=np.int16)
    expected = expected_16k(signal, 44100, 2)
    assert np.max(np.abs(got[: len(expected)].astype(int) - expected[: len(got)])) <= 2
    assert not np.any(np.frombuffer(mic.next_frame(), dtype=np.int16))  # silence after the end


def test_a_missing_device_is_named(alsa_files: tuple[Path, Path]) -> None:
    async def open_missing() -> None:
        Microphone("usb speakerphone", frame_ms=30).open(lambda frame: None)

    with pytest.raises(DeviceNotFound, match="no audio input device matches 'usb speakerphone'"):
        asyncio.run(open_missing())
    with pytest.raises(DeviceNotFound, match="not found"):
        WavMicrophone(Path("/nonexistent.wav"), 30)


@pytest.mark.parametrize("rate", RATES)
async def test_playback_writes_the_expected_wav(alsa_files: tuple[Path, Path], rate: int) -> None:
    _, speaker_wav = alsa_files
    reply = synthesize_speech(1.0, seed=3)
    speaker = Speaker(device_rate=rate, jitter_ms=100)
    speaker.play(reply)
    speaker.end_of_reply()
    output = PortAudioOutput("speaker", rate=rate, period_ms=20)
    output.start(speaker)
    for _ in range(1000):
        if speaker.buffered_s == 0:
            break
        await asyncio.sleep(0.001)
    output.close()
    with wave.open(str(speaker_wav)) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (rate, 1)
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    expected = np.asarray(soxr.resample(np.frombuffer(reply, np.int16), 24000, rate), np.int16)
    start = int(np.argmax(written != 0))
    got = written[start : start + len(expected)]
    first = int(np.argmax(expected != 0))
    assert np.max(np.abs(got[: len(expected) - first].astype(int) - expected[first:])) <= 4
    assert speaker.underruns == 0


def test_jitter_buffer_waits_then_plays_out_the_tail() -> None:
    speaker = Speaker(device_rate=24000, jitter_ms=100)
    speaker.play(np.full(1200, 500, np.int16).tobytes())  # 50 ms: below the jitter target
    assert not np.any(samples(speaker.pull(480)))
    speaker.end_of_reply()
    assert np.all(samples(speaker.pull(480)) == 500)
    speaker.pull(480)
    assert np.count_nonzero(samples(speaker.pull(480))) == 240  # the tail, then silence
    assert speaker.underruns == 0
    speaker.play(np.full(2400 * 2, 500, np.int16).tobytes())
    assert np.any(samples(speaker.pull(480)))
    for _ in range(12):
        speaker.pull(480)  # drains before the reply ended: one underrun, counted, not fatal
    assert speaker.underruns == 1


def test_chimes_are_mixed_and_survive_a_flush() -> None:
    speaker = Speaker(device_rate=16000, jitter_ms=0)
    speaker.play(np.full(4000, 1000, np.int16).tobytes())
    for name in CHIMES:
        tone = samples(chime(name, 16000))
        assert 0.1 < len(tone) / 16000 < 0.4 and np.max(np.abs(tone)) < 8000
    speaker.chime(chime("listening", 16000))
    assert speaker.flush() > 0
    played = samples(b"".join(speaker.pull(320) for _ in range(10)))
    listening = samples(chime("listening", 16000))
    assert np.any(played) and np.array_equal(played[:200], listening[:200])


async def test_flush_lets_at_most_one_period_of_old_audio_out(jack_clock: object) -> None:
    _, speaker_wav = jack_clock  # type: ignore[misc]
    rate, period_ms = 48000, 20
    speaker = Speaker(device_rate=rate, jitter_ms=0)
    pulls: list[int] = []
    pulled_total = [0]
    original_pull = speaker.pull

    def counting_pull(count: int) -> bytes:
        pulls.append(count)
        out = original_pull(count)
        pulled_total[0] += int(np.count_nonzero(samples(out)))
        return out

    speaker.pull = counting_pull  # type: ignore[method-assign]
    speaker.play(np.full(24000 * 3, 3000, np.int16).tobytes())  # 3 s of "reply"
    output = PortAudioOutput("spk_rt", rate=rate, period_ms=period_ms)
    output.start(speaker)
    await until(lambda: len(pulls) > 10)
    audible_at_flush, flushed_at = pulled_total[0], len(pulls)
    speaker.flush()
    await until(lambda: len(pulls) > flushed_at + 5)  # what the device held has played
    output.close()
    with wave.open(str(speaker_wav)) as wav:
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    old_after_flush = int(np.count_nonzero(written)) - audible_at_flush
    period = rate * period_ms // 1000
    assert 0 <= old_after_flush <= period
    assert max(pulls) <= period  # the device pulls at most one period


def test_an_idle_speaker_pauses_once_and_sound_wakes_it_once() -> None:
    speaker = Speaker(device_rate=16000, jitter_ms=0, idle_stop_s=0.1)
    wakes: list[int] = []
    speaker.on_wake = lambda: wakes.append(1)
    speaker.play(np.full(800, 1000, np.int16).tobytes())
    speaker.end_of_reply()
    assert np.any(samples(speaker.pull(800))) and not speaker.pause_if_idle()  # sounding
    speaker.pull(800)
    assert not speaker.pause_if_idle()  # quiet for 50 ms only
    speaker.pull(1600)
    assert speaker.pause_if_idle() and speaker.paused
    assert not speaker.speaking and speaker.quiet_ms() == float("inf")  # the echo guard rests
    speaker.chime(chime("listening", 16000))
    speaker.play(np.full(800, 1000, np.int16).tobytes())
    assert wakes == [1] and not speaker.paused
    never = Speaker(device_rate=16000, jitter_ms=0)  # idle_stop_s=0: the device runs on
    never.pull(16000 * 5)
    assert not never.pause_if_idle()


def count_pulls(speaker: Speaker) -> list[int]:
    """[how many periods the device has pulled so far], kept up to date."""
    pulls = [0]
    pull = speaker.pull

    def counted(count: int) -> np.ndarray:
        pulls[0] += 1
        return pull(count)

    speaker.pull = counted  # type: ignore[method-assign]
    return pulls


async def test_a_file_speaker_rests_like_a_device_and_its_file_keeps_wall_time(
    tmp_path: Path,
) -> None:
    """Idle, a `file:` speaker is not pulled (as a paused device is not called back); woken, it
    writes the silence it skipped, so the WAV still runs in step with the clock."""
    speaker = Speaker(device_rate=16000, jitter_ms=0, idle_stop_s=0.04)
    pulls = count_pulls(speaker)
    output = WavOutput(tmp_path / "out.wav", period_ms=10)
    began = time.monotonic()
    output.start(speaker)
    await until(lambda: speaker.paused)
    resting, rest_began = pulls[0], time.monotonic()
    await asyncio.sleep(0.3)  # a rest, however long the loaded machine makes it
    assert pulls[0] == resting  # a resting speaker costs nothing
    rest = time.monotonic() - rest_began
    speaker.chime(chime("listening", 16000))
    await until(lambda: pulls[0] > resting and speaker.paused)  # the chime, then a rest again
    elapsed = time.monotonic() - began  # the writer runs on this loop: nothing is written after
    output.close()
    with wave.open(str(tmp_path / "out.wav")) as wav:
        written = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    assert np.any(written)  # the chime
    first_sound = int(np.flatnonzero(written)[0])
    assert first_sound >= (rest - 0.01) * 16000  # behind the silence of the rest (one period)
    assert len(written) <= (elapsed + 0.01) * 16000  # and never ahead of the clock


async def test_an_idle_stream_stops_and_a_chime_restarts_it(jack_clock: object) -> None:
    _, speaker_wav = jack_clock  # type: ignore[misc]
    speaker = Speaker(device_rate=48000, jitter_ms=0, idle_stop_s=0.2)
    pulls = count_pulls(speaker)
    output = PortAudioOutput("spk_rt", rate=48000, period_ms=20)
    output.start(speaker)
    for _ in range(200):
        if speaker.paused and output._stream.is_stopped():
            break
        await asyncio.sleep(0.01)
    # stopped, not merely completed: a completed ALSA stream's thread can spin in poll()
    assert speaker.paused and output._stream.is_stopped()
    assert output.alive() and output._stream_active()
    resting = pulls[0]
    await asyncio.sleep(0.3)
    assert pulls[0] == resting  # no writes while idle
    speaker.chime(chime("done", 48000))
    for _ in range(200):
        if pulls[0] > resting + 5:
            break
        await asyncio.sleep(0.01)
    assert pulls[0] > resting + 5 and output.alive()
    await asyncio.sleep(0.4)
    output.close()
    with wave.open(str(speaker_wav)) as wav:
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert np.count_nonzero(written) > len(chime("done", 48000)) // 4  # the chime was played


def watch_writes(output: PortAudioOutput) -> list[tuple[int, bool]]:
    """(frames the device still held, any sound) as each write to the real stream began."""
    writes: list[tuple[int, bool]] = []
    with output._control:
        stream = output._stream
        write = stream.write

        def watched(data: bytes, **options: Any) -> None:
            writes.append((output.device_frames - stream.get_write_available(), any(data)))
            write(data, **options)

        stream.write = watched
    return writes


@pytest.mark.parametrize(
    ("before", "idle_stop_s", "held_before_sound"),
    [("rested", 0.2, False), ("ran on silence", 2.0, False), ("ran on silence", 0.0, True)],
)
async def test_sound_after_silence_starts_on_an_empty_device(
    jack_clock: object, before: str, idle_stop_s: float, held_before_sound: bool
) -> None:
    """PortAudio starts a callback stream with its buffer full of silence, and a running device
    holds a buffer of it: a reply waited behind that (45 ms on the bench). The first sound now
    goes to an empty device, unless the device must never stop (speaker_idle_stop_s = 0, for
    amplifiers that pop): then it still waits behind the silence."""
    speaker = Speaker(device_rate=48000, jitter_ms=0, idle_stop_s=idle_stop_s)
    output = PortAudioOutput("spk_rt", rate=48000, period_ms=20)
    output.start(speaker, supervise=False)
    writes = watch_writes(output)
    speaker.chime(chime("listening", 48000))
    await until(lambda: any(sound for _, sound in writes))
    if before == "rested":
        await until(lambda: speaker.paused and output._stream.is_stopped())
        assert speaker.paused
    else:
        await until(lambda: len(writes) > 8 and not any(sound for _, sound in writes[-8:]))
        assert not speaker.paused and writes[-1][0] > 0
    silent_from = len(writes)
    speaker.chime(chime("listening", 48000))
    await until(lambda: any(sound for _, sound in writes[silent_from:]))
    output.close()
    held = next(held for held, sound in writes[silent_from:] if sound)
    assert (held > 0) is held_before_sound, writes
    assert speaker.underruns == 0  # a rest or a drop is not the device running dry


async def test_a_flush_drops_the_reply_the_device_still_holds(jack_clock: object) -> None:
    speaker = Speaker(device_rate=48000, jitter_ms=0, idle_stop_s=2.0)
    speaker.play(np.full(24000 * 3, 3000, np.int16).tobytes())
    output = PortAudioOutput("spk_rt", rate=48000, period_ms=20)
    output.start(speaker, supervise=False)
    writes = watch_writes(output)
    await until(lambda: len(writes) > 10)
    flushed_at = len(writes)
    speaker.flush()
    await until(lambda: len(writes) > flushed_at + 3)
    output.close()
    assert all(sound and held > 0 for held, sound in writes[2:flushed_at - 1]), writes
    assert 0 in [held for held, _ in writes[flushed_at : flushed_at + 2]], writes


STALLED_SPEAKER = """
import os, signal, sys, time
import numpy as np
from edge_agent.audio.playback import PortAudioOutput, Speaker

def wait_for(condition):  # the suite's timeout is the only limit
    while not condition():
        time.sleep(0.01)
    return True

speaker = Speaker(device_rate=48000, jitter_ms=0, idle_stop_s=2.0)
speaker.play(np.full(24000 * 10, 3000, np.int16).tobytes())
output = PortAudioOutput("spk_rt", rate=48000, period_ms=20)
output.start(speaker, supervise=False)
playing = wait_for(lambda: speaker.first_sample_at is not None) and output.alive()
os.kill(int(sys.argv[1]), signal.SIGSTOP)
dead = wait_for(lambda: not output.alive())
output.close()
print(playing, dead, "closed", flush=True)
os._exit(0)
"""


def test_a_stalled_speaker_shows_as_dead_to_the_watchdog_and_still_closes(
    jack_clock: object,
) -> None:
    """A device that stops taking audio (here its JACK server, stopped) hangs a blocking write
    for good: alive() turns False, so the watchdog stops and systemd restarts the daemon, and
    close() still returns. In a child process: the hung write stays hung in the process."""
    server = subprocess.run(
        ["pgrep", "-f", f"jackd -n {os.environ['JACK_DEFAULT_SERVER']} "],
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    try:
        child = subprocess.run(
            [sys.executable, "-c", STALLED_SPEAKER, server], capture_output=True, text=True
        )
    finally:
        os.kill(int(server), signal.SIGCONT)
        # The server must drop the dead child before the fixture stops it: stopped with a notice
        # to it pending, jackd dies of SIGPIPE and leaves its entry in JACK's shm registry (after
        # eight, no JACK server starts on the machine).
        for _ in range(50):
            ports = subprocess.run(["jack_lsp"], capture_output=True, text=True).stdout.split()
            if all(port.startswith("system:") for port in ports):
                break
            time.sleep(0.1)
    assert child.stdout.split() == ["True", "True", "closed"], child.stderr[-2000:]
    assert "the device stopped moving audio; left as it is" in child.stderr


async def test_a_writer_that_falls_behind_the_device_counts_an_underrun(jack_clock: object) -> None:
    speaker = Speaker(device_rate=48000, jitter_ms=0, idle_stop_s=2.0)
    speaker.play(np.full(24000 * 2, 3000, np.int16).tobytes())
    pulls = [0]
    pull = speaker.pull

    def late_pull(count: int) -> np.ndarray:
        pulls[0] += 1
        if pulls[0] == 10:
            time.sleep(0.2)  # the device holds 43 ms
        return pull(count)

    speaker.pull = late_pull  # type: ignore[method-assign]
    output = PortAudioOutput("spk_rt", rate=48000, period_ms=20)
    output.start(speaker, supervise=False)
    await until(lambda: speaker.underruns >= 1)
    output.close()
    assert pulls[0] > 10 and output.device_frames < 0.2 * 48000


def test_an_active_stream_that_moves_no_audio_counts_as_stopped() -> None:
    """The supervisor re-opens a stream that is active but moves no audio."""

    class RunningStream:
        def is_active(self) -> bool:
            return True

    microphone = Microphone("default", 30)
    microphone._stream = RunningStream()
    microphone.last_io = time.monotonic()
    assert microphone._stream_active()
    microphone.last_io -= STALLED_AFTER_S + 0.1
    assert not microphone._stream_active()


def gate_run(audio: np.ndarray, config: VadConfig | None = None) -> list[tuple[int, object]]:
    gate = SpeechGate(config or VadConfig())
    frame = gate.frame_ms * 16
    events = []
    for index in range(len(audio) // frame):
        for event in gate.feed(audio[index * frame : (index + 1) * frame].tobytes()):
            if not isinstance(event, TurnAudio):
                events.append((index, event))
    return events


def test_gate_one_turn_per_utterance_with_the_onset_kept(speech: Callable[..., np.ndarray]) -> None:
    audio = speech("what is the weather like", "tell me a joke", "thank you", gap_s=1.5)
    events = gate_run(audio)
    starts = [(i, e) for i, e in events if isinstance(e, TurnStart)]
    ends = [e for _, e in events if isinstance(e, TurnEnd)]
    assert len(starts) == 3 and len(ends) == 3
    loud = np.abs(audio.astype(int)) > 1000
    onsets = [i for i in range(1, len(loud)) if loud[i] and not loud[max(0, i - 8000) : i].any()]
    assert len(onsets) == 3
    for (index, start), onset in zip(starts, onsets, strict=True):
        assert isinstance(start, TurnStart)
        first_sample = (index + 1) * 480 - len(start.preroll) // 2
        assert first_sample <= onset  # the pre-roll reaches back before the first loud sample
        assert abs(start.speech_start_s - onset / 16000) < 0.15
    assert all(end.reason == "silence" for end in ends)


def test_gate_ignores_silence_clicks_and_noise(speech: Callable[..., np.ndarray]) -> None:
    assert gate_run(np.zeros(16000 * 3, np.int16)) == []
    clicks = np.zeros(16000 * 3, np.int16)
    for at in (8000, 24000, 40000):
        clicks[at : at + 160] = np.random.default_rng(at).integers(-20000, 20000, 160)
    assert gate_run(clicks) == []
    rng = np.random.default_rng(1)
    noisy = speech("open the door please", "and close it", gap_s=1.5).astype(float)
    noisy += rng.normal(0, 300, len(noisy))  # a fan in the room, about 20 dB below the voice
    events = gate_run(noisy.astype(np.int16), VadConfig(aggressiveness=3))
    assert sum(isinstance(e, TurnStart) for _, e in events) == 2


def test_gate_ends_turns_at_the_maximum_length(speech: Callable[..., np.ndarray]) -> None:
    audio = np.tile(speech("la la la la la la la la la", gap_s=0.05, lead_s=0.1), 3)
    events = gate_run(audio, VadConfig(max_turn_s=1.0))
    reasons = [e.reason for _, e in events if isinstance(e, TurnEnd)]
    assert reasons and reasons[0] == "max_length"


def echo_loop(mode: str, user_over_reply: np.ndarray | None = None) -> list[object]:
    """Plays a reply, feeds it back into the mic (gain 0.5, 40 ms late), returns gate events."""
    speaker = Speaker(device_rate=16000, jitter_ms=100)
    guard = EchoGuard(mode, speaker, tail_ms=400)
    gate = SpeechGate(VadConfig())
    speaker.play(synthesize_speech(3.0, seed=5))
    speaker.end_of_reply()
    delay = np.zeros(640, np.int16)
    played = []
    events: list[object] = []
    for index in range(150):  # 4.5 s of 30 ms frames
        out = samples(speaker.pull(480))
        played.append(out)
        echoed = np.concatenate([delay, out])
        delay, mic = echoed[480:], echoed[:480]
        mic = (mic * 0.5).astype(np.int16)
        if user_over_reply is not None:
            part = user_over_reply[index * 480 : (index + 1) * 480]
            mic[: len(part)] = np.clip(mic[: len(part)] + part, -32768, 32767)
        verdict = guard.check(mic.tobytes())
        events += [
            e for e in gate.feed(verdict.frame, verdict.suppressed) if isinstance(e, TurnStart)
        ]
    assert np.any(np.concatenate(played))
    return events


def test_without_a_guard_the_echo_opens_turns() -> None:
    assert echo_loop("none")  # proves the loop below is a real test


@pytest.mark.parametrize("mode", ["half_duplex", "aec"])
def test_the_models_own_voice_opens_no_turn(mode: str) -> None:
    assert echo_loop(mode) == []


def test_half_duplex_still_lets_a_loud_user_barge_in(speech: Callable[..., np.ndarray]) -> None:
    user = (speech("stop stop stop", lead_s=1.0, gap_s=0.5).astype(int) * 3).clip(-32768, 32767)
    assert echo_loop("half_duplex", user.astype(np.int16))


def test_resampler_streams_in_bursts_without_losing_samples() -> None:
    resampler = Resampler(48000, 16000)
    signal = make_signal(48000, 1.0, 1)
    pcm = signal.tobytes()
    out = [resampler.process(pcm[i : i + 2880]) for i in range(0, len(pcm), 2880)]
    out.append(resampler.process(b"", last=True))
    assert sum(len(o) for o in out) == 2 * 16000


async def test_a_vanished_microphone_is_reopened_when_it_returns(
    jack_clock: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import os

    caplog.set_level(logging.INFO)
    real_config = os.environ["ALSA_CONFIG_PATH"]
    no_mic = tmp_path / "no-mic.conf"  # PortAudio aborts without a default PCM: keep one
    no_mic.write_text("pcm.!default { type null }\n")
    frames: list[bytes] = []
    mic = Microphone("mic_rt", frame_ms=20, rate=16000)
    mic.start(frames.append)
    await until(lambda: len(frames) >= 15)  # 0.3 s of audio: the stream runs
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(no_mic))
    with mic._control:  # the device goes away (USB unplugged) between two reads
        mic._stream.stop_stream()  # type: ignore[union-attr]
    await until(lambda: "microphone unavailable" in caplog.text)
    assert "mic_rt" in caplog.text
    monkeypatch.setenv("ALSA_CONFIG_PATH", real_config)
    count = len(frames)
    await until(lambda: len(frames) > count + 5)
    await mic.close()
    assert "microphone is back" in caplog.text and len(frames) > count + 5


def test_the_jitter_buffer_adapts_to_the_delivery_it_has_seen_and_flush_stays_instant() -> None:
    now = [0.0]
    speaker = Speaker(device_rate=24000, jitter_ms=100, clock=lambda: now[0])
    chunk = np.full(960, 700, np.int16).tobytes()  # 40 ms

    def reply(gap_s: float) -> bool:
        """Three chunks gap_s apart, played out: did the first chunk play at once?"""
        speaker.play(chunk)
        at_once = bool(np.any(samples(speaker.pull(480))))
        for _ in range(2):
            now[0] += gap_s
            speaker.play(chunk)
        speaker.end_of_reply()
        while speaker.buffered_s:
            speaker.pull(480)
        return at_once

    assert not reply(0.01)  # nothing seen yet: it waits for jitter_ms (100 ms) of audio
    for _ in range(3):
        reply(0.01)
    assert reply(0.01)  # chunks 10 ms apart: 40 ms buffered covers that, it plays at once
    speaker.play(chunk)
    now[0] += 0.3  # a 300 ms stall: counted at once, the cap (jitter_ms) holds
    speaker.play(chunk)
    assert speaker.start_samples() == speaker.jitter_samples
    assert speaker.underruns == 0
    assert speaker.flush() == pytest.approx(0.08)
    assert not np.any(samples(speaker.pull(480)))  # barge-in: nothing queued plays


async def test_devices_that_take_the_model_rates_are_opened_at_them(
    alsa_files: tuple[Path, Path],
) -> None:
    """rate 0: 16 kHz in and 24 kHz out where the device takes them, so soxr has nothing to do."""
    mic_raw, _ = alsa_files
    mic_raw.write_bytes(make_signal(16000, 0.2, 1).tobytes())
    mic = Microphone("mic", frame_ms=20, max_seconds=0.2)
    mic.open(lambda frame: None)
    await mic.close()
    assert (mic.rate, mic.channels) == (16000, 1)
    assert PortAudioOutput("speaker").probe_rate() == 24000
    assert PortAudioOutput("speaker", rate=44100).probe_rate() == 44100


def test_aec_drops_its_stale_far_end_while_the_speaker_rests() -> None:
    """Resting, the guard reads no far end; what the device played before it stopped must not
    sit in front of the next reply's, out of step with the echo it belongs to."""
    speaker = Speaker(device_rate=16000, jitter_ms=0, idle_stop_s=0.1)
    guard = EchoGuard("aec", speaker, tail_ms=400)
    speaker.pull(3200)  # silence, heard by the guard as its far end
    assert speaker.pause_if_idle() and guard._reference.size == 3200
    verdict = guard.check(bytes(960))
    assert not verdict.suppressed and guard._reference.size == 0
