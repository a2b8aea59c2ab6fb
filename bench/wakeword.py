"""python -m bench.wakeword: the wake word's detection rate, false wakes per hour, and the
instructions a minute of listening costs (callgrind), side by side with start = "speech".

- Positive set: each built-in word said by espeak-ng in VOICES x SPEEDS, alone and followed by
  a question, clean and over pink noise at 10 dB SNR. A clip counts if its model fires on it.
  Near misses ("okay now", "alex", ...) said on purpose are counted apart.
- Negative set: at least --minutes of audio without any wake word: English prose (the GPL-3
  text shipped with Debian) read by the same voices at the same speeds, babble (three voices at
  once), a TV-like mix (speech over tones and noise), and noises (pink, brown, white, tones).
  The stream is fed continuously in 30 ms frames; a firing counts as one false wake per
  refractory period (2 s), as in the agent.
- Cost: `edge-agent simulate` over N and 2N minutes of a quiet room (noise at -50 dBFS, which
  opens nothing), under callgrind; the difference is one more minute of listening.
Audio is cached under $TMPDIR/edge-agent-bench-wakeword.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from bench.pi import callgrind, pi_percent
from edge_agent.config import WakeWordConfig
from edge_agent.wakeword import Detector, load_models

RATE = 16000
FRAME = 480  # 30 ms, the agent's frame
VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-us+f3",
    "en-gb+f2",
    "en-us+m3",
    "en-029+f4",
)
SPEEDS = (130, 150, 170, 190, 210)
WORDS = {"okay_nabu": "okay nabu", "alexa": "alexa", "hey_jarvis": "hey jarvis"}
PROSE = Path("/usr/share/common-licenses/GPL-3")
CACHE = Path(tempfile.gettempdir()) / "edge-agent-bench-wakeword"
LISTEN_CONFIG = """
[conversation]
start = "{start}"
[service]
log_level = "warning"
"""


def say(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng at 16 kHz, cached by its arguments."""
    CACHE.mkdir(exist_ok=True)
    name = re.sub(r"[^a-z0-9]+", "_", f"{voice}_{speed}_{text.lower()}")[:120]
    path = CACHE / f"{name}_{hashlib.sha1(text.encode()).hexdigest()[:8]}.wav"
    if not path.exists():
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text]
        subprocess.run(command, check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return np.asarray(soxr.resample(samples, rate, RATE), dtype=np.int16)


def pink_noise(samples: int, rms: float, seed: int) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=samples))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, samples)
    return noise / (np.sqrt(np.mean(noise**2)) or 1.0) * rms


