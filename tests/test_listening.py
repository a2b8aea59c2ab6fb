"""Listening that keeps every word (issue 30), through `simulate` (the whole agent, the emulator
answering) on espeak-ng speech: speech from the first sample, the open chime, talking over the
answer with and without its echo, thinking pauses, onsets in steady noise, monologues."""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from bench.corpus import Speech as CorpusSpeech
from bench.corpus import active_rms, at_dbfs, babble, sox_noise
from edge_agent.emulator.scenario import Scenario, Turn
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import write_wav
from tests.test_simulate import against, loud_spans, output_samples

RATE = 16000
PREROLL_S = 0.3
Say = Callable[..., np.ndarray]

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng or sox missing"
)


@pytest.fixture(scope="module")
def say(tmp_path_factory: pytest.TempPathFactory) -> Say:
    """say(text, dbfs=None, voice="en-us"): espeak-ng at 16 kHz, trimmed to its audible part,
    at `dbfs` active-speech RMS (espeak-ng's own level, about -20 dBFS, when None)."""
    folder = tmp_path_factory.mktemp("listening")
    cache: dict[tuple[str, str], np.ndarray] = {}

    def make(text: str, dbfs: float | None = None, voice: str = "en-us") -> np.ndarray:
        if (text, voice) not in cache:
            path = folder / f"s{len(cache)}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            with wave.open(str(path)) as wav:
                rate = wav.getframerate()
                raw = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32)
            samples = np.asarray(soxr.resample(raw, rate, RATE), np.float32)
            audible = np.flatnonzero(np.abs(samples) > 0.01 * np.max(np.abs(samples)))
            cache[(text, voice)] = samples[audible[0] : audible[-1] + 1]
        samples = cache[(text, voice)]
        if dbfs is not None:
            samples = samples * (10 ** (dbfs / 20) * 32768 / active_rms(samples))
        return samples

    return make


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


class Track:
    """Pieces one after another; `at()` is where the next one starts, in seconds."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []

    def at(self) -> float:
        return sum(len(p) for p in self.pieces) / RATE

    def add(self, *pieces: np.ndarray) -> float:
        start = self.at()
        self.pieces += pieces
        return start

    def audio(self) -> np.ndarray:
        return np.concatenate(self.pieces)


async def run(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    samples: np.ndarray,
    echo: str = "0@0",
    scenario: Scenario | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    gain, delay = (float(v) for v in echo.split("@"))
    emulator = await start_emulator(**({"scenario": scenario} if scenario else {}))
    wav_in = write_wav(tmp_path / "in.wav", np.clip(np.round(samples), -32768, 32767))
    options = SimulateOptions(
        input=wav_in, output=tmp_path / "out.wav", echo_gain=gain, echo_delay_ms=delay
    )
    return await simulate(against(emulator, **sections), options)


def parts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [part for turn in summary["turns"] for part in turn["parts"]]


def reaches(part: dict[str, Any], start_s: float) -> bool:
    """The part's audio (its pre-roll included) begins no later than 50 ms after start_s."""
    return bool(part["start_s"] - PREROLL_S <= start_s + 0.05)


@pytest.mark.parametrize(
    "text",
    [
        "Could you play some quiet music in the kitchen?",
        "What is the weather tomorrow",
        "Turn on the lights in the hall",
    ],
)
async def test_a_question_from_the_first_sample_is_heard_whole(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, text: str
) -> None:
    question = say(text)
    summary = await run(start_emulator, tmp_path, np.concatenate([question, quiet(3.0)]))
    (turn,) = summary["turns"]
    assert turn["start_s"] == 0.0 and turn["end_s"] >= len(question) / RATE - 0.3
    assert turn["first_audio_ms"] is not None and not summary["errors"]


