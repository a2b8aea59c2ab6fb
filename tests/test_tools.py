"""Tools: the model's calls answered on the emulator, plug-ins, validation, cancellation."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.audio.playback import Speaker
from edge_agent.audio.volume import Volume
from edge_agent.emulator.scenario import Scenario, ToolCallStep, Turn
from edge_agent.events import FunctionCall
from edge_agent.simulate import SimulateOptions, simulate
from edge_agent.tools import builtins
from edge_agent.tools.registry import Tool, discover
from edge_agent.tools.runner import ToolContext, ToolRunner
from tests.conftest import read_log, samples, write_wav
from tests.test_simulate import against

PLUGIN = """
import asyncio, pathlib
from edge_agent.tools import tool

@tool("Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"},
      "b": {"type": "number"}}, "required": ["a", "b"]})
def add(a, b):
    return a + b

@tool("Takes its time.", {"type": "object", "properties": {"marker": {"type": "string"}}})
async def slow_tool(marker=""):
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        pathlib.Path(marker).write_text("cancelled")
        raise

@tool("Turns the lights on in the background.", non_blocking=True)
def lights_on():
    import time
    time.sleep(0.3)
    return "lights are on"

@tool("Logs in.", {"type": "object", "properties": {"user": {"type": "string"},
      "password": {"type": "string"}}}, secret=["password"])
def log_in(user, password):
    return f"hello {user}"

@tool("Joins a network.", {"type": "object", "properties": {
      name: {"type": "string"} for name in ("ssid", "Password", "apiKey", "pin_code", "authToken",
                                            "client_secret", "keyboard")}})