def level(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def clip(samples: np.ndarray) -> np.ndarray:
    return np.clip(samples, -32768, 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def fires(detector: Detector, audio: np.ndarray) -> list[list[float]]:
    """For each model, the times (s) it fired, one per refractory period of 2 s."""
    times: list[list[float]] = [[] for _ in detector.models]
    pcm = audio.tobytes()
    for index, start in enumerate(range(0, len(pcm) - 2 * FRAME + 1, 2 * FRAME)):
        now = (index + 1) * FRAME / RATE
        for model in detector.feed(pcm[start : start + 2 * FRAME]):
            if not times[model] or now - times[model][-1] >= 2.0:
                times[model].append(now)
    return times


def detector_for(names: list[str]) -> Detector:
    return Detector(load_models(WakeWordConfig(models=names)))


CONDITIONS = ("alone, clean", "alone, noise", "+ question, clean", "+ question, noise")
NEAR_MISSES = {
    "okay_nabu": ("okay now", "okay, no problem", "okay, nab it", "oh, canoe boo"),
    "alexa": ("alex", "a lexus", "elect a", "alexander"),
    "hey_jarvis": ("hey, jar this", "hey travis", "hey, service", "jarvis"),
}


@dataclass
class Detection:
    model: str
    clips: dict[str, int]  # per condition
    detected: dict[str, int]
    near_misses: int = 0  # firings on NEAR_MISSES, each said by every voice at 170 wpm
    near_clips: int = 0


def detected_in(model: str, audio: np.ndarray) -> bool:
    return bool(fires(detector_for([model]), audio)[0])  # a fresh detector per clip


def positives() -> list[Detection]:
    results = []
    for model, word in WORDS.items():
        row = Detection(model, dict.fromkeys(CONDITIONS, 0), dict.fromkeys(CONDITIONS, 0))
        for voice in VOICES:
            for speed in SPEEDS:
                spoken = say(word, voice, speed)
                follow = say(f"{word}, what time is it", voice, speed)
                for seed, sample in enumerate((spoken, follow)):
                    body = np.concatenate([silence(0.5), sample, silence(1.0)])
                    noisy = body + pink_noise(len(body), level(sample) / 10**0.5, seed)
                    for noise, audio in enumerate((body, clip(noisy))):
                        condition = CONDITIONS[2 * seed + noise]
                        row.clips[condition] += 1
                        row.detected[condition] += detected_in(model, audio)
        for phrase in NEAR_MISSES[model]:
            for voice in VOICES:
                audio = np.concatenate([silence(0.5), say(phrase, voice, 170), silence(1.0)])
                row.near_clips += 1
                row.near_misses += detected_in(model, audio)
        results.append(row)
    return results


def sentences(minutes: float) -> list[str]:
    text = re.sub(r"\s+", " ", PROSE.read_text("utf-8"))
    parts = [s.strip() for s in re.split(r"(?<=[.;:])\s", text) if 20 < len(s.strip()) < 300]
    return parts[: int(minutes * 60 / 2.5) + 50]  # about 2.5 s each at the mean speed


def negatives(minutes: float) -> tuple[np.ndarray, dict[str, float]]:
    """About minutes of audio with no wake word, and how many minutes of each kind."""
    prose_minutes = minutes * 0.7
    parts: list[np.ndarray] = []
    kinds: dict[str, float] = {}
    spoken = 0
    for index, line in enumerate(sentences(prose_minutes)):
        if spoken >= prose_minutes * 60 * RATE:
            break
        voice, speed = VOICES[index % len(VOICES)], SPEEDS[(index // 3) % len(SPEEDS)]
        speech = say(line, voice, speed)
        parts += [speech, silence(0.4)]
        spoken += len(speech) + int(0.4 * RATE)
    kinds["speech"] = spoken / RATE / 60
    rng = np.random.default_rng(7)
    lines = [p for p in parts if len(p) > RATE]
    babble_s = mixed = 0.0
    while babble_s < minutes * 0.1 * 60:
        picks = [lines[i].astype(np.float64) for i in rng.choice(len(lines), 3, replace=False)]
        span = np.zeros(max(len(p) for p in picks) + RATE // 3)
        for offset, pick in enumerate(picks):
            span[offset * RATE // 6 : offset * RATE // 6 + len(pick)] += 0.6 * pick
        parts.append(clip(span))
        babble_s += len(span) / RATE
    kinds["babble"] = babble_s / 60
    while mixed < minutes * 0.1 * 60:
        speech = lines[int(rng.integers(len(lines)))].astype(np.float64)
        t = np.arange(len(speech) + RATE) / RATE
        chord = rng.choice([196.0, 220.0, 262.0, 294.0, 330.0, 392.0], 3, replace=False)
        music = sum(1500 * np.sin(2 * np.pi * f * t) for f in chord) * (np.sin(2 * np.pi * t) > 0)
        tv = music + pink_noise(len(t), 600, int(rng.integers(1000)))
        tv[: len(speech)] += speech
        parts.append(clip(tv))
        mixed += len(tv) / RATE
    kinds["TV-like mix"] = mixed / 60
    noise_s = minutes * 0.1 * 60
    piece = int(noise_s / 4 * RATE)
    brown = np.cumsum(np.random.default_rng(3).normal(size=piece))
    brown = (brown - np.convolve(brown, np.ones(400) / 400, "same")) * 40
    t = np.arange(piece) / RATE
    tones = 2000 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    white = np.random.default_rng(4).normal(0, 1500, piece)
    parts += [clip(x) for x in (pink_noise(piece, 2000, 5), brown, white, tones)]
    kinds["noise"] = 4 * piece / RATE / 60
    return np.concatenate(parts), kinds


def false_wakes(audio: np.ndarray) -> dict[str, int]:
    detector = detector_for(list(WORDS))
    return {model: len(times) for model, times in zip(WORDS, fires(detector, audio), strict=True)}


def listening_cost(folder: Path) -> dict[str, float]:
    """Instructions per minute of a quiet room for start = speech and start = wake_word."""
    from edge_agent.emulator.server import Emulator, EmulatorOptions

    room = [clip(pink_noise(int(m * 60 * RATE), 32768 * 10 ** (-50 / 20), 9)) for m in (1, 2)]
    wavs = []
    for run, samples in enumerate(room):
        path = folder / f"room{run}.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(samples.tobytes())
        wavs.append(path)

    async def measure() -> dict[str, float]:
        emulator = Emulator(EmulatorOptions(cert_dir=folder))
        await emulator.start()
        costs = {}
        try:
            for start in ("speech", "wake_word"):
                config = folder / f"{start}.toml"
                config.write_text(LISTEN_CONFIG.format(start=start))
                counts = []
                for run, wav in enumerate(wavs):
                    command = [sys.executable, "-m", "edge_agent", "simulate", "--config"]
                    command += [str(config), "--input", str(wav), "--endpoint", emulator.url]
                    command += ["--ca-file", str(emulator.cert_path)]
                    out = folder / f"{start}{run}.out"
                    counts.append(await asyncio.to_thread(callgrind, command, out))
                costs[start] = float(counts[1] - counts[0])  # the second run is 1 min longer
        finally:
            await emulator.stop()
        return costs

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wakeword")
    parser.add_argument("--minutes", type=float, default=32.0, help="negative audio, at least")
    parser.add_argument("--no-callgrind", action="store_true", help="skip the instruction count")
    args = parser.parse_args()
    if not shutil.which("espeak-ng"):
        sys.exit("espeak-ng is needed: apt install espeak-ng")
    print(f"| model | {' | '.join(CONDITIONS)} | all | near misses fired |")
    print("|---" * (len(CONDITIONS) + 3) + "|")
    for row in positives():
        cells = [f"{row.detected[c]}/{row.clips[c]}" for c in CONDITIONS]
        total = sum(row.detected.values()) / sum(row.clips.values())
        near = f"{row.near_misses}/{row.near_clips}"
        print(f"| {row.model} | {' | '.join(cells)} | {total:.1%} | {near} |")
    audio, kinds = negatives(args.minutes)
    hours = len(audio) / RATE / 3600
    what = ", ".join(f"{kind} {value:.1f}" for kind, value in kinds.items())
    print(f"\nnegative audio: {hours * 60:.1f} min ({what} min)")
    print("| model | false wakes | per hour |\n|---|---|---|")
    for model, count in false_wakes(audio).items():
        print(f"| {model} | {count} | {count / hours:.2f} |")
    if args.no_callgrind or not shutil.which("valgrind"):
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-wakeword-"))
    costs = listening_cost(folder)
    print("\n| a minute of listening | instructions | Pi Zero 2 W core |\n|---|---|---|")
    for start, value in costs.items():
        print(f'| start = "{start}" | {value / 1e9:.2f} G | {pi_percent(value):.1f}% |')
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
