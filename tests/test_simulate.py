"""End to end: espeak-ng speech -> simulate (the whole agent) -> the emulator -> the output WAV."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.config import Config, config_from_dict
from edge_agent.emulator.scenario import Scenario, Turn
from edge_agent.emulator.server import Emulator
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import read_log, run_cli, write_wav

QUESTIONS = ("what is the weather like today", "should I take an umbrella", "thank you")


def against(emulator: Emulator, **sections: dict[str, Any]) -> Config:
    """A config for the test's emulator; chimes off unless asked (they would show in the WAV)."""
    live = {
        "endpoint": emulator.url,
        "ca_file": str(emulator.cert_path),
        "max_backoff_s": 0.5,
        **sections.pop("live", {}),
    }
    conversation = {"chimes": False, **sections.pop("conversation", {})}
    return config_from_dict({"live": live, "conversation": conversation, **sections})


def output_samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def loud_spans(samples: np.ndarray, rate: int = 24000) -> list[tuple[float, float]]:
    """Where the output WAV has sound (50 ms windows), merged across short pauses."""
    window = rate // 20
    loud = [bool(np.any(samples[i : i + window])) for i in range(0, len(samples), window)]
    spans: list[tuple[float, float]] = []
    for index, on in enumerate(loud):
        at = index * window / rate
        if on and spans and at - spans[-1][1] < 0.3:
            spans[-1] = (spans[-1][0], at + 0.05)
        elif on:
            spans.append((at, at + 0.05))
    return spans


