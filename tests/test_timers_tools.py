"""Timers: the tools through the real ToolRunner, the ring sounds, the system clock."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import wave
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.audio.chimes import CHIMES, chime
from edge_agent.audio.pcm import peak
from edge_agent.events import FunctionCall
from edge_agent.timers.clock import clock_synchronised, local_now
from edge_agent.timers.sound import MAX_RING_S, load_ring_wav, ring_sound
from edge_agent.timers.tools import timer_tools
from edge_agent.tools.runner import ToolContext, ToolRunner
from tests.test_timers_core import Clocks, berlin


async def _call(runner: ToolRunner, answers: dict[str, dict[str, Any]], name: str,
                **args: Any) -> dict[str, Any]:  # fmt: skip
    call_id = f"c{len(answers)}"
    runner.start(FunctionCall(call_id, name, args))
    while call_id not in answers:
        await asyncio.sleep(0.005)
    return answers[call_id]


async def test_the_tools_through_the_runner(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    schedule = Clocks(berlin(2026, 5, 4, 12, 0)).schedule()
    answers: dict[str, dict[str, Any]] = {}
    runner = ToolRunner(
        timer_tools(schedule),
        ToolContext(end_conversation=lambda: None),
        lambda call_id, name, response, scheduling: answers.update({call_id: response}),
        timeout_s=2,
    )
    names = [d["name"] for d in runner.declarations()]
    assert names == ["set_timer", "set_alarm", "set_reminder", "list_timers", "cancel_timer"]
    set_ = (await _call(runner, answers, "set_timer", seconds=600, label="pasta"))["output"]
    assert set_["set"]["label"] == "pasta" and set_["set"]["seconds_left"] == 600
    assert set_["set"]["due_local"] == "12:10 today" and set_["set"]["left"] == "10 minutes"
    alarm = await _call(runner, answers, "set_alarm", time="7:30", days=["mon", "friday"])
    assert alarm["output"]["set"]["due_local"] == "07:30 on Friday"
    tomorrow = await _call(runner, answers, "set_alarm", time="11:00")
    assert tomorrow["output"]["set"]["due_local"] == "11:00 tomorrow"
    bad_arguments: list[tuple[str, dict[str, Any]]] = [
        ("set_timer", {"seconds": 0}),
        ("set_timer", {"seconds": 86401}),
        ("set_timer", {}),
        ("set_alarm", {"time": "25:00"}),
        ("set_alarm", {"time": "07:00", "days": ["someday"]}),
        ("set_reminder", {"text": ""}),
        ("set_reminder", {"text": "x" * 501, "in_seconds": 5}),
        ("cancel_timer", {"label": "y" * 61}),
    ]
    for name, args in bad_arguments:
        assert "bad arguments" in (await _call(runner, answers, name, **args))["error"]
    refused = await _call(runner, answers, "set_reminder", text="tea", at="10:00", in_seconds=5)
    assert "either" in refused["error"]
    listed = (await _call(runner, answers, "list_timers"))["output"]
    assert listed["count"] == 3 and listed["entries"][0]["label"] == "pasta"
    which = await _call(runner, answers, "cancel_timer")
    assert "which one" in which["error"]
    cancelled = await _call(runner, answers, "cancel_timer", label="Pasta")
    assert cancelled["output"]["cancelled"][0]["label"] == "pasta"
    json.dumps(answers)  # every answer is JSON
    assert caplog.records == []  # refusals are answers, not failures


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_the_ring_is_a_distinct_unclipped_phrase(rate: int) -> None:
    sound = ring_sound(rate, 1.0)
    assert abs(len(sound) / 2 / rate - 1.5) < 0.01
    assert 0.3 * 32767 < peak(sound) < 0.6 * 32767
    assert sound.startswith(b"\x00\x00")  # faded in: no click
    assert peak(ring_sound(rate, 0.5)) == pytest.approx(peak(sound) / 2, rel=0.01)
    assert ring_sound(rate, 0.0) == bytes(len(sound))
    for name in CHIMES:
        assert chime(name, rate) not in sound and sound[:2000] not in chime(name, rate)


def _wav(path: Path, samples: list[int], rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(array("h", samples).tobytes() if width == 2 else bytes(samples))
    return path


def test_a_user_wav_is_mixed_down_converted_and_capped(tmp_path: Path) -> None:
    stereo = _wav(tmp_path / "s.wav", [1000, 3000] * 24000, 24000, channels=2)
    assert load_ring_wav(stereo, 24000) == array("h", [2000] * 24000).tobytes()
    converted = load_ring_wav(_wav(tmp_path / "r.wav", [500] * 48000, 48000), 24000)
    assert converted is not None and abs(len(converted) // 2 - 24000) < 100
    long = load_ring_wav(_wav(tmp_path / "l.wav", [7] * 8000 * 40, 8000), 8000)
    assert long is not None and len(long) == 2 * 8000 * MAX_RING_S


def test_a_bad_wav_is_one_warning_and_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cases = {
        "missing.wav": None,
        "garbage.wav": b"RIFF\xff\xff\xff\xffWAVEjunk" * 10,
        "empty.wav": b"",
        "text.wav": b"hello",
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    paths = [tmp_path / name for name in cases]
    paths.append(_wav(tmp_path / "8bit.wav", [128] * 100, 16000, width=1))
    paths.append(_wav(tmp_path / "silent.wav", [], 16000))
    paths.append(_wav(tmp_path / "quad.wav", [0] * 400, 16000, channels=4))
    for path in paths:
        caplog.clear()
        assert load_ring_wav(path, 16000) is None, path
        assert [r.levelname for r in caplog.records] == ["WARNING"], path


def test_the_system_clock_answers_without_raising() -> None:
    assert isinstance(clock_synchronised(), bool)
    now = local_now()
    assert now.tzinfo is not None and abs((now - datetime.now(UTC)).total_seconds()) < 5


def test_the_timers_never_load_numpy() -> None:
    """The default configuration must not pay numpy's 15 MB for a beep."""
    code = (
        "import sys; from edge_agent.timers import schedule, tools, sound;"
        "sound.ring_sound(24000, 1.0); print('numpy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
