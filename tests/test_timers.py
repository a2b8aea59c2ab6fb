"""Timers, alarms and reminders through `edge-agent simulate`: the emulator's model calls the
tools (a scenario's tool_call), the ring lands on the output timeline, a spoken "stop" silences
it without reaching the service, and what is set survives a restart."""

from __future__ import annotations

import json
import os
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.assembly import assemble
from edge_agent.audio.playback import Speaker
from edge_agent.config import TIMER_TOOLS, Config
from edge_agent.credentials import Credential
from edge_agent.timers.sound import ring_sound
from tests.conftest import run_cli, write_wav

RATE = 16000
BUTTON_CONFIG = '[conversation]\nstart = "button"\n[gpio]\nbutton_pin = 17\n'
OUT_RATE = 24000


def _input(path: Path, speech: Callable[..., np.ndarray], seconds: float, **at: str) -> Path:
    """`seconds` of silence with utterances placed at given times: {"0.5": "set a timer"}."""
    samples = np.zeros(int(seconds * RATE), np.int16)
    for start, text in at.items():
        said = speech(text, gap_s=0.0, lead_s=0.0)
        begin = int(float(start) * RATE)
        samples[begin : begin + len(said)] = said[: len(samples) - begin]
    return write_wav(path, samples)


def _simulate(tmp_path: Path, wav: Path, turns: list[dict[str, Any]], *args: str) -> Any:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"turns": turns}))
    out = tmp_path / "out.wav"
    done = run_cli(
        "simulate", "--input", str(wav), "--scenario", str(scenario), "--output", str(out),
        "--json", *args,
    )  # fmt: skip
    summary = json.loads(done.stdout)
    if len(summary["errors"]) == 1 and summary["errors"][0].startswith("no turn: "):
        assert done.returncode == 1  # a run with no one speaking: told, and nothing else
    else:
        assert done.returncode == 0, done.stderr
    return summary, done.stderr, out


def _events(summary: dict[str, Any], what: str) -> list[dict[str, Any]]:
    return [t for t in summary["timers"] if t["what"] == what]


def _ring_starts(out: Path) -> list[float]:
    """Where a cycle of the built-in ring begins on the output timeline, in seconds."""
    with wave.open(str(out)) as wav:
        played = wav.readframes(wav.getnframes())
    head = ring_sound(OUT_RATE, 1.0)[:2000]
    starts, at = [], played.find(head)
    while at >= 0:
        if at % 2 == 0:
            starts.append(at / 2 / OUT_RATE)
        at = played.find(head, at + 2)
    return starts


