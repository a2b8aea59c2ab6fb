"""Wake word on espeak-ng speech: simulate (the whole agent) against the emulator, its log read."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from edge_agent.assembly import assemble
from edge_agent.audio.playback import Speaker
from edge_agent.config import VadConfig, WakeWordConfig
from edge_agent.credentials import Credential
from edge_agent.emulator.scenario import Scenario, Turn
from edge_agent.errors import UserError
from edge_agent.simulate import SimulateOptions, simulate
from edge_agent.wakeword import Detector, check_models, load_models
from tests.conftest import missing, read_log, run_cli, write_wav
from tests.test_simulate import against, loud_spans, output_samples

if importlib.util.find_spec("pymicro_wakeword") is None:
    missing("the wake extra missing (pip install -e '.[wake]')")

RATE = 16000
HANGOVER_S = VadConfig().hangover_short_ms / 1000  # the longest [vad] hangover
Say = Callable[..., np.ndarray]


@pytest.fixture(scope="module")
def say(tmp_path_factory: pytest.TempPathFactory) -> Say:
    """say(text, voice, speed): espeak-ng speech at 16 kHz, silence trimmed, cached per module."""
    if not shutil.which("espeak-ng"):
        missing("espeak-ng missing")
    folder = tmp_path_factory.mktemp("wake")
    cache: dict[tuple[str, str, int], np.ndarray] = {}

    def make(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
        key = (text, voice, speed)
        if key not in cache:
            path = folder / f"s{len(cache)}.wav"
            command = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text]
            subprocess.run(command, check=True, capture_output=True)
            with wave.open(str(path)) as wav:
                rate = wav.getframerate()
                raw = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            samples = np.asarray(soxr.resample(raw, rate, RATE), dtype=np.int16)
            loud = np.flatnonzero(np.abs(samples) > 300)
            cache[key] = samples[loud[0] : loud[-1] + 1]
        return cache[key]

    return make


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def wake_config(emulator: Any, **sections: dict[str, Any]) -> Any:
    conversation = {"start": "wake_word", **sections.pop("conversation", {})}
    return against(emulator, conversation=conversation, **sections)


def wire_audio_s(log: list[dict[str, Any]]) -> float:
    sent = [e["msg"]["realtimeInput"] for e in log if "realtimeInput" in e["msg"]]
    return sum(int(m["audio"]["data"].strip("<> bytes")) for m in sent if "audio" in m) / 32000


@pytest.mark.parametrize(
    ("model", "word", "voice", "speed"),
    [
        ("okay_nabu", "okay nabu", "en-us", 150),
        ("okay_nabu", "okay nabu", "en-gb-scotland", 190),
        ("alexa", "alexa", "en-gb+f2", 170),
    ],
)
async def test_the_question_after_the_wake_word_is_one_answered_turn_without_the_word(
    start_emulator: Callable[..., Any],
    say: Say,
    tmp_path: Path,
    model: str,
    word: str,
    voice: str,
    speed: int,
) -> None:
    wake, question = say(word, voice, speed), say("what time is it", voice, speed)
    audio = np.concatenate([silence(1.0), wake, silence(0.3), question, silence(3.0)])
    wake_end = (len(wake) + RATE) / RATE
    question_end = wake_end + (int(0.3 * RATE) + len(question)) / RATE
    emulator = await start_emulator()
    config = wake_config(emulator, wake_word={"models": [model]})
    options = SimulateOptions(input=write_wav(tmp_path / "in.wav", audio))
    summary = await simulate(config, options)
    turns = summary["turns"]
    assert len(turns) == 1, turns
    assert turns[0]["first_audio_ms"] is not None and not turns[0]["interrupted"]
    assert turns[0]["start_s"] >= wake_end  # the turn is the question only
    sent = wire_audio_s(read_log(emulator))
    assert len(question) / RATE <= sent <= question_end + HANGOVER_S + 0.1 - wake_end


def tv_like_mix(say: Say) -> np.ndarray:
    """Babble (three voices at once) and a TV: speech over music-like tones and noise."""
    lines = ("the weather will stay dry", "turn left at the next corner", "we need more milk")
    voices = ("en-us", "en-gb+f2", "en-029")
    parts = [
        say(text, voice, 170).astype(np.float64) for text, voice in zip(lines, voices, strict=True)
    ]
    babble = np.zeros(max(len(p) for p in parts) + RATE // 2)
    for offset, part in enumerate(parts):
        start = offset * RATE // 6
        babble[start : start + len(part)] += 0.6 * part
    news = say("and now the news: the council met today to talk about the new bridge", "en-gb")
    t = np.arange(len(news) + RATE) / RATE
    music = sum(
        2500 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 2 * t) > 0) for f in (220, 277, 330)
    )
    noise = np.random.default_rng(1).normal(0, 800, len(t))
    tv = music + noise
    tv[: len(news)] += news
    mixed = np.concatenate([babble, silence(1.0), tv])
    return np.clip(mixed, -32768, 32767).astype(np.int16)


async def test_speech_babble_and_tv_without_the_word_open_no_session(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path
) -> None:
    talk = [
        say("what is the weather like today", "en-us", 160),
        say("we can go home now", "en-gb", 180),
        say("I said no, but nobody listened", "en-gb-scotland", 150),
        say("lexicon and alex are words", "en-us+f3", 170),
    ]
    gaps = [part for line in talk for part in (line, silence(1.0))]
    audio = np.concatenate([*gaps, tv_like_mix(say), silence(1.0)])
    emulator = await start_emulator()
    options = SimulateOptions(input=write_wav(tmp_path / "in.wav", audio))
    config = wake_config(emulator, wake_word={"models": ["okay_nabu", "alexa"]})
    summary = await simulate(config, options)
    assert summary["turns"] == [] and summary["tokens"]["total"] == 0
    assert read_log(emulator) == [] and emulator.parsed_setups == []  # no connection at all


async def test_a_call_followed_by_silence_closes_within_6_s(
    start_emulator: Callable[..., Any], say: Say, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge_agent.conversation")
    audio = np.concatenate([silence(0.5), say("okay nabu"), silence(12.0)])
    emulator = await start_emulator()
    options = SimulateOptions(input=write_wav(tmp_path / "in.wav", audio))
    summary = await simulate(wake_config(emulator), options)
    assert summary["turns"] == []
    assert "closed (nothing said within 6 s of the call)" in caplog.text
    assert wire_audio_s(read_log(emulator)) == 0.0


@pytest.fixture
def story(say: Say, tmp_path: Path) -> Path:
    """The agent's scripted answer, which says the wake word itself, at 24 kHz."""
    answer = np.concatenate(
        [
            say("here is a story about a small robot", "en-gb", 160),
            silence(0.3),
            say("okay nabu, it said, what time is it", "en-gb", 160),
            silence(0.3),
            say("and nobody answered it for a long while", "en-gb", 160),
        ]
    )
    return write_wav(tmp_path / "story.wav", soxr.resample(answer, RATE, 24000), rate=24000)