async def test_one_turn_per_question_with_a_reply_after_each(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech(*QUESTIONS, gap_s=3.0)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator()
    options = SimulateOptions(input=wav_in, output=tmp_path / "out.wav")
    summary = await simulate(against(emulator), options)
    turns = summary["turns"]
    assert len(turns) == 3
    out = output_samples(tmp_path / "out.wav")
    assert len(out) >= len(audio) * 24000 // 16000
    replies = loud_spans(out)
    assert len(replies) == 3
    for turn, (reply_start, _) in zip(turns, replies, strict=True):
        assert turn["end_s"] < reply_start  # each answer follows its question
        assert turn["first_audio_ms"] is not None
        assert abs(turn["end_s"] + turn["first_audio_ms"] / 1000 - reply_start) < 0.1
        assert not turn["interrupted"]
        assert turn["input_transcript"] and turn["output_transcript"]
    assert summary["reconnects"] == 0 and summary["errors"] == []
    assert summary["tokens"]["total"] == summary["tokens"]["prompt"] + summary["tokens"]["response"]
    ends = [e for e in read_log(emulator) if "activityEnd" in e["msg"].get("realtimeInput", {})]
    assert len(ends) == 3


async def test_gemini_31s_usage_before_the_answer_is_not_taken_for_the_answer(
    start_emulator: Callable[..., Any],
    speech: Callable[..., np.ndarray],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """3.1 sends a serverContent with only usageMetadata once the question is in, before the
    answer's first model turn (and the answer comes 0.7 s later here): the turn's latency,
    its line and simulate --json are the answer's, and the usage is counted."""
    wav_in = write_wav(tmp_path / "in.wav", speech(QUESTIONS[0], gap_s=3.0))
    emulator = await start_emulator(latency_ms=700)
    config = against(emulator, live={"model": "gemini-3.1-flash-live-preview"})
    with caplog.at_level(logging.INFO, logger="edge_agent.agent"):
        summary = await simulate(config, SimulateOptions(input=wav_in))
    out = [e["msg"] for e in read_log(emulator) if e["dir"] == "out"]
    usage_only = [i for i, m in enumerate(out) if m.get("serverContent") == {}]
    first_turn = next(i for i, m in enumerate(out) if "modelTurn" in m.get("serverContent", {}))
    assert usage_only and usage_only[0] < first_turn
    assert set(out[usage_only[0]]) == {"serverContent", "usageMetadata"}
    [turn] = summary["turns"]
    assert turn["first_audio_ms"] is not None and turn["first_audio_ms"] >= 650
    assert not turn["interrupted"] and turn["output_transcript"]
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("turn 1:")]
    received = re.search(r"reply received \+(\d+) ms", line)
    assert received is not None and int(received.group(1)) >= 650, line
    assert "interrupted no" in line
    told = [m["usageMetadata"] for m in out if "usageMetadata" in m]
    tokens = summary["tokens"]
    assert tokens["prompt"] == sum(u["promptTokenCount"] for u in told) > 0
    assert tokens["response"] == sum(u["responseTokenCount"] for u in told) > 0
    assert tokens["total"] == tokens["prompt"] + tokens["response"]
    assert f"tokens {tokens['prompt']}/{tokens['response']}" in line
    assert summary["errors"] == []


async def test_push_to_talk_spans_are_the_turns(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech("turn on the lights", "and the radio", gap_s=3.0, lead_s=1.0)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator()
    config = against(emulator, turns={"mode": "push_to_talk"}, gpio={"button_pin": 17})
    spans = ((0.8, 2.6), (5.0, 6.5))
    summary = await simulate(config, SimulateOptions(input=wav_in, ptt_spans=spans))
    turns = summary["turns"]
    got = [edge for t in turns for edge in (t["start_s"], t["end_s"])]
    assert got == pytest.approx([edge for span in spans for edge in span], abs=0.05)
    assert all(t["first_audio_ms"] is not None for t in turns)
    sent = [
        e["msg"]["realtimeInput"]
        for e in read_log(emulator)
        if e["dir"] == "in" and "realtimeInput" in e["msg"]
    ]
    kinds = [next(iter(m)) for m in sent]
    assert kinds[0] == "activityStart" and kinds.count("activityEnd") == 2
    audio_sent = sum(int(m["audio"]["data"].strip("<> bytes")) for m in sent if "audio" in m)
    held = sum(end - start for start, end in spans)
    assert abs(audio_sent / 32000 - held) < 0.1  # audio only while the button is held


async def test_server_vad_streams_and_the_service_takes_the_turns(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech("what time is it", "and what day", gap_s=3.0)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator()
    config = against(emulator, turns={"mode": "server_vad"})
    summary = await simulate(config, SimulateOptions(input=wav_in))
    assert len(summary["turns"]) == 2
    assert all(t["first_audio_ms"] is not None for t in summary["turns"])
    log = read_log(emulator)
    assert not any("activityStart" in e["msg"].get("realtimeInput", {}) for e in log)
    assert any("audioStreamEnd" in e["msg"].get("realtimeInput", {}) for e in log)
    setup = emulator.parsed_setups[0]["realtimeInputConfig"]["automaticActivityDetection"]
    assert setup["disabled"] is False


async def test_the_turn_line_says_interrupted_when_the_answer_is_cut_after_it_came(
    start_emulator: Callable[..., Any],
    speech: Callable[..., np.ndarray],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole 8 s answer (and its turnComplete) is in 2 s into its playback; the person
    speaks over it 3.5 s in: the line is written once that is known, and agrees with --json."""
    first = speech("tell me a long story", gap_s=0.0, lead_s=0.5)
    second = speech("stop please", gap_s=3.0, lead_s=0.0)
    audio = np.concatenate([first, np.zeros(int(16000 * 4.3), np.int16), second])
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(reply_seconds=8.0)]))
    with caplog.at_level(logging.INFO, logger="edge_agent.agent"):
        summary = await simulate(against(emulator), SimulateOptions(input=wav_in, realtime=True))
    turns = summary["turns"]
    assert len(turns) == 2 and turns[0]["interrupted"] and not turns[1]["interrupted"]
    lines = [r.getMessage() for r in caplog.records if re.match(r"turn \d+: ", r.getMessage())]
    assert len(lines) == 2, lines
    for line, turn in zip(lines, turns, strict=True):
        said = "yes" if turn["interrupted"] else "no"
        assert f"interrupted {said}," in line, line


async def test_barge_in_cuts_the_answer(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    first = speech("tell me a long story", gap_s=0.0, lead_s=0.5)
    second = speech("stop please", gap_s=3.0, lead_s=0.0)
    # past [vad] continuation_ms: a new question, not the first one carried on
    audio = np.concatenate([first, np.zeros(int(16000 * 2.6), np.int16), second])
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(reply_seconds=8.0)]))
    options = SimulateOptions(input=wav_in, output=tmp_path / "out.wav")
    summary = await simulate(against(emulator), options)
    turns = summary["turns"]
    assert len(turns) == 2 and turns[0]["interrupted"] and not turns[1]["interrupted"]
    first_reply = loud_spans(output_samples(tmp_path / "out.wav"))[0]
    assert first_reply[1] - first_reply[0] < 3.0  # an 8 s answer, cut
    assert first_reply[1] <= turns[1]["start_s"] + 0.5


@pytest.mark.parametrize(("echo", "expected_turns"), [("half_duplex", 1), ("none", None)])
async def test_the_reply_through_the_speaker_opens_no_turn(
    start_emulator: Callable[..., Any],
    speech: Callable[..., np.ndarray],
    tmp_path: Path,
    echo: str,
    expected_turns: int | None,
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("how are you", gap_s=6.0))
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(reply_seconds=3.0)]))
    config = against(emulator, audio={"echo": echo})
    options = SimulateOptions(input=wav_in, echo_gain=0.3, echo_delay_ms=40, tail_limit_s=2.0)
    summary = await simulate(config, options)
    if expected_turns is None:  # without a guard the echo is taken for a user carrying on
        assert sum(len(turn["parts"]) for turn in summary["turns"]) > 1
    else:
        assert len(summary["turns"]) == expected_turns


async def test_every_turn_is_answered_through_goaway_and_drops(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech(*QUESTIONS, *QUESTIONS, gap_s=2.5)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator(goaway_every=0.8, goaway_time_left_s=1.0, drop_every=1.3)
    summary = await simulate(against(emulator), SimulateOptions(input=wav_in, realtime=False))
    assert len(summary["turns"]) == 6
    assert all(t["first_audio_ms"] is not None for t in summary["turns"]), summary["turns"]
    assert summary["reconnects"] >= 1 and summary["errors"] == []


async def test_text_replies_go_to_the_transcript_and_the_speaker_stays_silent(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("hello there", gap_s=2.0))
    emulator = await start_emulator(any_model=True)  # the known models answer in audio only
    config = against(emulator, live={"response_modality": "text", "model": "a-text-model"})
    options = SimulateOptions(input=wav_in, output=tmp_path / "out.wav")
    summary = await simulate(config, options)
    assert "answer number 1" in summary["turns"][0]["output_transcript"]
    assert not np.any(output_samples(tmp_path / "out.wav"))


def test_the_command_line_prints_the_contract_json(tmp_path: Path) -> None:
    done = run_cli("simulate", "--json", "--output", str(tmp_path / "out.wav"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary) == {"turns", "reconnects", "errors", "tokens", "timers"}
    assert set(summary["tokens"]) == {"prompt", "response", "total"}
    turn = summary["turns"][0]
    assert set(turn) == {
        "start_s",
        "end_s",
        "first_audio_ms",
        "interrupted",
        "input_transcript",
        "output_transcript",
        "parts",
    }
    assert turn["parts"] == [{"start_s": turn["start_s"], "end_s": turn["end_s"]}]
    assert turn["first_audio_ms"] is not None


def test_bad_simulate_input_is_a_user_error(tmp_path: Path) -> None:
    done = run_cli("simulate", "--input", str(tmp_path / "missing.wav"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    done = run_cli("simulate", "--ptt", "3-1")
    assert done.returncode == 2 and "ends before it starts" in done.stderr


def test_a_file_speaker_that_cannot_be_written_is_one_line_and_nothing_after(
    tmp_path: Path,
) -> None:
    """A `file:` speaker (or --output) that cannot be written: exit 2 and its one line, no
    'Exception ignored in: Wave_write.__del__' after it."""
    silence = write_wav(tmp_path / "in.wav", np.zeros(16000, dtype=np.int16))
    config = tmp_path / "c.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{silence}"\n'
        f'output_device = "file:{tmp_path}/missing/out.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}"\n'
    )
    done = run_cli("test-audio", "--config", str(config), "--seconds", "1")
    assert done.returncode == 2 and done.stderr == ""  # its problems are on stdout
    assert f"speaker 'file:{tmp_path}/missing/out.wav' cannot be opened" in done.stdout
    done = run_cli("run", "--emulator", "--config", str(config))
    assert done.returncode == 2
    assert "No such file or directory" in done.stderr.splitlines()[-1]
    assert "Exception ignored" not in done.stderr
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = run_cli("simulate", "--input", str(silence), "--output", str(folder))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"edge-agent: error: --output: {folder} is a directory"]


def test_run_without_a_key_says_how_to_set_one() -> None:
    done = run_cli("run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "edge-agent: error: no Gemini API key: set GEMINI_API_KEY (or the systemd credential "
        "gemini-api-key, or [live] token_command); `--emulator` runs without a key"
    ]


def test_run_with_a_missing_device_exits_2(alsa_files: tuple[Path, Path]) -> None:
    config = alsa_files[0].parent / "c.toml"
    config.write_text(
        f'[audio]\ninput_device = "no such mic"\n[service]\nstate_dir = "{alsa_files[0].parent}"\n'
    )
    done = run_cli("run", "--emulator", "--config", str(config))
    assert done.returncode == 2
    assert "no audio input device matches 'no such mic'" in done.stderr.splitlines()[-1]


async def test_an_answer_that_never_comes_is_given_up_and_reported(
    start_emulator: Callable[..., Any],
    speech: Callable[..., np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After reply_timeout_s a new connection is tried (it would replay a fresh turn); a turn
    older than the replay window is reported lost."""
    from edge_agent.live import session

    monkeypatch.setattr(session, "REPLAY_WINDOW_S", 1.5)
    wav_in = write_wav(tmp_path / "in.wav", speech("hello", gap_s=1.0))
    emulator = await start_emulator()
    config = against(emulator, live={"reply_timeout_s": 1.0, "connect_timeout_s": 2.0})
    running = asyncio.create_task(simulate(config, SimulateOptions(input=wav_in)))
    while not emulator.parsed_setups:
        await asyncio.sleep(0.01)
    emulator.options.latency_ms = 60_000  # the session is up; from now on the service is mute
    summary = await running
    assert summary["turns"][0]["first_audio_ms"] is None
    assert len(summary["errors"]) == 1
    assert re.fullmatch(r"turn 1 lost \(no_answer\): no answer within \d+ s", summary["errors"][0])
    assert len(emulator.parsed_setups) >= 2  # a new connection was tried


def test_simulate_honours_log_level_and_the_users_own_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[service]\nlog_level = "debug"\nstate_dir = "{state}"\n'
        "[conversation]\nmax_tokens_per_day = 10\n"
    )
    done = run_cli("simulate", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert " DEBUG " in done.stderr and " turn 1: " in done.stderr  # logs on stderr with --json
    assert json.loads(done.stdout)["turns"]  # and the JSON alone on stdout
    assert json.loads((state / "tokens.json").read_text())["tokens"] > 10
    again = run_cli("simulate", "--config", str(config), "--json")  # the budget is spent
    assert again.returncode == 1 and "conversation refused" in again.stderr
    (error,) = json.loads(again.stdout)["errors"]
    assert error.startswith("no turn: the daily budget is spent (")


def test_simulate_without_a_state_dir_of_its_own_keeps_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[conversation]\nmax_tokens_per_day = 10\n")
    for _ in range(2):  # a temporary state each time: the budget starts afresh
        done = run_cli("simulate", "--config", str(config), "--json")
        assert done.returncode == 0 and json.loads(done.stdout)["turns"], done.stderr


async def test_a_replayed_turn_keeps_one_transcript(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    """Issue 32: with connections dropped mid-answer, the text of the attempt that was lost
    stayed beside the replay's ("This is the This is the emulator's answer number 1.")."""
    audio = speech(*QUESTIONS, *QUESTIONS, gap_s=2.5)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator(drop_every=1.1)
    summary = await simulate(against(emulator), SimulateOptions(input=wav_in))
    assert summary["reconnects"] >= 2
    for turn in summary["turns"]:
        said, heard = turn["output_transcript"], turn["input_transcript"]
        assert said.count("This is the") <= 1 and heard.count("s of speech)") <= 1, turn


def test_a_refused_setup_is_one_error_naming_the_key_not_an_outage(tmp_path: Path) -> None:
    """Issue 32: thinking_level on 3.8 is refused at setup (1007); it was reported as offline,
    with a WARNING and a fresh session per attempt."""
    config = tmp_path / "config.toml"
    config.write_text('[live]\nthinking_level = "high"\n')
    done = run_cli("simulate", "--config", str(config), "--json")
    assert done.returncode == 1
    errors = json.loads(done.stdout)["errors"]
    assert errors[0].startswith("the service refused the key or setup: 1007 ")
    assert errors[0].endswith("(change [live] thinking_level)")
    assert "the service was never reached" not in errors
    warnings = [line for line in done.stderr.splitlines() if " WARNING " in line]
    assert not any("starting a fresh one" in line or "retrying with" in line for line in warnings)
