"""python -m bench.field_corpus --out DIR [--seed N] [--quick]: the field corpus, made at run time.

A second listening corpus, built by another recipe than bench/corpus.py (other espeak-ng voices
and phrases, other noises, other timings) to judge the whole agent (`python -m bench.field`),
not the gate it was tuned with. The seed draws the phrases, voices, speeds, pitches, levels,
pauses, noises and device formats; the files and their categories stay:

- first_sample: a question from sample 0 of the file, then 2-4 s of room (one with a fan on)
- quiet_far: questions at -40..-50 dBFS; one file opens with "let me think [0.8-1.2 s] what is"
- pauses: a long phrase (1.5-3 s), a thinking pause (0.8-1.5 s), the continuation: one utterance
- noise_onsets: questions over a fan 10 dB under the voice, a mains hum or babble 12 dB under
- over_answer: question 2 said 1.0-1.6 s after question 1 ends (over the answer), same level
- monologue: 35-40 s of sentences with 0.2-0.5 s breaths
- echo_only: questions, then silence while the answer's echo (0.5@40) is in the microphone
- noise_only: fan, hum, babble and a synthesized TV with no one talking to the device

Speech levels are active-speech RMS (30 ms frames within 30 dB of the loudest); utterance times
are the first and last sample of the foreground speech over 1 % of its peak. Files are 16 kHz
mono, 44.1 kHz stereo or 48 kHz stereo. Utterances are cached in DIR/cache.
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
from typing import Any

import numpy as np
import soxr

RATE = 16000  # files are mixed at 16 kHz, then written in their device format
FORMATS = ((16000, 1), (44100, 2), (48000, 2))
FRAME = 480  # 30 ms: the frame of the active-speech level
AUDIBLE = 0.01  # of a chunk's peak: where an utterance starts and ends

FOREGROUND_VOICES = (
    "en-us+m1",
    "en-gb-x-rp+f4",
    "en-us+klatt2",
    "en+croak",
    "en-gb-x-gbclan+m5",
    "en-gb-x-gbcwmd+f5",
    "en-us-nyc+m3",
    "en-gb+Annie",
    "en+steph",
    "en-029+f4",
    "en-gb-scotland+m6",
    "en-us+Andy",
)
BACKGROUND_VOICES = (
    "en+grandpa",
    "en-us+michel",
    "en+Alicia",
    "en+rob",
    "en-us+f5",
    "en-gb-x-rp+m4",
    "en-us+klatt",
    "en+f2",
)

QUESTIONS = (
    "could you play some quiet music in the kitchen",
    "how many cups of flour go into a loaf of bread",
    "what was the score of last night's football match",
    "which planet in our solar system has the most moons",
    "can you add oat milk and lemons to my shopping list",
    "how long does it take for concrete to set",
    "what year did the first person walk on the moon",
    "is the library on Mill Road open on Sunday afternoons",
    "how do I get red wine out of a carpet",
    "what is a good stretch for a stiff lower back",
    "could you wake me up at half past six tomorrow",
    "how many kilometres are there in a marathon",
    "which bus goes from the station to the hospital",
    "why do onions make people cry when they cut them",
    "what is the difference between a crocodile and an alligator",
    "can you read me the headlines from this morning",
    "how warm will it be at the beach on Thursday",
    "what is fourteen percent of two hundred and thirty",
    "who painted the ceiling of the Sistine Chapel",
    "how often should I water a cactus in winter",
    "please switch the hallway lights to a warm yellow",
    "how do you spell the word necessary",
    "when is the next full moon this month",
    "could you tell my brother I will be twenty minutes late",
    "what does a hedgehog eat in the garden",
    "how much sleep does a teenager really need",
    "is there a pharmacy near here that is open late",
    "which is heavier, a litre of water or a litre of oil",
    "what are the opening hours of the swimming pool",
    "how do I reset the router in the living room",
)
TEMPLATES = (  # more questions, composed: a new seed says ones never heard before
    "how long does it take to drive from {town} to {town2}",
    "what will the weather be like in {town} on {day}",
    "set a timer for {number} minutes for the {food}",
    "how many calories are there in a bowl of {food}",
    "remind me to call {person} on {day} morning",
    "is the {shop} in {town} open on {day}",
    "what time does the last train to {town} leave tonight",
    "please add {food} and {food2} to the shopping list",
)
SLOTS = {
    "town": ("Bristol", "Glasgow", "York", "Cardiff", "Norwich", "Brighton", "Dundee", "Exeter"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "number": ("seven", "twelve", "fifteen", "twenty five", "forty"),
    "food": ("porridge", "rice", "lentils", "potatoes", "tomato soup", "eggs", "apples"),
    "person": ("my aunt", "the plumber", "doctor Patel", "my neighbour", "the school office"),
    "shop": ("post office", "hardware shop", "garden centre", "fish market", "bike shop"),
}
THINK_OPENINGS = (
    "let me think",
    "hang on a moment",
    "um, okay",
    "right, so",
    "wait a second",
    "how do I put this",
)
WHAT_QUESTIONS = (
    "what is the tallest building in Europe",
    "what is the boiling point of water on a mountain",
    "what is the name of the river through Vienna",
    "what is the best way to keep fresh herbs",
    "what is a word that means very happy",
    "what is the population of New Zealand",
)
LONG_PHRASES = (  # an opening of 1.5-3 s, a thinking pause, the continuation
    ("I would like to find out whether the bakery near the old church", "still sells walnut rolls"),
    ("could you check which of the two trains to Leeds this evening", "has a quiet carriage"),
    ("remind me what the name was of that Italian restaurant we liked", "down by the river"),
    ("can you work out how much paint I need for a bedroom", "that is four metres by three"),
    ("I keep forgetting whether the recycling in our street", "goes out on Tuesday or Wednesday"),
    ("tell me how long I should leave a chicken in the oven", "if it weighs two kilos"),
    ("what would be a nice present for my grandmother who loves", "gardening and crosswords"),
    ("I am trying to remember who sang that song about a yellow submarine", "in the sixties"),
    ("could you find me a recipe for a vegetable soup with", "whatever is left in the fridge"),
    ("is it true that you should never wake a person who is", "walking in their sleep"),
    ("please set a reminder for the dentist appointment on", "the twelfth at quarter past nine"),
    ("how far would I have to cycle to burn off", "a large slice of chocolate cake"),
    ("can you explain in simple words how a heat pump", "keeps a house warm in winter"),
    ("what should I pack for a weekend of walking in the hills", "if it might snow"),
    ("do you know if the museum with the dinosaur skeletons", "needs tickets booked in advance"),
    ("I wonder what the weather will be doing on Saturday morning", "when we drive to the coast"),
)
MONOLOGUE = (
    "last spring we finally decided to repaint the whole kitchen ourselves",
    "the first job was taking every cupboard door off its hinges",
    "my sister came over with a box of brushes and two old radios",
    "we sanded the walls for most of a rainy Saturday",
    "the dust got into everything, even the biscuit tin",
    "on Sunday we argued for an hour about the colour",
    "she wanted a pale green and I wanted something closer to sand",
    "in the end we painted one wall each and called it a draw",
    "the neighbours' cat watched the whole thing from the windowsill",
    "by the evening our arms ached and the radio batteries were flat",
    "the doors went back on a week later, slightly crooked",
    "every time I make coffee now I notice the line where the colours meet",
    "I have decided that I quite like it that way",
    "next year we want to try the bathroom, but with more help",
    "my sister says she will only come if I make her lunch",
    "that seems like a fair price for two days of painting",
)
BACKGROUND = (  # what babble and the TV say
    "and now the weather for the rest of the week across the north",
    "the council has announced new opening times for the market",
    "our reporter spoke to farmers about the long dry summer",
    "in sport tonight the home side held on for a narrow win",
    "traffic is building up on the ring road near the airport",
    "scientists say the comet will be visible from Tuesday",
    "the festival returns next month with more than forty bands",
    "after the break we meet a family who built their own boat",
    "prices in the shops rose slightly for the third month running",
    "the minister is expected to make a statement this afternoon",
    "a new bridge over the river will open in the spring",
    "viewers have been sending in photographs of the frost",
    "I told him the car would never make it up that hill",
    "honestly, I think we should have left an hour ago",
)


@dataclass(frozen=True)
class Voice:
    name: str
    speed: int  # words per minute
    pitch: int  # espeak-ng 0-99


@dataclass
class Utterance:
    start_s: float
    end_s: float
    text: str
    level_dbfs: float
    pauses: list[list[float]] = field(default_factory=list)  # silent spans inside it
    over_answer: bool = False


@dataclass
class FieldFile:
    file: str
    category: str
    echo: str = "none"  # "none" or "GAIN@MS": simulate --echo
    noise_s: float = 0.0  # seconds without foreground speech (false-turn budget)
    rate: int = RATE
    channels: int = 1
    voice: str = ""
    utterances: list[Utterance] = field(default_factory=list)


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))


def active_dbfs(samples: np.ndarray) -> float:
    """Active-speech RMS in dBFS: 30 ms frames within 30 dB of the loudest one."""
    frames = samples[: len(samples) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    power = np.mean(frames**2, axis=1)
    active = power[power > np.max(power) * 1e-3] if len(power) else power
    if not len(active) or not np.max(active):
        return -120.0
    return float(10 * np.log10(np.mean(active) / 32768**2))


def rms_dbfs(samples: np.ndarray) -> float:
    power = float(np.mean(samples.astype(np.float64) ** 2)) or 1e-12
    return float(10 * np.log10(power / 32768**2))


def at_rms(samples: np.ndarray, dbfs: float) -> np.ndarray:
    return (samples * db_to_gain(dbfs - rms_dbfs(samples))).astype(np.float32)


class Speech:
    """espeak-ng at 16 kHz, trimmed to its audible part, cached on disk."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def say(self, text: str, voice: Voice) -> np.ndarray:
        key = hashlib.sha1(f"{text}|{voice}".encode()).hexdigest()[:16]
        path = self.cache / f"{key}.npy"
        if path.exists():
            cached: np.ndarray = np.load(path)
            return cached
        wav_path = self.cache / f"{key}.wav"
        command = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch)]
        subprocess.run([*command, "-w", str(wav_path), text], check=True, capture_output=True)
        with wave.open(str(wav_path)) as wav:
            rate = wav.getframerate()
            raw = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32)
        wav_path.unlink()
        samples = np.asarray(soxr.resample(raw, rate, RATE), np.float32)
        audible = np.flatnonzero(np.abs(samples) > AUDIBLE * np.max(np.abs(samples)))
        samples = samples[audible[0] : audible[-1] + 1]
        np.save(path, samples)
        return samples

    def fitted(self, text: str, voice: Voice, low_s: float, high_s: float) -> np.ndarray:
        """The text said in low_s..high_s: spoken again faster or slower if it falls outside."""
        samples = self.say(text, voice)
        seconds = len(samples) / RATE
        if low_s <= seconds <= high_s:
            return samples
        target = min(max(seconds, low_s + 0.1), high_s - 0.1)
        speed = int(np.clip(voice.speed * seconds / target, 100, 320))
        return self.say(text, Voice(voice.name, speed, voice.pitch))