def story_call(say: Say) -> np.ndarray:
    return np.concatenate([silence(0.5), say("okay nabu"), silence(0.3), say("tell me a story")])


async def with_story(
    start_emulator: Callable[..., Any], story: Path, tmp_path: Path, audio: np.ndarray, echo: str
) -> dict[str, Any]:
    """simulate with the story as the answer and its echo in the mic (0.3 at 40 ms)."""
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(wav=str(story))]))
    options = SimulateOptions(
        input=write_wav(tmp_path / "in.wav", audio),
        output=tmp_path / "out.wav",
        echo_gain=0.3,
        echo_delay_ms=40,
    )
    return await simulate(wake_config(emulator, audio={"echo": echo}), options)


@pytest.mark.parametrize("echo", ["half_duplex", "aec"])
async def test_the_wake_word_in_the_agents_own_echoed_answer_does_not_wake_it(
    start_emulator: Callable[..., Any],
    say: Say,
    story: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    echo: str,
) -> None:
    caplog.set_level(logging.INFO, "edge_agent.wakeword")
    audio = np.concatenate([story_call(say), silence(9.0)])
    summary = await with_story(start_emulator, story, tmp_path, audio, echo)
    assert len(summary["turns"]) == 1 and not summary["turns"][0]["interrupted"]
    if echo == "half_duplex":  # the mic did hear it; the speaker's detector heard it too
        assert "in the agent's own voice: ignored" in caplog.text
    assert caplog.text.count("wake word: Okay Nabu") == 1
    replies = loud_spans(output_samples(tmp_path / "out.wav"))
    assert replies[-1][1] - replies[0][0] > 5.0  # the answer played to its end


