"""python -m bench.corpus [--quick] --out DIR: the turn-taking corpus, made at run time.

Speech comes from espeak-ng (several voices, languages, speeds and pitches), noise from sox
(pink and brown noise, tones), babble from espeak-ng voices mixed together. Every file is 48 kHz
stereo, as a USB sound card delivers it; manifest.json lists each file's expected turns (first
and last audible sample of the foreground speaker), whether a turn is a single sentence, and how
many seconds of the file are noise or babble without the foreground speaker.

Nothing here is committed as audio: the files are rebuilt from a fixed seed, utterances are
cached in DIR/cache. `--quick` is the subset the tests run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soxr

RATE = 16000  # files are mixed at 16 kHz, then written at FILE_RATE
FILE_RATE = 48000
SPEAKER_DBFS = -22.0  # the foreground speaker's active-speech RMS at a normal distance
VOICES = (
    ("en-us", 170, 50),
    ("en-gb+f3", 160, 60),
    ("en-gb-scotland+m3", 180, 40),
    ("en-us+f2", 190, 70),
    ("en-029+m7", 150, 35),
)
OTHER_LANGUAGES = (
    ("de", "Wie wird das Wetter morgen in Berlin"),
    ("fr", "Quelle heure est-il à Paris maintenant"),
    ("es", "Cuál es la capital de Australia"),
    ("it", "Che tempo fa domani a Roma"),
    ("nl", "Hoe laat is het nu in Amsterdam"),
    ("pt", "Qual é a montanha mais alta do mundo"),
)
QUESTIONS = (
    "what is the weather like today",
    "tell me a story about a fox",
    "what time is it in Tokyo",
    "how tall is the Eiffel tower",
    "can you set a timer for ten minutes",
    "who wrote the book Moby Dick",
    "how far is the moon from the earth",
    "turn off the lights in the kitchen",
    "what is the capital of Canada",
    "remind me to call my sister tomorrow",
    "how many grams are in a pound",
    "what should I cook for dinner tonight",
    "is it going to rain this weekend",
    "play some music please",
    "what is the square root of eighty one",
    "how do you say thank you in Japanese",
    "when does the next train leave for the city",
    "why is the sky blue",
    "what is on my calendar for Friday",
    "how long should I boil an egg",
)
OPENINGS = (  # a phrase, then a thinking pause, then the rest of the turn
    "so",
    "well",
    "hmm, let me think",
    "I was wondering",
    "okay so",
    "tell me",
    "and also",
    "the thing is",
    "can you",
    "what about",
)
CONTINUATIONS = (
    "what the weather will be like on Saturday",
    "how long it takes to drive to the coast",
    "whether the shop on the corner is open late",
    "a good name for a small grey cat",
    "the fastest way to cool down a hot room",
    "how to say good morning in Italian",
    "what time the museum closes on Sundays",
    "why my plants keep losing their leaves",
)
MONOLOGUE = (
    "let me tell you about my trip to the mountains last summer",
    "we left early in the morning when the air was still cold",
    "the road climbed for hours through forests and small villages",
    "at noon we stopped by a lake and had a long lunch on the grass",
    "in the afternoon the weather turned and it started to rain",
    "we found a small hut where an old shepherd gave us tea",
    "he told us stories about the winters he had spent up there",
    "the next day the sky was clear and we could see the whole valley",
    "we walked along the ridge until the sun went down behind the peaks",
    "it was one of the most beautiful days I can remember",
    "I would love to go back there again next year with my family",
)


@dataclass
class Turn:
    start_s: float
    end_s: float
    single: bool  # one sentence without inner pauses: counts for the end-of-turn latency


@dataclass
class Clip:
    name: str
    turns: list[Turn] = field(default_factory=list)
    noise_s: float = 0.0  # noise or babble without the foreground speaker (false-turn budget)


class Speech:
    """espeak-ng utterances at 16 kHz, float, cached on disk by their text and voice."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def say(self, text: str, voice: tuple[str, int, int]) -> np.ndarray:
        name, speed, pitch = voice
        key = hashlib.sha1(f"{text}|{name}|{speed}|{pitch}".encode()).hexdigest()[:16]
        path = self.cache / f"{key}.npy"
        if path.exists():
            return np.load(path)
        wav_path = self.cache / f"{key}.wav"
        command = ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch), "-w"]
        subprocess.run([*command, str(wav_path), text], check=True, capture_output=True)
        with wave.open(str(wav_path)) as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32)
        wav_path.unlink()
        samples = np.asarray(soxr.resample(raw, rate, RATE), np.float32)
        audible = np.flatnonzero(np.abs(samples) > 0.01 * np.max(np.abs(samples)))
        samples = samples[audible[0] : audible[-1] + 1]  # trimmed to the audible part
        samples *= 10 ** (SPEAKER_DBFS / 20) * 32768 / active_rms(samples)
        np.save(path, samples)
        return samples