class Timeline:
    """The foreground speaker, sample by sample, with the utterances' manifest entries."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.length = 0
        self.utterances: list[Utterance] = []

    def silence(self, seconds: float) -> None:
        samples = round(seconds * RATE)
        self.parts.append(np.zeros(samples, np.float32))
        self.length += samples

    def say(
        self,
        chunks: list[np.ndarray],
        pauses: list[float],
        level_dbfs: float,
        text: str,
        over_answer: bool = False,
    ) -> Utterance:
        """Chunks with pauses between them, scaled together to level_dbfs (active speech)."""
        evened = [c * db_to_gain(-25.0 - active_dbfs(c)) for c in chunks]
        gain = db_to_gain(level_dbfs - active_dbfs(np.concatenate(evened)))
        start = self.length
        spans = []
        for index, chunk in enumerate(evened):
            if index:
                spans.append([round(self.length / RATE, 4)])
                self.silence(pauses[index - 1])
                spans[-1].append(round(self.length / RATE, 4))
            self.parts.append((chunk * gain).astype(np.float32))
            self.length += len(chunk)
        utterance = Utterance(
            round(start / RATE, 4),
            round((self.length - 1) / RATE, 4),
            text,
            round(level_dbfs, 1),
            spans,
            over_answer,
        )
        self.utterances.append(utterance)
        return utterance

    def samples(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


# ---- noises (16 kHz float, full scale 32768) ------------------------------------------------


Filter = Callable[[np.ndarray], np.ndarray]


def shaped(n: int, rng: np.random.Generator, gain: Filter) -> np.ndarray:
    """White noise through a filter given as gain per frequency (Hz)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    return np.fft.irfft(spectrum * gain(freqs), n).astype(np.float32)