async def test_a_louder_user_saying_the_word_over_the_answer_cuts_it(
    start_emulator: Callable[..., Any],
    say: Say,
    story: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "edge_agent.wakeword")
    call = story_call(say)
    again = say("okay nabu", "en-us+m3", 170)
    question = say("stop the story please", "en-us+m3", 170)
    audio = np.concatenate([call, silence(2.5), again, silence(0.5), question, silence(4.0)])
    again_start = (len(call) + 2.5 * RATE) / RATE
    again_end = again_start + len(again) / RATE
    summary = await with_story(start_emulator, story, tmp_path, audio, "half_duplex")
    turns = summary["turns"]
    assert len(turns) == 2 and turns[0]["interrupted"] and turns[1]["first_audio_ms"] is not None
    assert caplog.text.count("wake word: Okay Nabu") == 2  # heard over the answer's echo
    first_reply = loud_spans(output_samples(tmp_path / "out.wav"))[0]
    # it was playing when the word was said, and stopped within the detection and echo check
    assert again_start < first_reply[1] <= again_end + 0.8


async def test_mute_stops_listening_for_the_wake_word(
    start_emulator: Callable[..., Any], say: Say
) -> None:
    emulator = await start_emulator()
    config = wake_config(emulator)
    speaker = Speaker(24000)
    key = Credential("k", "test")
    parts = assemble(config, speaker, lambda: 0.0, lambda: key, state_dir=None)
    word = np.concatenate([say("okay nabu"), silence(0.5)]).tobytes()
    frames = [word[i : i + 960] for i in range(0, len(word) - 959, 960)]
    try:
        parts.agent.set_muted(True)
        for frame in frames:
            parts.on_mic_frame(frame)
        assert not parts.conversation.is_open
        parts.agent.set_muted(False)
        for frame in frames:
            parts.on_mic_frame(frame)
        assert parts.conversation.is_open
    finally:
        await parts.link.shutdown()


DAEMON = """
import asyncio, sys
from edge_agent.config import config_from_dict
from edge_agent.daemon import run_daemon

async def main():
    stop = asyncio.Event()
    config = config_from_dict({sections})
    task = asyncio.create_task(run_daemon(config, use_emulator=True, stop=stop))
    await asyncio.sleep(1.0)
    stop.set()
    await task
    print("imported" if "pymicro_wakeword" in sys.modules else "not imported")

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("start", "expected"), [("speech", "not imported"), ("wake_word", "imported")]
)
def test_run_imports_the_wake_word_only_when_configured(
    tmp_path: Path, start: str, expected: str
) -> None:
    mic = write_wav(tmp_path / "mic.wav", silence(2.0))
    sections = {
        "conversation": {"start": start},
        "audio": {"input_device": f"file:{mic}", "output_device": f"file:{tmp_path}/o.wav"},
        "service": {"state_dir": str(tmp_path)},
    }
    done = subprocess.run(
        [sys.executable, "-c", DAEMON.format(sections=sections)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_bad_wake_word_settings_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[conversation]\nstart = "wake_word"\n[camera]\nsend = "always"\n')
    done = run_cli("check", "--config", str(config))
    assert done.returncode == 2
    assert 'cannot go with [camera] send = "always"' in done.stderr.strip().splitlines()[-1]
    config.write_text('[conversation]\nstart = "wake_word"\n[wake_word]\nmodels = ["hey_nobody"]\n')
    done = run_cli("simulate", "--config", str(config))
    assert done.returncode == 2
    assert "'hey_nobody' is neither a built-in model" in done.stderr.strip().splitlines()[-1]


GOOD_JSON = '{"model": "w.tflite", "micro": {"probability_cutoff": 0.9, "sliding_window_size": 5}}'


@pytest.mark.parametrize(
    ("json_text", "tflite", "error"),
    [
        ("{", b"", "not a microWakeWord model"),
        ('{"model": "w.tflite", "micro": {}}', b"", "not a microWakeWord model"),
        (GOOD_JSON, b"not a model", "missing or not a .tflite model"),
        (GOOD_JSON, b"xxxxTFL3 but no flatbuffer", "not a valid TFLite model"),  # was a crash
    ],
)
def test_a_bad_custom_model_is_one_clear_error(
    tmp_path: Path, json_text: str, tflite: bytes, error: str
) -> None:
    (tmp_path / "w.json").write_text(json_text)
    (tmp_path / "w.tflite").write_bytes(tflite)
    config = WakeWordConfig(models=[str(tmp_path / "w.json")])
    with pytest.raises(UserError, match=error):
        Detector(load_models(config))
    with pytest.raises(UserError, match=error):
        check_models(config)  # what a SIGHUP reload checks