def active_rms(samples: np.ndarray) -> float:
    frames = samples[: len(samples) // 480 * 480].reshape(-1, 480)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    active = power[power > np.max(power) * 1e-3]
    return float(np.sqrt(np.mean(active))) if len(active) else 1.0


def sox_noise(seconds: float, *effects: str, seed: int = 0) -> np.ndarray:
    """`sox -n` synth output at 16 kHz, float (full scale 32768)."""
    command = ["sox", "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed"]
    command += ["-t", "raw", "-", "synth", f"{seconds:.3f}", *effects]
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    samples = np.frombuffer(raw, "<i2").astype(np.float32)
    samples = np.pad(samples, (0, max(0, int(seconds * RATE) - len(samples))))
    samples = samples[: int(seconds * RATE)]
    if "noise" in " ".join(effects):  # sox -R repeats its noise; shift it per seed
        samples = np.roll(samples, seed * 7919)
    return samples


def at_dbfs(samples: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1.0
    return samples * (10 ** (dbfs / 20) * 32768 / rms)


class Track:
    """The foreground speaker's timeline, with the expected turns, and the background bed."""

    def __init__(self, name: str, rng: np.random.Generator) -> None:
        self.clip = Clip(name)
        self.rng = rng
        self.parts: list[np.ndarray] = []
        self.length = 0

    def pause(self, seconds: float) -> None:
        samples = int(seconds * RATE)
        self.parts.append(np.zeros(samples, np.float32))
        self.length += samples

    def turn(self, chunks: list[np.ndarray], pauses: list[float], gain_db: float = 0.0) -> None:
        start = self.length
        for index, chunk in enumerate(chunks):
            if index:
                self.pause(pauses[index - 1])
            self.parts.append(chunk * 10 ** (gain_db / 20))
            self.length += len(chunk)
        single = len(chunks) == 1
        self.clip.turns.append(Turn(start / RATE, self.length / RATE, single))

    def gap(self) -> None:
        self.pause(float(self.rng.uniform(3.0, 5.0)))

    def foreground(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


def room(seconds: float, dbfs: float, seed: int) -> np.ndarray:
    """A quiet room: brown noise (mains hum, fan) at `dbfs`."""
    return at_dbfs(sox_noise(seconds, "brownnoise", seed=seed), dbfs)


def babble(speech: Speech, seconds: float, rng: np.random.Generator, voices: int = 2) -> np.ndarray:
    """Several espeak-ng voices talking at once without pause, like a TV in the room."""
    total = int(seconds * RATE)
    out = np.zeros(total, np.float32)
    for index in range(voices):
        voice = VOICES[(index + 2) % len(VOICES)]
        at = int(rng.uniform(0, 0.2) * RATE)  # already on (a TV coming on: noise_clip "tv-on")
        while at < total:
            text = str(rng.choice(QUESTIONS + CONTINUATIONS + MONOLOGUE))
            sample = speech.say(text, voice)[: total - at]
            out[at : at + len(sample)] += sample
            at += len(sample) + int(rng.uniform(0.1, 0.4) * RATE)
    return out


def bursts(seconds: float, rng: np.random.Generator, count: int) -> np.ndarray:
    """Pink-noise bursts (0.1-0.5 s), coughs (band-passed bursts) and door slams (thumps)."""
    out = np.zeros(int(seconds * RATE), np.float32)
    for index in range(count):
        kind = index % 3
        if kind == 0:
            length = float(rng.uniform(0.1, 0.5))
            sound = at_dbfs(
                sox_noise(length, "pinknoise", seed=index), float(rng.uniform(-30, -15))
            )
        elif kind == 1:
            length = float(rng.uniform(0.15, 0.35))
            fade = f"{length / 2:.3f}"
            effects = ("pinknoise", "sinc", "300-3000", "fade", "q", "0.02", "-0", fade)
            sound = at_dbfs(sox_noise(length, *effects, seed=index), float(rng.uniform(-25, -12)))
        else:
            length = 0.4
            noise = sox_noise(length, "brownnoise", seed=index) * np.exp(
                -np.arange(int(length * RATE)) / (0.06 * RATE)
            )
            sound = at_dbfs(noise, float(rng.uniform(-20, -8)))
        at = int(rng.uniform(0, seconds - 0.6) * RATE)
        out[at : at + len(sound)] += sound[: len(out) - at]
    return out


def music(seconds: float, rng: np.random.Generator, dbfs: float) -> np.ndarray:
    """Music-like tones: a melody of notes with harmonics (sox's pluck), and a steady drone."""
    notes = []
    total = 0.0
    while total < seconds:
        length = float(rng.choice([0.25, 0.5, 0.75]))
        note = int(rng.choice([0, 2, 4, 5, 7, 9, 11, 12]))
        notes.append(sox_noise(length, "pluck", f"%{note - 12}"))
        total += length
    melody = np.concatenate(notes)[: int(seconds * RATE)]
    drone = sox_noise(seconds, "sine", "110", "sine", "165")[: len(melody)]
    return at_dbfs(melody + 0.3 * drone, dbfs)


Recipe = Callable[[Speech, np.random.Generator], tuple[Track, np.ndarray]]


def questions_clip(voice: int, count: int) -> Recipe:
    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        track = Track(f"questions-{VOICES[voice][0]}", rng)
        track.pause(1.0)
        for index in range(count):
            text = QUESTIONS[(voice * 7 + index) % len(QUESTIONS)]
            track.turn([speech.say(text, VOICES[voice])], [])
            track.gap()
        return track, room(track.length / RATE, -65, voice)

    return make


def pauses_clip(voice: int, count: int) -> Recipe:
    """Turns of an opening, a 0.3-1.2 s pause, a continuation, sometimes a short second pause."""

    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        track = Track(f"pauses-{VOICES[voice][0]}", rng)
        track.pause(1.0)
        for index in range(count):
            opening = OPENINGS[(voice * 3 + index) % len(OPENINGS)]
            rest = CONTINUATIONS[(voice + index) % len(CONTINUATIONS)]
            chunks = [speech.say(opening, VOICES[voice]), speech.say(rest, VOICES[voice])]
            pauses = [float(rng.uniform(0.3, 1.2))]
            if index % 3 == 2:  # a second sentence after a short breath
                chunks.append(speech.say("thank you", VOICES[voice]))
                pauses.append(float(rng.uniform(0.3, 0.6)))
            track.turn(chunks, pauses)
            track.gap()
        return track, room(track.length / RATE, -60, voice)

    return make


def noisy_clip(kind: str, voice: int, count: int) -> Recipe:
    """Questions over a background: bursts, babble at -12 dB, a steady tone, or music."""

    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        track = Track(f"{kind}-{VOICES[voice][0]}", rng)
        track.pause(2.0)
        for index in range(count):
            text = QUESTIONS[(voice * 5 + index * 3) % len(QUESTIONS)]
            track.turn([speech.say(text, VOICES[voice])], [])
            track.gap()
        seconds = track.length / RATE
        if kind == "babble":
            bed = at_dbfs(babble(speech, seconds, rng), SPEAKER_DBFS - 12)
        elif kind == "tone":
            bed = at_dbfs(sox_noise(seconds, "sine", "440", "sine", "880"), SPEAKER_DBFS - 15)
        elif kind == "music":
            bed = music(seconds, rng, SPEAKER_DBFS - 15)
        else:  # bursts: only in the gaps, so that a turn's start is not masked
            bed = np.zeros(track.length, np.float32)
            cursor = 0
            for turn in track.clip.turns:
                gap_end = int(turn.start_s * RATE) - int(0.5 * RATE)
                if gap_end - cursor > RATE:
                    span = (gap_end - cursor) / RATE
                    bed[cursor:gap_end] = bursts(span, rng, 2)
                cursor = int(turn.end_s * RATE) + int(0.8 * RATE)
        bed = bed[: track.length] + room(seconds, -62, voice)[: track.length]
        return track, bed

    return make


def level_clip(gain_db: float, voice: int, count: int) -> Recipe:
    """A quiet (far, soft) or loud (close, near clipping) speaker."""

    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        name = "quiet" if gain_db < 0 else "loud"
        track = Track(f"{name}-{VOICES[voice][0]}", rng)
        track.pause(1.5)
        for index in range(count):
            text = QUESTIONS[(voice * 3 + index * 7) % len(QUESTIONS)]
            track.turn([speech.say(text, VOICES[voice])], [], gain_db)
            track.gap()
        return track, room(track.length / RATE, -70 if gain_db < 0 else -60, voice)

    return make


def languages_clip(count: int) -> Recipe:
    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        track = Track("languages", rng)
        track.pause(1.0)
        for index in range(count):
            language, text = OTHER_LANGUAGES[index % len(OTHER_LANGUAGES)]
            track.turn([speech.say(text, (language, 160 + 10 * (index % 3), 50))], [])
            track.gap()
        return track, room(track.length / RATE, -62, 7)

    return make


def monologue_clip(voice: int, sentences: int) -> Recipe:
    """One turn over 30 s: sentences with 0.3-0.6 s breaths (over max_turn_s)."""

    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        track = Track(f"monologue-{VOICES[voice][0]}", rng)
        track.pause(1.0)
        chunks = [
            speech.say(MONOLOGUE[i % len(MONOLOGUE)], VOICES[voice]) for i in range(sentences)
        ]
        pauses = [float(rng.uniform(0.3, 0.6)) for _ in chunks[1:]]
        track.turn(chunks, pauses)
        track.gap()
        return track, room(track.length / RATE, -62, voice)

    return make


def noise_clip(kind: str, seconds: float) -> Recipe:
    """No foreground speaker: every turn found here is a false one."""

    def make(speech: Speech, rng: np.random.Generator) -> tuple[Track, np.ndarray]:
        track = Track(f"noise-{kind}", rng)
        track.pause(seconds)
        if kind == "fan":
            bed = at_dbfs(sox_noise(seconds, "pinknoise", seed=3), -40)
        elif kind == "bursts":
            bed = bursts(seconds, rng, int(seconds / 4))
        elif kind == "music":
            bed = music(seconds, rng, SPEAKER_DBFS - 10)
        elif kind == "tv-on":  # a quiet room, then a TV comes on and stays on
            bed = at_dbfs(babble(speech, seconds - 20, rng), SPEAKER_DBFS - 12)
            bed = np.concatenate([np.zeros(20 * RATE, np.float32), bed])
        elif kind == "tv":
            bed = at_dbfs(babble(speech, seconds, rng), SPEAKER_DBFS - 12)
            bed += music(seconds, rng, SPEAKER_DBFS - 20)
        else:  # babble
            bed = at_dbfs(babble(speech, seconds, rng), SPEAKER_DBFS - 12)
        track.clip.noise_s = seconds
        return track, bed + room(seconds, -62, 11)

    return make


def recipes(quick: bool) -> list[Recipe]:
    if quick:
        return [
            questions_clip(0, 4),
            pauses_clip(1, 4),
            noisy_clip("bursts", 2, 3),
            noisy_clip("babble", 3, 3),
            noisy_clip("tone", 0, 3),
            level_clip(-30, 1, 3),
            monologue_clip(4, 11),
            noise_clip("bursts", 40),
            noise_clip("babble", 40),
        ]
    return [
        questions_clip(0, 10),
        questions_clip(3, 10),
        pauses_clip(0, 8),
        pauses_clip(1, 8),
        pauses_clip(2, 8),
        noisy_clip("bursts", 1, 6),
        noisy_clip("bursts", 4, 6),
        noisy_clip("babble", 0, 6),
        noisy_clip("babble", 2, 6),
        noisy_clip("tone", 3, 6),
        noisy_clip("music", 4, 6),
        level_clip(-30, 0, 6),
        level_clip(-30, 2, 6),
        level_clip(+10, 1, 6),
        languages_clip(8),
        monologue_clip(1, 13),
        monologue_clip(3, 14),
        noise_clip("fan", 240),
        noise_clip("bursts", 240),
        noise_clip("music", 180),
        noise_clip("babble", 300),
        noise_clip("tv", 240),
        noise_clip("tv-on", 120),
    ]


def write_file(path: Path, mono: np.ndarray, rng: np.random.Generator) -> None:
    """48 kHz stereo; the right channel is the left one 0.2 ms later (a second mic nearby)."""
    high = np.asarray(soxr.resample(mono.astype(np.float32), RATE, FILE_RATE), np.float32)
    right = np.concatenate([np.zeros(10, np.float32), high[:-10]])
    stereo = np.stack([high, right], axis=1)
    stereo += rng.normal(0, 1.0, stereo.shape).astype(np.float32)  # converter noise
    pcm = np.clip(np.round(stereo), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(FILE_RATE)
        wav.writeframes(pcm.tobytes())


def build(out: Path, quick: bool = False, seed: int = 1) -> list[dict[str, object]]:
    """Writes the WAVs and manifest.json into `out`; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    speech = Speech(out / "cache")
    manifest = []
    for index, recipe in enumerate(recipes(quick)):
        rng = np.random.default_rng(1000 * seed + index)
        track, bed = recipe(speech, rng)
        mix = track.foreground() + bed[: track.length]
        write_file(out / f"{track.clip.name}.wav", mix, rng)
        manifest.append({"file": f"{track.clip.name}.wav", **asdict(track.clip)})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.corpus")
    parser.add_argument("--out", type=Path, required=True, help="folder for the WAVs")
    parser.add_argument("--quick", action="store_true", help="the small subset the tests run")
    parser.add_argument("--seed", type=int, default=1, help="another seed: other pauses, noise")
    args = parser.parse_args()
    manifest = build(args.out, args.quick, args.seed)
    turns = sum(len(entry["turns"]) for entry in manifest)  # type: ignore[arg-type]
    noise = sum(float(entry["noise_s"]) for entry in manifest)  # type: ignore[arg-type]
    print(f"{len(manifest)} files, {turns} expected turns, {noise / 60:.1f} min of noise")


if __name__ == "__main__":
    main()
