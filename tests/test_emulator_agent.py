"""The whole agent (simulate) against the emulator's model: tools it picks, what the agent
logs of grounding and code execution, and a spoken reply a person can listen to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.credentials import Credential
from edge_agent.emulator import voice
from edge_agent.emulator.scenario import Scenario, Turn
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import missing, read_log, run_cli, write_wav
from tests.test_emulator_fidelity import voiced_share
from tests.test_simulate import against, output_samples


async def test_a_question_about_the_time_calls_get_time_and_the_answer_uses_it(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("what time is it", gap_s=2.5))
    scenario = Scenario(turns=[Turn(input_transcript="what time is it")])
    emulator = await start_emulator(scenario=scenario)
    summary = await simulate(against(emulator), SimulateOptions(input=wav_in))
    calls = [e["msg"]["toolCall"] for e in read_log(emulator) if "toolCall" in e["msg"]]
    assert [c["functionCalls"][0]["name"] for c in calls] == ["get_time"]
    responses = [e["msg"]["toolResponse"] for e in read_log(emulator) if "toolResponse" in e["msg"]]
    told = responses[0]["functionResponses"][0]["response"]["output"]["time"]
    assert "get time says" in summary["turns"][0]["output_transcript"]
    assert told in summary["turns"][0]["output_transcript"]


async def test_the_agent_logs_grounding_sources_and_code_results(
    start_emulator: Callable[..., Any],
    speech: Callable[..., np.ndarray],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wav_in = write_wav(tmp_path / "in.wav", speech("who won the cup", "six times seven", gap_s=7))
    scenario = Scenario(
        turns=[
            Turn(input_transcript="who won the world cup"),
            Turn(input_transcript="what is 6 times 7"),
        ]
    )
    emulator = await start_emulator(scenario=scenario)
    config = against(emulator, tools={"google_search": True, "code_execution": True})
    with caplog.at_level(logging.INFO, logger="edge_agent.agent"):
        summary = await simulate(config, SimulateOptions(input=wav_in))
    assert "The result is 42." in summary["turns"][1]["output_transcript"], summary
    turn_lines = [r for r in caplog.records if r.getMessage().startswith("turn ")]
    assert len(turn_lines) == 2, [r.getMessage() for r in caplog.records]
    assert "sources: example.com <https://example.com/search?q=who+won+the+world+cup>" in (
        turn_lines[0].getMessage()
    )
    assert turn_lines[1].code_results == ["42"]  # type: ignore[attr-defined]
    assert any(r.getMessage() == "the model runs code: print(6 * 7)" for r in caplog.records)


def test_simulate_on_the_bundled_question_writes_a_spoken_reply(tmp_path: Path) -> None:
    if not voice.espeak_available():
        missing("espeak-ng missing")
    reply = tmp_path / "reply.wav"
    done = run_cli("simulate", "--json", "--output", str(reply))
    assert done.returncode == 0, done.stderr
    import json

    turn = json.loads(done.stdout)["turns"][0]
    assert turn["output_transcript"] == "This is the emulator's answer number 1."
    samples = output_samples(reply)
    start = int((turn["end_s"] + turn["first_audio_ms"] / 1000) * 24000)
    spoken = samples[start : start + 24000 * 2]  # the first 2 s of the answer
    assert voiced_share(spoken, 24000) > 0.5


async def test_typed_what_time_is_it_calls_get_time_with_the_agents_declarations(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    from edge_agent.events import Connected, ToolCall, TurnComplete
    from edge_agent.live.session import LiveSession
    from edge_agent.tools.builtins import builtin_tools
    from edge_agent.tools.registry import discover, enabled_tools
    from tests.test_live_session import Recorder, live_config, type_turn

    emulator = await start_emulator()
    config = live_config(emulator, tmp_path)
    tools = enabled_tools(config.tools.enabled, discover(builtin_tools([])))
    declarations = [t.declaration(non_blocking_supported=True) for t in tools]
    recorder = Recorder()
    session = LiveSession(config, recorder, _credential, declarations=declarations)
    task = asyncio.create_task(session.run())
    try:
        await recorder.wait_for(Connected)
        type_turn(session, "what time is it")
        await recorder.wait_for(ToolCall)
        call = recorder.of(ToolCall)[0].calls[0]
        assert call.name == "get_time" and call.args == {}
        session.send_tool_response(call.id, call.name, {"output": {"time": "14:03"}})
        await recorder.wait_for(TurnComplete)
    finally:
        await session.close()
        task.cancel()
    sessions = emulator.registry.sessions_by_handle.values()
    model_said = [h["text"] for state in sessions for h in state.history]
    assert any("time 14:03" in text for text in model_said)


def _credential() -> Credential:
    return Credential("test-key", "test")