def test_a_timer_rings_on_time_and_a_spoken_stop_silences_it_unsent(
    tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    wav = _input(
        tmp_path / "in.wav", speech, 16.0, **{"0.5": "set a timer for five seconds",
                                               "12.0": "okay, stop"}
    )  # fmt: skip
    set_timer = {"tool_call": {"name": "set_timer", "args": {"seconds": 5}}}
    summary, log, out = _simulate(tmp_path, wav, [set_timer])

    assert len(summary["turns"]) == 1, "the stop reached the service"
    (was_set,) = _events(summary, "set")
    (ringing,) = _events(summary, "ringing")
    (stopped,) = _events(summary, "stopped")
    assert ringing["at_s"] - was_set["at_s"] == pytest.approx(5.0, abs=0.15)
    assert 12.0 < stopped["at_s"] < 12.6  # as the gate heard "okay, stop"
    rings = _ring_starts(out)
    assert rings[0] == pytest.approx(ringing["at_s"], abs=0.05), "the ring is not on the timeline"
    assert len(rings) >= 2, "the ring did not repeat until stopped"
    assert all(start < stopped["at_s"] for start in rings)
    assert "5 second timer stopped (speech)" in log


def test_a_timer_survives_a_restart(tmp_path: Path, speech: Callable[..., np.ndarray]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[service]\nstate_dir = "{tmp_path / "state"}"\n')
    first = _input(tmp_path / "first.wav", speech, 4.0, **{"0.5": "set a timer for a minute"})
    set_timer = {"tool_call": {"name": "set_timer", "args": {"seconds": 60}}}
    summary, _, _ = _simulate(
        tmp_path, first, [set_timer], "--config", str(config),
        "--start-time", "2026-12-07T08:00:00",
    )  # fmt: skip
    (was_set,) = _events(summary, "set")
    state = tmp_path / "state" / "timers.json"
    assert os.stat(state).st_mode & 0o777 == 0o600

    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(40 * RATE, np.int16))
    summary, _, _ = _simulate(
        tmp_path, quiet, [], "--config", str(config), "--start-time", "2026-12-07T08:00:30"
    )
    (ringing,) = _events(summary, "ringing")
    assert ringing["label"] == "1 minute timer"
    assert ringing["at_s"] == pytest.approx(was_set["at_s"] + 30, abs=0.2)
    assert json.loads(state.read_text())["entries"] == []


@pytest.mark.parametrize(("restart_at", "what"), [("08:05:00", "ringing"), ("08:20:00", "missed")])
def test_a_timer_due_while_the_daemon_was_down_rings_if_under_ten_minutes_late(
    tmp_path: Path, speech: Callable[..., np.ndarray], restart_at: str, what: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[service]\nstate_dir = "{tmp_path / "state"}"\n')
    first = _input(tmp_path / "first.wav", speech, 4.0, **{"0.5": "set a timer for a minute"})
    set_timer = {"tool_call": {"name": "set_timer", "args": {"seconds": 60}}}
    _simulate(
        tmp_path, first, [set_timer], "--config", str(config),
        "--start-time", "2026-12-07T08:00:00",
    )  # fmt: skip
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(3 * RATE, np.int16))
    summary, _, _ = _simulate(
        tmp_path, quiet, [], "--config", str(config), "--start-time", f"2026-12-07T{restart_at}"
    )
    (event,) = [t for t in summary["timers"] if t["what"] in ("ringing", "missed")]
    assert event["what"] == what
    assert event["at_s"] < 0.2


def test_an_alarm_rings_at_its_local_time(
    tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    wav = _input(tmp_path / "in.wav", speech, 16.0, **{"0.5": "wake me at eight"})
    set_alarm = {"tool_call": {"name": "set_alarm", "args": {"time": "08:00"}}}
    summary, _, out = _simulate(tmp_path, wav, [set_alarm], "--start-time", "2026-12-07T07:59:50")
    (ringing,) = _events(summary, "ringing")
    assert ringing["kind"] == "alarm"
    assert ringing["at_s"] == pytest.approx(10.0, abs=0.15)
    assert _ring_starts(out)[0] == pytest.approx(ringing["at_s"], abs=0.05)


def test_a_reminder_is_spoken_by_the_model(
    tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    wav = _input(tmp_path / "in.wav", speech, 20.0, **{"0.5": "remind me about the bread"})
    set_reminder = {
        "tool_call": {
            "name": "set_reminder",
            "args": {"text": "take the bread out of the oven", "in_seconds": 8},
        }
    }
    summary, _, out = _simulate(tmp_path, wav, [set_reminder])
    (spoken,) = _events(summary, "spoken")
    assert not _events(summary, "ringing") and not _ring_starts(out)
    reminder = summary["turns"][1]
    assert reminder["output_transcript"] == "Here is your reminder: take the bread out of the oven."
    assert reminder["start_s"] == pytest.approx(spoken["at_s"], abs=0.15)


def test_with_the_button_a_reminder_is_spoken_with_the_microphone_closed(
    tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    """start = "button": the reminder's session takes no speech, and it closes once said."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[conversation]\nstart = "button"\nidle_timeout_s = 3\n[gpio]\nbutton_pin = 17\n'
    )
    wav = _input(
        tmp_path / "in.wav", speech, 24.0, **{"0.6": "remind me about the bread",
                                               "12.5": "is anybody listening"}
    )  # fmt: skip
    set_reminder = {
        "tool_call": {"name": "set_reminder", "args": {"text": "the bread", "in_seconds": 8}}
    }
    summary, log, _ = _simulate(
        tmp_path, wav, [set_reminder], "--config", str(config), "--ptt", "0.3-0.4"
    )
    assert _events(summary, "spoken")
    assert [t["output_transcript"] for t in summary["turns"][1:]] == [
        "Here is your reminder: the bread."
    ], "speech during the reminder reached the service"
    assert "the microphone closed" in log
    assert "closed (said)" in log


@pytest.mark.parametrize(
    ("config_text", "args", "stop_at", "how"),
    [
        ('[conversation]\nstart = "wake_word"\n', (), "okay nabu", "(speech)"),
        (BUTTON_CONFIG, ("--ptt", "0.3-0.4,12.0-12.1"), "", "(button)"),
    ],
    ids=["wake word", "button"],
)  # fmt: skip
def test_the_wake_word_or_a_press_stops_the_ring_and_opens_nothing(
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    config_text: str,
    args: tuple[str, ...],
    stop_at: str,
    how: str,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text)
    said = {"0.6": "okay nabu", "1.8": "set a timer for five seconds"}
    if stop_at:
        said["12.0"] = stop_at
    wav = _input(tmp_path / "in.wav", speech, 16.0, **said)
    set_timer = {"tool_call": {"name": "set_timer", "args": {"seconds": 5}}}
    summary, log, _ = _simulate(tmp_path, wav, [set_timer], "--config", str(config), *args)
    (stopped,) = _events(summary, "stopped")
    assert 12.0 <= stopped["at_s"] < 13.0
    assert f"5 second timer stopped {how}" in log
    assert len(summary["turns"]) == 1
    assert "conversation 2 opened" not in log


def test_the_ring_cuts_an_answer_and_its_own_echo_never_stops_it(
    tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    """The ring (mixed back into the microphone at 0.3 after 40 ms, as a speaker beside the mic)
    is the agent's own sound to the echo guard: it rings until ring_max_s."""
    config = tmp_path / "config.toml"
    config.write_text("[timers]\nring_max_s = 6\n")
    wav = _input(tmp_path / "in.wav", speech, 16.0, **{"0.5": "set a timer for two seconds"})
    set_timer = {"tool_call": {"name": "set_timer", "args": {"seconds": 2}}, "reply_seconds": 8}
    summary, log, _ = _simulate(
        tmp_path, wav, [set_timer], "--config", str(config), "--echo", "0.3@40"
    )
    (ringing,) = _events(summary, "ringing")
    (stopped,) = _events(summary, "stopped")
    assert summary["turns"][0]["interrupted"], "the ring did not cut the answer"
    assert stopped["at_s"] - ringing["at_s"] == pytest.approx(6.0, abs=0.15)
    assert "stopped (no one stopped it in 6 s)" in log
    assert len(summary["turns"]) == 1


def test_a_ring_plays_while_muted_and_never_quieter_than_its_floor(tmp_path: Path) -> None:
    """Muted microphone, volume at 10 %: the ring still plays, at min_volume_percent (50)."""
    now = [1000.0]
    speaker = Speaker(OUT_RATE)
    parts = assemble(Config(), speaker, lambda: now[0], lambda: Credential("k", "t"), tmp_path)
    assert parts.timers is not None
    parts.agent.set_muted(True)
    parts.volume.set(10)
    speaker.pull(4800)  # the mute chime leaves
    parts.timers.schedule.add_timer(1, "tea")
    frame = bytes(640)
    for _ in range(60):  # 1.2 s of microphone frames, on the Agent's clock
        now[0] += 0.02
        parts.on_mic_frame(frame)
    assert parts.timers.ringing and parts.agent.muted
    cycle = ring_sound(OUT_RATE, 0.5)
    assert speaker.pull(len(cycle) // 2) == cycle


def test_with_timers_off_their_tools_are_not_offered_and_not_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[timers]\nenabled = false\n")
    done = run_cli("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "set_timer" not in done.stderr
    parts = assemble(
        Config(timers={"enabled": False}), Speaker(OUT_RATE), lambda: 0.0,
        lambda: Credential("k", "t"), tmp_path,
    )  # fmt: skip
    assert parts.timers is None
    assert not [n for n in parts.agent.tools.tools if n in TIMER_TOOLS]


def test_timers_due_together_ring_once(tmp_path: Path) -> None:
    now = [1000.0]
    speaker = Speaker(OUT_RATE)
    parts = assemble(Config(), speaker, lambda: now[0], lambda: Credential("k", "t"), tmp_path)
    assert parts.timers is not None
    parts.timers.schedule.add_timer(1, "eggs")
    parts.timers.schedule.add_timer(1, "toast")
    for _ in range(60):
        now[0] += 0.02
        parts.on_mic_frame(bytes(640))
    assert [e.label for e in parts.timers.ringing] == ["eggs", "toast"]
    assert speaker.sounds_s == pytest.approx(len(ring_sound(OUT_RATE, 1.0)) / 2 / OUT_RATE)