async def test_a_quiet_question_after_a_thinking_pause_is_not_cut_by_the_open_chime(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path
) -> None:
    """A person a couple of metres away, about -45 dBFS; chimes on, as configured by default."""
    track = Track()
    start = track.add(quiet(1.0), say("let me think", -45))
    track.add(quiet(1.0))
    end = track.add(say("what is the capital of France", -45)) + 2.0
    track.add(quiet(4.0))
    summary = await run(start_emulator, tmp_path, track.audio(), conversation={"chimes": True})
    (turn,) = summary["turns"]
    assert reaches(turn["parts"][0], start + 1.0) and turn["end_s"] >= end - 2.3
    assert turn["first_audio_ms"] is not None


def test_a_tv_playing_from_start_up_stays_the_room(tmp_path: Path) -> None:
    from edge_agent.audio.vad import SpeechGate, TurnStart
    from edge_agent.config import VadConfig

    tv = at_dbfs(babble(CorpusSpeech(tmp_path / "voices"), 20.0, np.random.default_rng(5)), -30)
    tv += at_dbfs(sox_noise(20.0, "sine", "110", "sine", "165"), -45)
    gate, frames = SpeechGate(VadConfig()), np.clip(tv, -32768, 32767).astype(np.int16)
    starts = [
        event
        for index in range(len(frames) // 480)
        for event in gate.feed(frames[index * 480 : (index + 1) * 480].tobytes())
        if isinstance(event, TurnStart)
    ]
    assert starts == []


@pytest.mark.parametrize(("kind", "under_db"), [("fan", 10.0), ("hum", 12.0), ("babble", 12.0)])
async def test_the_first_word_in_steady_noise_reaches_the_service(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, kind: str, under_db: float
) -> None:
    question = say("what is the weather like in Lisbon", -25)
    audio = np.concatenate([quiet(1.5), question, quiet(4.0)])
    seconds = len(audio) / RATE
    if kind == "fan":
        bed = sox_noise(seconds, "pinknoise", "lowpass", "3000")
    elif kind == "hum":
        bed = sox_noise(seconds, "sine", "100", "sine", "200", "sine", "300")
    else:
        bed = babble(CorpusSpeech(tmp_path / "voices"), seconds, np.random.default_rng(3))
    audio += at_dbfs(bed, -25 - under_db)[: len(audio)]
    summary = await run(start_emulator, tmp_path, audio)
    (turn,) = summary["turns"]
    assert reaches(turn["parts"][0], 1.5), turn


@pytest.mark.parametrize(
    ("echo_mode", "echo"),
    [("half_duplex", "0@0"), ("half_duplex", "0.3@40"), ("aec", "0@0"), ("aec", "0.3@40")],
)
@pytest.mark.parametrize("gap_s", [1.3, 2.6])
async def test_talking_over_the_answer_cuts_it_and_the_question_is_sent_whole(
    start_emulator: Callable[..., Any],
    say: Say,
    tmp_path: Path,
    echo_mode: str,
    echo: str,
    gap_s: float,
) -> None:
    """Within continuation_ms the second question carries the first turn on (a part of it);
    after it, it is a turn of its own. Either way the answer playing is cut."""
    track = Track()
    track.add(quiet(1.0), say("what is the tallest mountain in Europe"), quiet(gap_s))
    over = track.add(say("actually tell me about the alps instead"))
    track.add(quiet(5.0))
    scenario = Scenario(turns=[Turn(reply_seconds=6.0)])
    summary = await run(
        start_emulator, tmp_path, track.audio(), echo, scenario, audio={"echo": echo_mode}
    )
    turns, heard = summary["turns"], parts(summary)
    assert len(heard) == 2 and turns[0]["interrupted"], turns
    assert reaches(heard[1], over) and heard[1]["start_s"] >= over - 0.1
    assert len(turns) == (1 if gap_s < 2.0 else 2)
    answer = loud_spans(output_samples(tmp_path / "out.wav"))[0]
    assert answer[0] < over < answer[1] + 0.3 <= over + 0.6  # playing (or in a pause), cut


@pytest.mark.parametrize("gap_s", [1.0, 1.5])
@pytest.mark.parametrize("dbfs", [-29.0, -32.0])
async def test_a_voice_quieter_than_the_answers_echo_cuts_it_and_is_heard_whole(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, gap_s: float, dbfs: float
) -> None:
    """The answer (espeak-ng, about -20 dBFS) comes back at 0.3: its echo is about as loud as a
    person at -29 to -32 dBFS, who talks over it from 0.3 s (while its echo is being measured)
    or 0.8 s into it."""
    track = Track()
    track.add(quiet(1.0), say("what is the tallest mountain in Europe", dbfs), quiet(gap_s))
    over = track.add(say("actually tell me about the alps instead", dbfs))
    track.add(quiet(5.0))
    summary = await run(start_emulator, tmp_path, track.audio(), "0.3@40")
    turns, heard = summary["turns"], parts(summary)
    assert len(heard) == 2 and turns[0]["interrupted"], turns
    assert reaches(heard[1], over) and heard[1]["start_s"] >= over - 0.1, heard
    answer = loud_spans(output_samples(tmp_path / "out.wav"))[0]
    assert answer[0] < over < answer[1] <= over + 0.5  # it was playing, and it was cut


@pytest.mark.parametrize("echo_mode", ["half_duplex", "aec"])
async def test_the_agents_own_echo_opens_no_turn(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, echo_mode: str
) -> None:
    track = Track()
    for text in ("what is the weather like today", "tell me a joke", "how far is the moon"):
        track.add(quiet(1.0), say(text), quiet(6.0))
    summary = await run(
        start_emulator, tmp_path, track.audio(), "0.5@40", audio={"echo": echo_mode}
    )
    assert [len(turn["parts"]) for turn in summary["turns"]] == [1, 1, 1]
    assert not any(turn["interrupted"] for turn in summary["turns"])


@pytest.mark.parametrize("pause_s", [0.8, 1.2, 1.5])
async def test_the_words_after_a_thinking_pause_join_the_turn(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, pause_s: float
) -> None:
    track = Track()
    track.add(quiet(1.0), say("Can you check whether my train"), quiet(pause_s))
    rest = track.add(say("leaves from platform two?"))
    end = track.at()
    track.add(quiet(5.0))
    summary = await run(start_emulator, tmp_path, track.audio())
    (turn,) = summary["turns"]
    assert len(turn["parts"]) == 2 and reaches(turn["parts"][1], rest)
    assert turn["end_s"] >= end - 0.3 and turn["first_audio_ms"] is not None
    assert 0 < turn["first_audio_ms"] < 1500  # from the end of the last part


async def test_a_monologue_past_max_turn_s_is_one_turn_in_two_parts(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path
) -> None:
    sentences = (
        "let me tell you about my trip to the mountains last summer",
        "we left early in the morning when the air was still cold",
        "the road climbed for hours through forests and small villages",
        "at noon we stopped by a lake and had a long lunch on the grass",
    )
    track = Track()
    track.add(quiet(1.0))
    while track.at() < 38.0:
        for text in sentences:
            track.add(say(text), quiet(0.35))
    end = track.at() - 0.35
    track.add(quiet(4.0))
    summary = await run(start_emulator, tmp_path, track.audio())
    (turn,) = summary["turns"]
    pieces = turn["parts"]
    assert len(pieces) == 2 and pieces[0]["end_s"] == pieces[1]["start_s"]  # nothing between
    assert all(part["end_s"] - part["start_s"] >= 0.1 for part in pieces)
    assert turn["end_s"] >= end - 0.3 and turn["first_audio_ms"] is not None


async def test_a_recording_that_ends_just_after_the_question_is_answered(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path
) -> None:
    question = say("what is the weather tomorrow")
    summary = await run(start_emulator, tmp_path, np.concatenate([question, quiet(0.15)]))
    (turn,) = summary["turns"]
    assert turn["start_s"] == 0.0 and turn["first_audio_ms"] is not None


@pytest.mark.parametrize(
    ("profile", "code", "says"),
    [
        ("speech", 1, "the speech gate heard no speech in 4.0 s of input, peak -"),
        ("wake_word", 0, "no wake word heard in 4.0 s of input, peak -"),
        ("button", 0, "no button press (--ptt); 4.0 s of input, peak -"),
    ],
)
def test_simulate_says_why_no_turn_came(tmp_path: Path, profile: str, code: int, says: str) -> None:
    import json

    from tests.conftest import run_cli

    hum = at_dbfs(sox_noise(4.0, "sine", "100"), -50)
    wav_in = write_wav(tmp_path / "in.wav", np.round(hum))
    config = tmp_path / "config.toml"
    wake = '[wake_word]\nmodels = ["okay_nabu"]\n' if profile == "wake_word" else ""
    config.write_text(f'[conversation]\nstart = "{profile}"\n{wake}')
    done = run_cli("simulate", "--config", str(config), "--input", str(wav_in), "--json")
    assert done.returncode == code, done.stderr
    (error,) = json.loads(done.stdout)["errors"]
    assert error.startswith(f"no turn: {says}") and error.endswith("dBFS")


async def test_the_question_right_after_the_wake_word_is_heard(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path
) -> None:
    """docs/wake_word.md's own example, said in one breath, chimes on."""
    pytest.importorskip("pymicro_wakeword")
    track = Track()
    track.add(quiet(1.0), say("okay nabu, what time is it"), quiet(4.0))
    summary = await run(
        start_emulator,
        tmp_path,
        track.audio(),
        conversation={"start": "wake_word", "chimes": True},
        wake_word={"models": ["okay_nabu"]},
    )
    (turn,) = summary["turns"]
    assert turn["first_audio_ms"] is not None and not summary["errors"]


@pytest.mark.parametrize("echo", ["0.3@40", "0.5@40"])
async def test_the_wake_word_said_over_an_echoing_answer_cuts_it(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, echo: str
) -> None:
    pytest.importorskip("pymicro_wakeword")
    track = Track()
    track.add(quiet(0.5), say("okay nabu"), quiet(0.3), say("tell me a story"), quiet(2.5))
    again = track.add(say("okay nabu"))
    track.add(quiet(0.4), say("stop the story please"), quiet(4.0))
    summary = await run(
        start_emulator,
        tmp_path,
        track.audio(),
        echo,
        Scenario(turns=[Turn(reply_seconds=8.0)]),
        conversation={"start": "wake_word"},
        wake_word={"models": ["okay_nabu"]},
    )
    first, second = summary["turns"]
    assert first["interrupted"] and second["first_audio_ms"] is not None
    answer = loud_spans(output_samples(tmp_path / "out.wav"))[0]
    assert answer[0] < again < answer[1] <= again + 1.3  # cut by the word (or the voice)


async def test_talking_over_the_answer_cuts_it_under_run_with_file_devices(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path
) -> None:
    """The daemon itself, its microphone a WAV read at its own pace, its speaker a WAV."""
    import asyncio
    import os
    import sys

    from tests.conftest import read_log

    track = Track()
    track.add(quiet(1.0), say("what is the tallest mountain in Europe"), quiet(2.6))
    over = say("actually tell me about the alps instead")
    track.add(over, quiet(4.0))
    mic = write_wav(tmp_path / "mic.wav", np.round(track.audio()))
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(reply_seconds=8.0)]))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp_path}/out.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n'
    )
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "run", "--config", str(config),
        env={**os.environ, "GEMINI_API_KEY": "k"}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert daemon.stderr is not None
        while not any(" turn 2: " in line for line in lines):
            line = (await daemon.stderr.readline()).decode()
            assert line, "".join(lines)
            lines.append(line)
    finally:
        daemon.terminate()
        await daemon.wait()
    turn_lines = [line for line in lines if re.search(r"edge_agent\.agent: turn \d+: ", line)]
    assert "interrupted yes" in turn_lines[0] and "interrupted no" in turn_lines[1], turn_lines
    sent = [e["msg"]["realtimeInput"] for e in read_log(emulator) if "realtimeInput" in e["msg"]]
    starts = [i for i, m in enumerate(sent) if "activityStart" in m]
    second = sent[starts[1] :]
    seconds = sum(int(m["audio"]["data"].strip("<> bytes")) for m in second if "audio" in m)
    assert seconds / 32000 >= len(over) / RATE  # the whole question reached the service
