"""Conversations: when the session opens and closes, what it resumes, what it costs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.conversation import DailyBudget
from edge_agent.emulator.scenario import Scenario, ToolCallStep, Turn
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import read_log, write_wav
from tests.test_simulate import against, loud_spans, output_samples


def connections(emulator: Any) -> list[int]:
    return sorted({e["conn"] for e in read_log(emulator) if "setup" in e["msg"]})


def client_closes(emulator: Any) -> list[int]:
    return [e["conn"] for e in read_log(emulator) if e["dir"] == "in" and "close" in e["msg"]]


async def test_opens_on_speech_closes_when_idle_and_resumes_within_remember_minutes(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech("what is the time", "and the date", gap_s=5.0)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator()
    config = against(emulator, conversation={"idle_timeout_s": 1.5, "remember_minutes": 10})
    summary = await simulate(config, SimulateOptions(input=wav_in))
    assert len(summary["turns"]) == 2
    assert all(t["first_audio_ms"] is not None for t in summary["turns"])
    assert connections(emulator) == [1, 2]
    assert 1 in client_closes(emulator)  # the session was closed after the idle timeout
    first, second = emulator.parsed_setups
    assert "handle" not in first["sessionResumption"]
    assert second["sessionResumption"]["handle"]  # resumed: "and the date" keeps its context
    state = emulator.registry.sessions_by_handle[second["sessionResumption"]["handle"]]
    assert state.turn_count == 2


async def test_after_remember_minutes_a_new_session_starts(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("hello", "hello again", gap_s=5.0))
    emulator = await start_emulator()
    config = against(emulator, conversation={"idle_timeout_s": 1.5, "remember_minutes": 0})
    await simulate(config, SimulateOptions(input=wav_in))
    assert [("handle" in s["sessionResumption"]) for s in emulator.parsed_setups] == [False, False]


async def test_the_first_turn_is_not_lost_while_the_session_connects(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech("please tell me what the weather will be like tomorrow", gap_s=2.0)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator(latency_ms=1200)  # setupComplete comes after the speech
    summary = await simulate(against(emulator), SimulateOptions(input=wav_in))
    turn = summary["turns"][0]
    log = read_log(emulator)
    setup_done = next(e["t"] for e in log if "setupComplete" in e["msg"])
    first_audio = next(e["t"] for e in log if "audio" in e["msg"].get("realtimeInput", {}))
    assert first_audio >= setup_done  # nothing could be sent before the session was up ...
    sent = sum(
        int(e["msg"]["realtimeInput"]["audio"]["data"].strip("<> bytes"))
        for e in log
        if "audio" in e["msg"].get("realtimeInput", {})
    )
    spoken = turn["end_s"] - turn["start_s"]
    assert sent / 32000 >= spoken + 0.3  # ... yet the whole turn and its pre-roll arrived
    assert turn["first_audio_ms"] is not None


async def test_in_button_mode_speech_alone_opens_nothing(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("hello", "is anyone there", gap_s=1.5))
    emulator = await start_emulator()
    config = against(emulator, conversation={"start": "button"})
    summary = await simulate(config, SimulateOptions(input=wav_in))
    assert summary["turns"] == [] and connections(emulator) == []


async def test_a_press_opens_and_a_double_press_ends_the_conversation(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    audio = speech("what is the news", gap_s=5.0, lead_s=1.0)
    wav_in = write_wav(tmp_path / "in.wav", audio)
    emulator = await start_emulator()
    config = against(emulator, conversation={"start": "button", "idle_timeout_s": 60})
    presses = ((0.2, 0.35), (5.0, 5.1), (5.3, 5.4))  # a press, then a double press
    summary = await simulate(config, SimulateOptions(input=wav_in, ptt_spans=presses))
    assert len(summary["turns"]) == 1 and summary["turns"][0]["first_audio_ms"] is not None
    assert connections(emulator) == [1] and client_closes(emulator) == [1]


async def test_the_end_conversation_tool_closes_it(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("goodbye", gap_s=4.0))
    scenario = Scenario(
        turns=[Turn(tool_call=ToolCallStep(name="end_conversation"), transcript="Goodbye!")]
    )
    emulator = await start_emulator(scenario=scenario)
    config = against(emulator, conversation={"idle_timeout_s": 60})
    summary = await simulate(config, SimulateOptions(input=wav_in))
    assert summary["turns"][0]["first_audio_ms"] is not None  # the goodbye played first
    assert client_closes(emulator) == [1]
    response = next(
        e["msg"]["toolResponse"] for e in read_log(emulator) if "toolResponse" in e["msg"]
    )
    assert response["functionResponses"][0]["name"] == "end_conversation"


async def test_the_daily_budget_refuses_new_conversations_once_spent(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("first question", "second question", gap_s=5.0))
    emulator = await start_emulator()
    config = against(
        emulator, conversation={"idle_timeout_s": 1.5, "max_tokens_per_day": 50, "chimes": True}
    )
    options = SimulateOptions(input=wav_in, output=tmp_path / "out.wav")
    summary = await simulate(config, options)
    assert len(summary["turns"]) == 1 and connections(emulator) == [1]
    assert summary["tokens"]["total"] >= 50
    chimes = [
        span for span in loud_spans(output_samples(tmp_path / "out.wav")) if span[1] - span[0] < 0.4
    ]
    assert len(chimes) >= 3  # opened, closed, and the refusal's error chime


def test_the_budget_is_kept_across_restarts_and_resets_at_midnight(tmp_path: Path) -> None:
    day = [dt.date(2026, 11, 24)]
    budget = DailyBudget(100, tmp_path, lambda: day[0])
    budget.add(60)
    budget.add(50)
    assert budget.exhausted
    restarted = DailyBudget(100, tmp_path, lambda: day[0])
    assert restarted.spent == 110 and restarted.exhausted
    day[0] = dt.date(2026, 11, 25)
    assert not restarted.exhausted and restarted.spent == 0
    assert not DailyBudget(0, tmp_path, lambda: day[0]).exhausted  # 0 = no limit


async def test_always_mode_opens_at_start(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", np.zeros(16000 * 2, np.int16))
    emulator = await start_emulator()
    config = against(emulator, conversation={"start": "always", "idle_timeout_s": 0.5})
    await simulate(config, SimulateOptions(input=wav_in))
    assert connections(emulator) == [1] and client_closes(emulator) == [1]  # closed at the end


async def test_a_wake_shows_listening_at_once_before_any_speech(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    import time

    from edge_agent.assembly import assemble
    from edge_agent.audio.playback import Speaker
    from edge_agent.credentials import Credential

    emulator = await start_emulator()
    config = against(emulator, conversation={"start": "button"})
    parts = assemble(config, Speaker(24000), time.monotonic, lambda: Credential("k", "t"), None)
    try:
        parts.agent.wake("wake word")
        assert parts.agent.state.value == "listening"
        parts.agent.close_conversation("test")
        assert parts.agent.state.value != "listening"
    finally:
        await parts.link.shutdown()