def room(n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """A quiet room: noise falling 4.5 dB an octave (between pink and brown)."""
    return at_rms(shaped(n, rng, lambda f: 1 / np.maximum(f, 20.0) ** 0.75), dbfs)


def fan(n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """Broadband air noise rolling off above a corner, a blade-pass tone with harmonics, and a
    slow wobble in level as the air moves."""
    corner = rng.uniform(250, 900)
    order = rng.uniform(1.0, 2.0)
    air = shaped(n, rng, lambda f: (f > 25) / np.sqrt(1 + (f / corner) ** (2 * order)))
    t = np.arange(n) / RATE
    blade = rng.uniform(45, 110)
    tone = sum(
        db_to_gain(-rng.uniform(18, 30)) * np.sin(2 * np.pi * blade * k * t + rng.uniform(0, 6))
        for k in (1, 2, 3)
    )
    mix = air / np.std(air) + tone
    wobble = 1 + rng.uniform(0.08, 0.2) * np.sin(2 * np.pi * rng.uniform(0.15, 0.6) * t)
    wobble *= 1 + rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * rng.uniform(0.02, 0.07) * t + 1)
    return at_rms(mix * wobble, dbfs)


def hum(n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with harmonics, strongest at twice the mains (a rectifier's
    100/120 Hz), a faint hiss under it and a slow drift in level."""
    mains = float(rng.choice([50.0, 60.0])) + rng.uniform(-0.05, 0.05)
    t = np.arange(n) / RATE
    levels = {1: -6.0, 2: 0.0, 3: -8.0, 4: -12.0, 5: -16.0, 6: -20.0, 8: -26.0}
    tone = np.zeros(n, np.float64)
    for k, db in levels.items():
        tone += db_to_gain(db + rng.uniform(-3, 3)) * np.sin(2 * np.pi * mains * k * t + k)
    hiss = room(n, rms_dbfs(tone.astype(np.float32) * 32768) - 28, rng) / 32768
    drift = 1 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.01, 0.05) * t)
    return at_rms((tone + hiss) * drift, dbfs)


def talk(
    speech: Speech, n: int, rng: np.random.Generator, voice: Voice, gap_s: tuple[float, float]
) -> np.ndarray:
    """One background voice saying BACKGROUND lines from a random moment, with gaps."""
    out = np.zeros(n, np.float32)
    at = round(rng.uniform(0, 0.3) * RATE)
    while at < n:
        line = speech.say(str(rng.choice(BACKGROUND)), voice)[: n - at]
        out[at : at + len(line)] += line / max(float(np.max(np.abs(line))), 1.0)
        at += len(line) + round(rng.uniform(*gap_s) * RATE)
    return out


def background_voice(rng: np.random.Generator) -> Voice:
    name = str(rng.choice(BACKGROUND_VOICES))
    return Voice(name, int(rng.integers(140, 200)), int(rng.integers(20, 80)))


def babble(speech: Speech, n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """Three to five people talking at once at different distances."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(3, 6))):
        voice = background_voice(rng)
        out += talk(speech, n, rng, voice, (0.05, 0.6)) * db_to_gain(rng.uniform(-5, 0))
    return at_rms(out, dbfs)


def note(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k**1.3 for k in range(1, 6))
    attack = np.minimum(1.0, t / 0.01)
    return np.asarray(tone * attack * np.exp(-t / rng.uniform(0.3, 1.2)), np.float32)


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Chords on a bass line: notes with harmonics and decaying envelopes."""
    root = rng.uniform(100, 180)
    scale = (0, 2, 4, 5, 7, 9, 11)
    out = np.zeros(n + RATE * 3, np.float32)
    at = 0
    while at < n:
        beat = rng.choice([0.4, 0.5, 0.6, 0.8])
        degree = int(rng.integers(0, 7))
        for step in (0, 2, 4):
            semis = scale[(degree + step) % 7] + 12 * ((degree + step) // 7)
            sound = note(root * 2 ** (semis / 12 + 1), beat * 2, rng) * 0.5
            out[at : at + len(sound)] += sound
        bass = note(root * 2 ** (scale[degree] / 12 - 1), beat * 2, rng)
        out[at : at + len(bass)] += bass
        at += round(beat * RATE)
    return out[:n]


def applause(n: int, rng: np.random.Generator) -> np.ndarray:
    """Many hands: short decaying noise clicks, dense, swelling and dying away."""
    out = np.zeros(n + 400, np.float32)
    clap = np.exp(-np.arange(400) / 60.0)
    seconds = n / RATE
    for at in rng.integers(0, n, int(seconds * rng.uniform(40, 90))):
        out[at : at + 400] += (
            rng.standard_normal(400).astype(np.float32) * clap * rng.uniform(0.3, 1.0)
        )
    t = np.arange(n) / n
    envelope = np.minimum(1.0, t / 0.15) * np.minimum(1.0, (1 - t) / 0.4)
    bright = np.fft.irfft(np.fft.rfft(out[:n]) * (np.fft.rfftfreq(n, 1 / RATE) > 600), n)
    return np.asarray(bright * envelope, np.float32)


def reverberant(dry: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A living room's reverberation (RT60 0.3-0.6 s), mixed 6-10 dB under the direct sound."""
    rt60 = rng.uniform(0.3, 0.6)
    taps = round(rt60 * RATE)
    tail = rng.standard_normal(taps) * np.exp(-6.9 * np.arange(taps) / taps)
    size = len(dry) + taps
    wet = np.fft.irfft(np.fft.rfft(dry, size) * np.fft.rfft(tail, size), size)[: len(dry)]
    wet *= db_to_gain(-rng.uniform(6, 10)) * np.std(dry) / (np.std(wet) + 1e-9)
    return np.asarray(dry + wet, np.float32)


def tv(speech: Speech, n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """A TV: scenes of a presenter, music, talk over music and applause, each 4 dB louder or
    quieter at most, through a small speaker's band, in a room."""
    presenter = background_voice(rng)
    out = np.zeros(n, np.float32)
    at = 0
    while at < n:
        length = min(n - at, round(rng.uniform(6, 20) * RATE))
        scene = str(rng.choice(["talk", "talk", "music", "talk+music", "applause"]))
        piece = np.zeros(length, np.float32)
        clapping = 0
        if scene == "applause":  # then the presenter again
            claps = applause(min(length, round(rng.uniform(2, 5) * RATE)), rng)
            piece[: len(claps)] += claps / (np.std(claps) + 1e-9)
            clapping = len(claps)
        if ("talk" in scene or scene == "applause") and length > clapping:
            words = talk(speech, length - clapping, rng, presenter, (0.15, 0.6))
            piece[clapping:] += words / (np.std(words) + 1e-9)
        if "music" in scene:
            tune = music(length, rng)
            under = -12.0 if "talk" in scene else 0.0
            piece += tune / (np.std(tune) + 1e-9) * db_to_gain(under)
        out[at : at + length] = piece * db_to_gain(rng.uniform(-4, 4))
        at += length
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    speaker = (freqs > 150) / np.sqrt(1 + (freqs / 6000) ** 4)
    sound = reverberant(np.fft.irfft(np.fft.rfft(out) * speaker, n).astype(np.float32), rng)
    sound = at_rms(sound, dbfs)
    ceiling = 32768 * db_to_gain(dbfs + 16)  # the set's own limiter
    return at_rms(ceiling * np.tanh(sound / ceiling), dbfs)


# ---- the files -------------------------------------------------------------------------------


@dataclass
class Built:
    entry: FieldFile
    line: Timeline
    bed: np.ndarray  # at least as long as the foreground


Recipe = Callable[[Speech, np.random.Generator], Built]


def foreground_voice(rng: np.random.Generator) -> Voice:
    name = str(rng.choice(FOREGROUND_VOICES))
    return Voice(name, int(rng.integers(145, 195)), int(rng.integers(25, 75)))


def pick(rng: np.random.Generator, pool: tuple[str, ...], count: int) -> list[str]:
    return [str(text) for text in rng.choice(pool, count, replace=False)]


def questions(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct questions, about half from QUESTIONS and half composed from TEMPLATES."""
    chosen: list[str] = []
    while len(chosen) < count:
        if rng.random() < 0.5:
            text = str(rng.choice(QUESTIONS))
        else:
            values = {slot: str(rng.choice(words)) for slot, words in SLOTS.items()}
            values["town2"] = str(rng.choice([t for t in SLOTS["town"] if t != values["town"]]))
            values["food2"] = str(rng.choice([f for f in SLOTS["food"] if f != values["food"]]))
            text = str(rng.choice(TEMPLATES)).format(**values)
        if text not in chosen:
            chosen.append(text)
    return chosen


def gap(rng: np.random.Generator) -> float:
    """Between utterances: the answer (about 3 s) plays out before the next one."""
    return float(rng.uniform(5.0, 7.0))


def first_sample(fan_on: bool) -> Recipe:
    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        level = rng.uniform(-35, -20)
        line = Timeline()
        text = questions(rng, 1)[0]
        line.say([speech.say(text, voice)], [], level, text)
        line.silence(rng.uniform(2.0, 4.0))
        bed = room(line.length, rng.uniform(-70, -62), rng)
        if fan_on:
            bed += fan(line.length, level - rng.uniform(10, 15), rng)
        return Built(FieldFile("", "first_sample", voice=voice.name), line, bed)

    return make


def quiet_far(think: bool, count: int) -> Recipe:
    """A far or soft speaker; with `think` the first utterance is an opening, a 0.8-1.2 s
    pause and a question, at -45 dBFS."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        line = Timeline()
        line.silence(rng.uniform(1.5, 3.0))
        if think:
            opening, question = pick(rng, THINK_OPENINGS, 1)[0], pick(rng, WHAT_QUESTIONS, 1)[0]
            chunks = [speech.say(opening, voice), speech.say(question, voice)]
            line.say(chunks, [rng.uniform(0.8, 1.2)], -45.0, f"{opening} ... {question}")
            line.silence(gap(rng))
        for text in questions(rng, count - think):
            line.say([speech.say(text, voice)], [], rng.uniform(-50, -40), text)
            line.silence(gap(rng))
        bed = room(line.length, rng.uniform(-72, -64), rng)
        return Built(FieldFile("", "quiet_far", voice=voice.name), line, bed)

    return make


def pauses(count: int) -> Recipe:
    """A long phrase (1.5-3 s), a thinking pause of 0.8-1.5 s, the continuation."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        line = Timeline()
        line.silence(rng.uniform(1.0, 2.5))
        for index in rng.choice(len(LONG_PHRASES), count, replace=False):
            opening, rest = LONG_PHRASES[index]
            chunks = [speech.fitted(opening, voice, 1.5, 3.0), speech.say(rest, voice)]
            pause = rng.uniform(0.8, 1.5)
            line.say(chunks, [pause], rng.uniform(-38, -22), f"{opening} ... {rest}")
            line.silence(gap(rng) + 1.0)  # the first part may be answered too
        bed = room(line.length, rng.uniform(-66, -58), rng)
        return Built(FieldFile("", "pauses", voice=voice.name), line, bed)

    return make


def noise_onsets(kind: str, count: int) -> Recipe:
    """Questions over noise that runs from the file's start: a fan 10 dB under the voice, a
    mains hum or babble 12 dB under."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        level = rng.uniform(-34, -22)
        line = Timeline()
        line.silence(rng.uniform(1.5, 3.0))
        for text in questions(rng, count):
            line.say([speech.say(text, voice)], [], level, text)
            line.silence(gap(rng))
        n = line.length
        if kind == "fan":
            bed = fan(n, level - 10, rng)
        elif kind == "hum":
            bed = hum(n, level - 12, rng)
        else:
            bed = babble(speech, n, level - 12, rng)
        bed += room(n, -68, rng)
        return Built(FieldFile("", "noise_onsets", voice=voice.name), line, bed)

    return make


def over_answer(echo: str, pairs: int) -> Recipe:
    """Question 1; question 2 at the same level 1.0-1.6 s after it ends, over the answer."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        line = Timeline()
        line.silence(rng.uniform(1.0, 2.0))
        texts = questions(rng, 2 * pairs)
        for first, second in zip(texts[::2], texts[1::2], strict=True):
            level = rng.uniform(-34, -22)
            line.say([speech.say(first, voice)], [], level, first)
            line.silence(rng.uniform(1.0, 1.6))
            line.say([speech.say(second, voice)], [], level, second, over_answer=True)
            line.silence(rng.uniform(6.0, 8.0))
        bed = room(line.length, rng.uniform(-68, -60), rng)
        return Built(FieldFile("", "over_answer", echo=echo, voice=voice.name), line, bed)

    return make


def monologue() -> Recipe:
    """One utterance of 35-40 s: sentences with 0.2-0.5 s breaths."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        line = Timeline()
        line.silence(rng.uniform(1.0, 2.0))
        target = rng.uniform(35.0, 40.0)
        chunks: list[np.ndarray] = []
        breaths: list[float] = []
        texts: list[str] = []
        total = 0.0
        for text in pick(rng, MONOLOGUE, len(MONOLOGUE)):
            chunk = speech.say(text, voice)
            breath = float(rng.uniform(0.2, 0.5))
            if total + breath + len(chunk) / RATE > 40.0:
                continue
            if chunks:
                breaths.append(breath)
                total += breath
            chunks.append(chunk)
            texts.append(text)
            total += len(chunk) / RATE
            if total >= target:
                break
        line.say(chunks, breaths, rng.uniform(-34, -24), ". ".join(texts))
        line.silence(gap(rng))
        bed = room(line.length, rng.uniform(-66, -60), rng)
        return Built(FieldFile("", "monologue", voice=voice.name), line, bed)

    return make


def echo_only(count: int) -> Recipe:
    """Questions, each followed by silence while its answer plays (echo 0.5@40 in the mic)."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        voice = foreground_voice(rng)
        line = Timeline()
        line.silence(rng.uniform(1.0, 2.0))
        for text in questions(rng, count):
            line.say([speech.say(text, voice)], [], rng.uniform(-32, -24), text)
            line.silence(rng.uniform(8.0, 10.0))
        bed = room(line.length, rng.uniform(-68, -62), rng)
        return Built(FieldFile("", "echo_only", echo="0.5@40", voice=voice.name), line, bed)

    return make


def noise_only(kind: str, seconds: float) -> Recipe:
    """No one talks to the device: every turn here is a false one. `tv-on`: a quiet room, then a
    TV comes on 20-40 s in and stays on."""

    def make(speech: Speech, rng: np.random.Generator) -> Built:
        line = Timeline()
        line.silence(seconds)
        n = line.length
        if kind == "fan":
            bed = fan(n, rng.uniform(-46, -38), rng)
        elif kind == "hum":
            bed = hum(n, rng.uniform(-50, -42), rng)
        elif kind == "babble":
            bed = babble(speech, n, rng.uniform(-38, -30), rng)
        elif kind == "tv":
            bed = tv(speech, n, rng.uniform(-36, -28), rng)
        else:
            quiet = round(rng.uniform(20, 40) * RATE)
            bed = np.zeros(n, np.float32)
            bed[quiet:] = tv(speech, n - quiet, rng.uniform(-36, -28), rng)
        bed += room(n, rng.uniform(-70, -64), rng)
        return Built(FieldFile("", "noise_only"), line, bed)

    return make


def recipes(kind: str) -> list[tuple[str, Recipe]]:
    """The files of a corpus: `tiny` (the tests), `quick` or `full`."""
    if kind == "tiny":
        return [
            ("first_sample-quiet", first_sample(False)),
            ("pauses", pauses(1)),
            ("over_answer-none", over_answer("none", 1)),
        ]
    if kind == "quick":
        return [
            ("first_sample-quiet", first_sample(False)),
            ("first_sample-fan", first_sample(True)),
            ("quiet_far-think", quiet_far(True, 3)),
            ("pauses", pauses(3)),
            ("noise_onsets-fan", noise_onsets("fan", 2)),
            ("noise_onsets-hum", noise_onsets("hum", 2)),
            ("noise_onsets-babble", noise_onsets("babble", 2)),
            ("over_answer-none", over_answer("none", 2)),
            ("over_answer-echo", over_answer("0.3@40", 2)),
            ("monologue", monologue()),
            ("echo_only", echo_only(2)),
            ("noise_only-fan", noise_only("fan", 30)),
            ("noise_only-babble", noise_only("babble", 45)),
            ("noise_only-tv", noise_only("tv", 60)),
        ]
    return [
        ("first_sample-quiet-1", first_sample(False)),
        ("first_sample-quiet-2", first_sample(False)),
        ("first_sample-quiet-3", first_sample(False)),
        ("first_sample-fan-1", first_sample(True)),
        ("first_sample-fan-2", first_sample(True)),
        ("quiet_far-think", quiet_far(True, 4)),
        ("quiet_far", quiet_far(False, 4)),
        ("pauses-1", pauses(4)),
        ("pauses-2", pauses(4)),
        ("pauses-3", pauses(4)),
        ("noise_onsets-fan", noise_onsets("fan", 4)),
        ("noise_onsets-hum", noise_onsets("hum", 4)),
        ("noise_onsets-babble", noise_onsets("babble", 4)),
        ("over_answer-none-1", over_answer("none", 3)),
        ("over_answer-none-2", over_answer("none", 3)),
        ("over_answer-echo-1", over_answer("0.3@40", 3)),
        ("over_answer-echo-2", over_answer("0.3@40", 3)),
        ("monologue-1", monologue()),
        ("monologue-2", monologue()),
        ("echo_only", echo_only(3)),
        ("noise_only-fan", noise_only("fan", 150)),
        ("noise_only-hum", noise_only("hum", 90)),
        ("noise_only-babble", noise_only("babble", 180)),
        ("noise_only-tv", noise_only("tv", 210)),
        ("noise_only-tv-on", noise_only("tv-on", 120)),
    ]


def write_wav(
    path: Path, mono: np.ndarray, rate: int, channels: int, noise: np.random.Generator | None
) -> None:
    """In the device's format; each channel gets its own converter noise."""
    signal = mono if rate == RATE else np.asarray(soxr.resample(mono, RATE, rate), np.float32)
    stack = np.stack([signal] * channels, axis=1)
    if noise is not None:
        stack = stack + noise.normal(0, 0.7, stack.shape)
    pcm = np.clip(np.round(stack), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


def build(out: Path, kind: str = "full", seed: int = 1, beds: bool = True) -> list[dict[str, Any]]:
    """Writes the WAVs and manifest.json into `out`; returns the manifest. `beds=False` leaves
    out the room, the noise and the converter noise (the foreground alone, for the tests)."""
    out.mkdir(parents=True, exist_ok=True)
    speech = Speech(out / "cache")
    manifest = []
    for index, (name, recipe) in enumerate(recipes(kind)):
        rng = np.random.default_rng([seed, index])
        built = recipe(speech, rng)
        entry, line = built.entry, built.line
        entry.rate, entry.channels = FORMATS[int(rng.integers(len(FORMATS)))]
        entry.file = f"{name}.wav"
        entry.utterances = line.utterances
        spoken = sum(u.end_s - u.start_s for u in line.utterances)
        entry.noise_s = round(line.length / RATE - spoken, 2)
        mix = line.samples()
        if beds:
            mix = mix + built.bed[: line.length]
        write_wav(out / entry.file, mix, entry.rate, entry.channels, rng if beds else None)
        manifest.append(asdict(entry))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.field_corpus")
    parser.add_argument("--out", type=Path, required=True, help="folder for the WAVs")
    parser.add_argument("--quick", action="store_true", help="the small corpus (about 5 min)")
    parser.add_argument("--seed", type=int, default=1, help="another seed: other material")
    args = parser.parse_args()
    manifest = build(args.out, "quick" if args.quick else "full", args.seed)
    utterances = sum(len(entry["utterances"]) for entry in manifest)
    noise = sum(entry["noise_s"] for entry in manifest)
    print(f"{len(manifest)} files, {utterances} utterances, {noise / 60:.1f} min without speech")


if __name__ == "__main__":
    main()