def join(**args):
    return "joined"
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed third-party package offering tools through the entry point group."""
    root = tmp_path / "site"
    (root / "edge_test_tools").mkdir(parents=True)
    (root / "edge_test_tools" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "edge_test_tools-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edge-test-tools\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[edge_agent.tools]\nadd = edge_test_tools:add\nslow_tool = edge_test_tools:slow_tool\n"
        "lights_on = edge_test_tools:lights_on\nlog_in = edge_test_tools:log_in\n"
        "join = edge_test_tools:join\n"
    )
    monkeypatch.syspath_prepend(str(root))
    return root


def tool_responses(emulator: Any) -> list[tuple[int, dict[str, Any]]]:
    return [
        (e["conn"], r)
        for e in read_log(emulator)
        if "toolResponse" in e["msg"]
        for r in e["msg"]["toolResponse"]["functionResponses"]
    ]


async def run_turn(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    step: ToolCallStep,
    enabled: list[str],
    **emulator_options: Any,
) -> tuple[Any, dict[str, Any]]:
    wav_in = write_wav(tmp_path / "in.wav", speech("please do it", gap_s=3.0))
    # a 1.5 s answer, long enough for a non-blocking tool to finish while it plays
    scenario = Scenario(turns=[Turn(tool_call=step, transcript="Done.", reply_seconds=1.5)])
    emulator = await start_emulator(scenario=scenario, **emulator_options)
    config = against(emulator, tools={"enabled": enabled}, conversation={"idle_timeout_s": 60})
    summary = await simulate(config, SimulateOptions(input=wav_in))
    return emulator, summary


async def test_a_call_is_answered_with_its_id_and_result(
    start_emulator: Callable[..., Any], tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    emulator, summary = await run_turn(
        start_emulator, tmp_path, speech, ToolCallStep(name="get_time"), ["get_time"]
    )
    [(_, response)] = tool_responses(emulator)
    assert response["id"] == "function-call-1" and response["name"] == "get_time"
    assert set(response["response"]["output"]) >= {"date", "time", "zone"}
    assert summary["turns"][0]["first_audio_ms"] is not None  # the model answered after it
    declared = emulator.parsed_setups[0]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["get_time"]


async def test_a_bad_argument_is_an_error_response(
    start_emulator: Callable[..., Any], tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    step = ToolCallStep(name="set_volume", args={"percent": "loud"})
    emulator, _ = await run_turn(start_emulator, tmp_path, speech, step, ["set_volume"])
    [(_, response)] = tool_responses(emulator)
    assert "bad arguments" in response["response"]["error"]


async def test_set_volume_turns_the_speaker_down(
    start_emulator: Callable[..., Any], tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    step = ToolCallStep(name="set_volume", args={"percent": 25})
    emulator, _ = await run_turn(start_emulator, tmp_path, speech, step, ["set_volume"])
    [(_, response)] = tool_responses(emulator)
    assert response["response"] == {"output": {"percent": 25}}
    speaker = Speaker(24000, jitter_ms=0)
    volume = Volume(speaker, full_gain=2.0)
    tone = (np.sin(np.arange(2400) / 5) * 8000).astype("<i2").tobytes()
    peaks = []
    for percent in (100, 25):
        volume.set(percent)
        speaker.play(tone)
        speaker.end_of_reply()
        peaks.append(int(np.abs(samples(speaker.pull(4800))).max()))
    assert peaks[0] > 15000 and 3500 < peaks[1] < 4500  # gain 2.0, then a quarter of it


async def test_a_plugin_tool_is_discovered_and_called(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    plugin: Path,
) -> None:
    step = ToolCallStep(name="add", args={"a": 2, "b": 3})
    emulator, _ = await run_turn(start_emulator, tmp_path, speech, step, ["get_time", "add"])
    [(_, response)] = tool_responses(emulator)
    assert response["response"] == {"output": 5}
    assert "add" in discover([])


async def test_a_slow_tool_is_cancelled_by_the_model(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    plugin: Path,
) -> None:
    marker = tmp_path / "marker"
    step = ToolCallStep(name="slow_tool", args={"marker": str(marker)}, cancel_after_ms=300)
    emulator, _ = await run_turn(start_emulator, tmp_path, speech, step, ["slow_tool"])
    assert marker.read_text() == "cancelled"
    assert tool_responses(emulator) == []  # a cancelled call gets no response


async def test_a_non_blocking_tool_answers_while_the_model_talks(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    plugin: Path,
) -> None:
    step = ToolCallStep(name="lights_on", non_blocking=True)
    emulator, _ = await run_turn(start_emulator, tmp_path, speech, step, ["lights_on"])
    log = read_log(emulator)
    declared = emulator.parsed_setups[0]["tools"][0]["functionDeclarations"][0]
    assert declared["behavior"] == "NON_BLOCKING"
    first_audio = next(
        i for i, e in enumerate(log) if "modelTurn" in e["msg"].get("serverContent", {})
    )
    responded = next(i for i, e in enumerate(log) if "toolResponse" in e["msg"])
    assert first_audio < responded  # the model kept talking while the tool ran
    [(_, response)] = tool_responses(emulator)
    assert response["scheduling"] == "WHEN_IDLE" and response["response"]["output"]


async def test_a_tool_response_made_during_a_reconnect_is_delivered_after_it(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulators: list[Any] = []

    async def cut_the_line_then_answer() -> str:
        if len(emulators) == 1:  # the first run: the network fails while the tool runs
            emulators.append("dropped")
            for connection in list(emulators[0].connections.values()):
                connection.drop()
            await asyncio.sleep(0.2)
        return "done"

    flaky = Tool("flaky", "Runs across a network failure.", cut_the_line_then_answer)
    original = builtins.builtin_tools
    monkeypatch.setattr(builtins, "builtin_tools", lambda names: [*original(names), flaky])
    monkeypatch.setattr(
        "edge_agent.assembly.builtin_tools", lambda names: [*original(names), flaky]
    )
    wav_in = write_wav(tmp_path / "in.wav", speech("please do it", gap_s=4.0))
    scenario = Scenario(turns=[Turn(tool_call=ToolCallStep(name="flaky"))])
    emulator = await start_emulator(scenario=scenario)
    emulators.append(emulator)
    config = against(emulator, tools={"enabled": ["flaky"]}, conversation={"idle_timeout_s": 60})
    summary = await simulate(config, SimulateOptions(input=wav_in))
    responses = tool_responses(emulator)
    assert responses[0][0] == 2 and responses[0][1]["id"] == "function-call-1"  # after the gap
    assert summary["reconnects"] >= 1 and summary["turns"][0]["first_audio_ms"] is not None


async def test_calls_in_one_message_run_concurrently_and_time_out() -> None:
    started = asyncio.Event()

    async def first() -> str:
        started.set()
        return "first"

    async def second() -> str:
        await started.wait()  # deadlocks unless `first` runs at the same time
        return "second"

    async def forever() -> None:
        await asyncio.sleep(60)

    answers: list[tuple[str, dict[str, Any]]] = []
    runner = ToolRunner(
        [Tool("second", "", second), Tool("first", "", first), Tool("forever", "", forever)],
        ToolContext(end_conversation=lambda: None),
        lambda call_id, name, response, scheduling: answers.append((call_id, response)),
        timeout_s=0.5,
    )
    for number, name in enumerate(["second", "first", "forever", "missing"]):
        runner.start(FunctionCall(id=f"c{number}", name=name))
    while len(answers) < 4:
        await asyncio.sleep(0.02)
    by_id = dict(answers)
    assert by_id["c0"] == {"output": "second"} and by_id["c1"] == {"output": "first"}
    assert "did not finish within 0.5 s" in by_id["c2"]["error"]
    assert "no tool named 'missing'" in by_id["c3"]["error"]


async def test_gpio_output_refuses_pins_outside_its_allowlist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    try:
        answers: dict[str, dict[str, Any]] = {}
        runner = ToolRunner(
            [builtins.gpio_output_tool(["fan"])],
            ToolContext(end_conversation=lambda: None, gpio_outputs={"fan": 5}),
            lambda call_id, name, response, scheduling: answers.update({call_id: response}),
            timeout_s=2,
        )
        runner.start(FunctionCall("a", "gpio_output", {"name": "fan", "on": True}))
        runner.start(FunctionCall("b", "gpio_output", {"name": "heater", "on": True}))
        while len(answers) < 2:
            await asyncio.sleep(0.02)
        assert answers["a"] == {"output": {"name": "fan", "on": True}}
        assert Device.pin_factory.pin(5).state == 1
        assert "bad arguments" in answers["b"]["error"]
        context = ToolContext(end_conversation=lambda: None, gpio_outputs={"fan": 5})
        with pytest.raises(PermissionError):
            builtins._switch_output(context, "heater", True)  # the allowlist holds at run time
    finally:
        builtins._outputs.clear()
        Device.pin_factory.reset()
        Device.pin_factory = None


async def test_secret_arguments_never_reach_the_log(
    plugin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tools = discover([])
    answers: list[Any] = []
    runner = ToolRunner(
        [tools["log_in"]],
        ToolContext(end_conversation=lambda: None),
        lambda *args: answers.append(args),
        timeout_s=2,
    )
    runner.start(FunctionCall("x", "log_in", {"user": "ann", "password": "hunter2"}))
    while not answers:
        await asyncio.sleep(0.02)
    assert "ann" in caplog.text and "hunter2" not in caplog.text


async def test_secret_looking_arguments_are_redacted_unless_marked(
    plugin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tool's author marked nothing secret: names that look secret are redacted anyway."""
    caplog.set_level(logging.INFO)
    answers: list[Any] = []
    runner = ToolRunner(
        [discover([])["join"]],
        ToolContext(end_conversation=lambda: None),
        lambda *args: answers.append(args),
        timeout_s=2,
    )
    secrets = {"Password": "s1", "apiKey": "s2", "pin_code": "s3", "authToken": "s4"}
    args = {"ssid": "home", "keyboard": "qwerty", "client_secret": "s5", **secrets}
    runner.start(FunctionCall("x", "join", args))
    while not answers:
        await asyncio.sleep(0.02)
    assert answers[0][2] == {"output": "joined"}
    assert "'home'" in caplog.text and "'qwerty'" in caplog.text
    for value in ("s1", "s2", "s3", "s4", "s5"):
        assert f"'{value}'" not in caplog.text


def test_device_status_and_time_report_real_values() -> None:
    status = builtins.device_status.function()
    assert status["memory_total_mb"] > 0 and status["uptime_hours"] >= 0
    assert builtins.get_time.function()["date"]
