"""`edge-agent test-audio`: record from the configured microphone, measure it, run the speech
gate over it, play it back and a tone on the configured speaker, and say what is wrong."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.audio.capture import FILE_PREFIX, Microphone, read_wav_16k_mono
from edge_agent.audio.devices import DeviceNotFound
from edge_agent.audio.playback import PortAudioOutput, Speaker, open_wav_writer
from edge_agent.audio.resample import MODEL_INPUT_RATE, MODEL_OUTPUT_RATE, Resampler
from edge_agent.audio.vad import SpeechGate, TurnEnd, TurnStart
from edge_agent.config import Config

NO_SIGNAL_DBFS = -60.0  # a live microphone hears at least the room; digital silence is -inf
CLIPPED = 32000  # a sample this close to full scale was clipped
CLIPPING_SHARE = 0.001
TONE_HZ, TONE_S, TONE_DBFS = 440.0, 1.0, -12.0
PA_INVALID_RATE, PA_DEVICE_UNAVAILABLE, PA_INVALID_CHANNELS = -9997, -9985, -9998

Say = Callable[[str], None]


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def test_audio(config: Config, seconds: float, say: Say) -> Report:
    report = Report()
    audio = config.audio
    say(f"recording {seconds:g} s from {audio.input_device!r}: say a sentence now")
    try:
        recording = await _record(config, seconds, say)
    except (DeviceNotFound, OSError) as exc:
        report.problems.append(_explain(exc, "microphone", audio.input_device, "input_rate"))
        return report
    _measure(recording, report, say)
    _gate(config, recording, report, say)
    try:
        await _play(config, recording, say)
    except (DeviceNotFound, OSError) as exc:
        report.problems.append(_explain(exc, "speaker", audio.output_device, "output_rate"))
    return report


async def _record(config: Config, seconds: float, say: Say) -> np.ndarray:
    spec = config.audio.input_device
    wanted = int(seconds * MODEL_INPUT_RATE)
    if spec.startswith(FILE_PREFIX):
        pcm = read_wav_16k_mono(Path(spec[len(FILE_PREFIX) :]))
        samples = np.frombuffer(pcm, dtype="<i2")[:wanted]
        say(f"microphone: {spec}, {len(samples) / MODEL_INPUT_RATE:.1f} s")
        return samples
    frames: list[bytes] = []
    mic = Microphone(spec, config.vad.frame_ms, config.audio.input_rate, max_seconds=seconds)
    mic.open(frames.append)
    try:
        frame_samples = mic.frame_samples
        for _ in range(int((seconds + 3) / 0.05)):  # a device that stops calling back ends it
            if len(frames) * frame_samples >= wanted - frame_samples:
                break
            await asyncio.sleep(0.05)
    finally:
        await mic.close()
    samples = np.frombuffer(b"".join(frames), dtype="<i2")
    say(
        f"microphone: {mic.device_name} at {mic.rate} Hz, {mic.channels} channel(s), "
        f"{len(samples) / MODEL_INPUT_RATE:.1f} s"
    )
    return samples


def dbfs(value: float) -> float:
    return 20 * math.log10(value / 32768) if value > 0 else -math.inf


def _measure(samples: np.ndarray, report: Report, say: Say) -> None:
    wide = samples.astype(np.float64)
    peak = float(np.max(np.abs(wide))) if len(wide) else 0.0
    rms = float(np.sqrt(np.mean(wide * wide))) if len(wide) else 0.0
    clipped = float(np.mean(np.abs(wide) >= CLIPPED)) if len(wide) else 0.0
    say(f"level: peak {dbfs(peak):.1f} dBFS, rms {dbfs(rms):.1f} dBFS, clipped {clipped:.2%}")
    if not len(samples):
        report.problems.append("no signal: the microphone delivered no audio at all")
    elif dbfs(peak) < NO_SIGNAL_DBFS:
        report.problems.append(
            f"no signal: the loudest sample is {dbfs(peak):.0f} dBFS (a muted or unplugged "
            "microphone, capture gain at 0, or the wrong device: `alsamixer` F4, "
            "`edge-agent devices`)"
        )
    elif clipped > CLIPPING_SHARE:
        report.problems.append(
            f"clipping: {clipped:.1%} of the samples are at full scale; turn the capture gain "
            "down (`alsamixer` F4) or speak further from the microphone"
        )


def _gate(config: Config, samples: np.ndarray, report: Report, say: Say) -> None:
    gate = SpeechGate(config.vad)
    size = MODEL_INPUT_RATE * config.vad.frame_ms // 1000
    frames = [samples[i : i + size].tobytes() for i in range(0, len(samples) - size + 1, size)]
    voiced, turns, start = 0, [], 0.0
    for frame in frames:
        voiced += gate.is_speech(frame)
        for event in gate.feed(frame):
            if isinstance(event, TurnStart):
                start = event.speech_start_s
            elif isinstance(event, TurnEnd):
                turns.append((start, event.speech_end_s))
    end = gate.force_end()
    if end is not None:
        turns.append((start, end.speech_end_s))
    spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in turns)
    say(
        f"speech gate: speech in {voiced} of {len(frames)} frames; "
        f"{len(turns)} turn(s){': ' + spans if spans else ''}"
    )
    if not turns and not report.problems:
        report.notes.append(
            "the speech gate heard no speech: speak during the recording; if you did, the "
            f"voice is below [vad] min_level_dbfs = {config.vad.min_level_dbfs:g} or "
            f"[vad] aggressiveness = {config.vad.aggressiveness} is too strict"
        )


def tone(rate: int) -> np.ndarray:
    t = np.arange(int(TONE_S * rate)) / rate
    fade = np.minimum(1.0, np.minimum(t, TONE_S - t) / 0.01)
    amplitude = 32767 * 10 ** (TONE_DBFS / 20)
    return (amplitude * fade * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


async def _play(config: Config, recording: np.ndarray, say: Say) -> None:
    to_24k = Resampler(MODEL_INPUT_RATE, MODEL_OUTPUT_RATE)
    voice = np.frombuffer(to_24k.process(recording.tobytes(), last=True), dtype="<i2")
    pcm = np.concatenate([voice, np.zeros(MODEL_OUTPUT_RATE // 4, np.int16), tone(24000)])
    spec = config.audio.output_device
    what = f"the recording ({len(voice) / MODEL_OUTPUT_RATE:.1f} s) and a {TONE_HZ:g} Hz tone"
    if spec.startswith(FILE_PREFIX):
        path = Path(spec[len(FILE_PREFIX) :])
        with path.open("wb") as file, open_wav_writer(file, MODEL_OUTPUT_RATE) as wav:
            louder = np.clip(pcm * config.audio.volume, -32768, 32767).astype(np.int16)
            wav.writeframes(louder.tobytes())
        say(f"speaker: wrote {what} to {spec}")
        return
    output = PortAudioOutput(spec, config.audio.output_rate, period_ms=config.audio.period_ms)
    # the speaker stops itself after 0.2 s of silence: on a device that is when it has played
    speaker = Speaker(output.probe_rate(), volume=config.audio.volume, idle_stop_s=0.2)
    output.start(speaker, supervise=False)
    try:
        speaker.play(pcm.tobytes())
        speaker.end_of_reply()
        for _ in range(int((len(pcm) / MODEL_OUTPUT_RATE + 5) / 0.02)):
            if speaker.buffered_s == 0 and speaker.paused:
                break
            await asyncio.sleep(0.02)
    finally:
        output.close()  # Pa_StopStream plays out what the device still holds
    say(f"speaker: {output.device_name} at {output.rate} Hz: played {what}")


def _explain(exc: Exception, part: str, spec: str, rate_key: str) -> str:
    if isinstance(exc, DeviceNotFound):
        return f"{part}: {exc}"
    code = exc.errno if isinstance(exc, OSError) else None
    if code == PA_DEVICE_UNAVAILABLE or "busy" in str(exc).lower():
        return (
            f"{part} {spec!r} is busy: another program holds it (`fuser -v /dev/snd/*`); "
            "share the card through edge_mic/edge_speaker (hardware/setup-pi.sh --board)"
        )
    if code == PA_INVALID_RATE:
        return (
            f"{part} {spec!r} refuses the sample rate: set [audio] {rate_key} = 0 (the "
            "device's own) or a rate it takes (`arecord -D DEVICE --dump-hw-params`)"
        )
    if code == PA_INVALID_CHANNELS:
        return f"{part} {spec!r} refuses the channel count: use a plug PCM such as edge_mic"
    return f"{part} {spec!r} cannot be opened: {exc}"

