"""LiveSession against the emulator: faults, resumes, outages, refusals, tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.config import Config, config_from_dict
from edge_agent.credentials import Credential, run_token_command
from edge_agent.emulator.scenario import CloseStep, GoAwayStep, Scenario, ToolCallStep, Turn
from edge_agent.emulator.server import Emulator
from edge_agent.events import (
    Connected,
    Disconnected,
    KeyRefused,
    LiveEvent,
    ModelAudio,
    Offline,
    Reseeded,
    ResumptionUpdate,
    ToolCall,
    TurnComplete,
)
from edge_agent.live.resumption import HANDLE_FILE
from edge_agent.live.session import LiveSession
from tests.conftest import read_log, simulate_against


class Recorder:
    def __init__(self) -> None:
        self.events: list[LiveEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: LiveEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type, count: int = 1, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()


def live_config(emulator: Emulator, tmp_path: Path, **live: Any) -> Config:
    settings = {
        "endpoint": emulator.url,
        "ca_file": str(emulator.cert_path),
        "connect_timeout_s": 2.0,
        "max_backoff_s": 0.5,
        **live,
    }
    return config_from_dict({"live": settings, "service": {"state_dir": str(tmp_path / "state")}})


@contextlib.asynccontextmanager
async def running(
    config: Config, key: str = "test-key", state: bool = True
) -> AsyncIterator[tuple[LiveSession, Recorder, asyncio.Task[None]]]:
    recorder = Recorder()
    session = LiveSession(
        config,
        recorder,
        lambda: Credential(key, "test"),
        state_dir=Path(config.service.state_dir) if state else None,
    )
    task = asyncio.create_task(session.run())
    try:
        yield session, recorder, task
    finally:
        await session.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def type_turn(session: LiveSession, text: str) -> None:
    """A typed turn as the agent sends it with activity detection off: bracketed."""
    session.activity_start()
    session.send_text(text)
    session.activity_end()


def speak_turn(session: LiveSession, seconds: float = 0.6) -> None:
    session.activity_start()
    pcm = (np.sin(np.arange(int(16000 * seconds)) / 5) * 3000).astype(np.int16).tobytes()
    for start in range(0, len(pcm), 640):
        session.send_audio(pcm[start : start + 640])
    session.activity_end()


async def test_a_turn_round_trip_and_the_handle_is_persisted(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator()
    config = live_config(emulator, tmp_path)
    async with running(config) as (session, recorder, _):
        await recorder.wait_for(Connected)
        speak_turn(session)
        await recorder.wait_for(TurnComplete)
        await asyncio.sleep(0.1)
    assert recorder.of(ModelAudio)
    saved = json.loads((tmp_path / "state" / HANDLE_FILE).read_text())
    assert saved["handle"] == session.handle and saved["model"] == config.live.model
    async with running(config) as (restarted, recorder, _):  # a restart resumes
        await recorder.wait_for(Connected)
        assert recorder.of(Connected)[0].resumed
        assert restarted.last_resume_handle == saved["handle"]


@pytest.mark.parametrize("compression", [False, True])
async def test_websocket_compression_is_offered_only_when_configured(
    start_emulator: Callable[..., Any], tmp_path: Path, compression: bool
) -> None:
    emulator = await start_emulator()
    async with running(live_config(emulator, tmp_path, compression=compression)) as (
        session,
        recorder,
        _,
    ):
        await recorder.wait_for(Connected)
        speak_turn(session)
        await recorder.wait_for(TurnComplete)
    assert recorder.of(ModelAudio)
    assert ("permessage-deflate" in emulator.offered_extensions[0]) == compression


async def test_a_refused_key_is_retried_slowly_and_a_new_key_is_picked_up(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(api_key="right")
    config = live_config(emulator, tmp_path, max_backoff_s=0.5)
    keys = ["revoked"]
    recorder = Recorder()
    attempts: list[str] = []

    def provide() -> Credential:
        attempts.append(keys[0])
        return Credential(keys[0], "test")

    session = LiveSession(config, recorder, provide)
    task = asyncio.create_task(session.run())
    try:
        await recorder.wait_for(KeyRefused, count=2)
        assert not task.done()  # never fatal after start-up
        assert "API key" in recorder.of(KeyRefused)[0].detail
        keys[0] = "right"  # the user stores a new key
        await recorder.wait_for(Connected)
    finally:
        await session.close()
        task.cancel()
    assert attempts[0] == "revoked" and attempts[-1] == "right"


@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-3.1-flash-live-preview"])
async def test_1007_gives_a_fresh_session_reseeded_with_the_conversation(
    start_emulator: Callable[..., Any], tmp_path: Path, model: str
) -> None:
    """On 3.1 the seed is the initial history (historyConfig, turnComplete true); on 3.8 it is
    context (turnComplete false: true would start an answer)."""
    scenario = Scenario(
        turns=[
            Turn(transcript="Paris is the capital of France."),
            Turn(close=CloseStep(code=1007, reason="Request contains an invalid argument.")),
        ]
    )
    emulator = await start_emulator(scenario=scenario)
    async with running(live_config(emulator, tmp_path, model=model)) as (session, recorder, _):
        await recorder.wait_for(Connected)
        type_turn(session, "what is the capital of France")
        await recorder.wait_for(TurnComplete)
        type_turn(session, "and of Italy")  # answered, then the service closes with 1007
        await recorder.wait_for(Reseeded)
        type_turn(session, "and of Spain")
        await recorder.wait_for(TurnComplete, count=3)
    connected = recorder.of(Connected)
    assert [c.resumed for c in connected] == [False, False]
    seeded = [
        e["msg"]["clientContent"]
        for e in read_log(emulator)
        if e["dir"] == "in" and "clientContent" in e["msg"]
    ]
    texts = [part["text"] for turn in seeded[0]["turns"] for part in turn["parts"]]
    assert "Paris is the capital of France." in " ".join(texts)
    history = [setup.get("historyConfig") for setup in emulator.parsed_setups]
    if model.startswith("gemini-3.1"):
        assert seeded[0]["turnComplete"] is True
        assert history == [None, {"initialHistoryInClientContent": True}]
    else:
        assert seeded[0].get("turnComplete") in (None, False) and history == [None, None]


async def test_no_setup_complete_is_bounded_and_retried(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(no_setup_complete=True)
    config = live_config(emulator, tmp_path, connect_timeout_s=0.3)
    async with running(config) as (_, recorder, task):
        await recorder.wait_for(Offline, timeout=10)
        assert not task.done()
    assert "setupComplete" in recorder.of(Offline)[0].cause


async def test_silence_after_goaway_still_switches_to_a_resumed_socket(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    # goAway right after the first answer, then the server neither answers nor closes
    scenario = Scenario(turns=[Turn(go_away=GoAwayStep(time_left_s=30.0))])
    emulator = await start_emulator(scenario=scenario, silent_after_goaway=True)
    async with running(live_config(emulator, tmp_path)) as (session, recorder, _):
        await recorder.wait_for(Connected)
        type_turn(session, "hello")
        await recorder.wait_for(TurnComplete)
        await recorder.wait_for(Connected, count=2, timeout=10)  # long before timeLeft ran out
        type_turn(session, "still there?")
        await recorder.wait_for(TurnComplete, count=2)  # answered on the new socket
    assert recorder.of(Connected)[1].resumed
    assert "goAway" in recorder.of(Disconnected)[0].cause


async def test_an_outage_goes_offline_then_comes_back_by_itself(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator()
    port, cert_dir = emulator.port, emulator.options.cert_dir
    config = live_config(emulator, tmp_path)
    async with running(config) as (session, recorder, _):
        await recorder.wait_for(Connected)
        await emulator.stop()  # the network goes away
        await recorder.wait_for(Offline, timeout=10)
        speak_turn(session)  # spoken while offline: buffered, sent after
        back = await start_emulator(port=port, cert_dir=cert_dir)
        await recorder.wait_for(Connected, count=2, timeout=10)
        await recorder.wait_for(TurnComplete, timeout=10)
    assert back.registry.sessions_by_handle or back.parsed_setups
    assert recorder.of(Offline)[0].cause.startswith("network")


async def test_token_sessions_run_the_token_command_each_time(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    emulator = await start_emulator(api_key="real-key")
    minting = tmp_path / "mint.toml"
    minting.write_text(f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n')
    # the kiosk holds no key: its token command gets one from a trusted place (here: env)
    command = f"env GEMINI_API_KEY=real-key {sys.executable} -m edge_agent token --config {minting}"
    token = await asyncio.get_running_loop().run_in_executor(None, run_token_command, command)
    assert token.is_ephemeral_token
    config = live_config(emulator, tmp_path, token_command=command)
    recorder = Recorder()
    session = LiveSession(config, recorder, lambda: run_token_command(command))
    task = asyncio.create_task(session.run())
    try:
        await recorder.wait_for(Connected)
        type_turn(session, "hi")
        await recorder.wait_for(TurnComplete)
    finally:
        await session.close()
        task.cancel()
    assert len(emulator.registry.tokens) == 1  # two minted, the session's one-use token spent
    assert token.value in emulator.registry.tokens


async def test_goaway_and_drops_lose_no_turn_and_no_tool_response(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    turns = [Turn(reply_seconds=0.6, transcript=f"answer {i}") for i in range(12)]
    for index in (3, 8):
        turns[index] = Turn(
            reply_seconds=0.6, transcript=f"answer {index}", tool_call=ToolCallStep(name="get_time")
        )
    emulator = await start_emulator(
        scenario=Scenario(turns=turns),
        goaway_every=0.4,  # into each connection
        goaway_time_left_s=2.0,
        drop_every=1.1,
        pace=8.0,
    )
    answered_calls: set[str] = set()
    async with running(live_config(emulator, tmp_path)) as (session, recorder, _):
        await recorder.wait_for(Connected)
        for _ in range(12):
            speak_turn(session)
            before = len(recorder.of(TurnComplete))
            async with asyncio.timeout(15):
                while len(recorder.of(TurnComplete)) <= before:
                    for call in [c for e in recorder.of(ToolCall) for c in e.calls]:
                        if call.id not in answered_calls:
                            answered_calls.add(call.id)
                            session.send_tool_response(call.id, call.name, {"output": "noon"})
                    await asyncio.sleep(0.02)
    state = emulator.registry.sessions_by_handle[session.handle]
    answers = [h["text"] for h in state.history if h["role"] == "model"]
    for index in range(12):
        assert f"answer {index}" in answers, f"{index}: {answers}"
    issued = {f"function-call-{n}" for n in range(1, state.call_count + 1)}
    answered = {r["id"] for r in state.tool_responses}
    assert len(answered) >= 2 and answered | state.cancelled_calls == issued
    assert session.reconnects >= 2  # the faults did happen (how many depends on the pace)
    # every resume used the newest resumable handle the client had received
    newest, expected = None, []
    for event in recorder.events:
        if isinstance(event, ResumptionUpdate) and event.resumable:
            newest = event.handle
        elif isinstance(event, Connected) and newest is not None:
            expected.append(newest)
    used = [s["sessionResumption"]["handle"] for s in emulator.parsed_setups[1:]]
    assert used == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"api_key": "right"}, "refused the API key from GEMINI_API_KEY"),
        ({"reject_models": ("gemini-3.8-live",)}, "model 'gemini-3.8-live' refused"),
    ],
)
async def test_the_command_line_exits_2_on_a_refused_key_or_model(
    start_emulator: Callable[..., Any], options: dict[str, Any], message: str
) -> None:
    import os

    emulator = await start_emulator(**options)
    process = await asyncio.create_subprocess_exec(
        *simulate_against(emulator),
        env={**os.environ, "GEMINI_API_KEY": "wrong"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(process.communicate(), 60)
    lines = errors.decode().strip().splitlines()
    assert process.returncode == 2 and message in lines[-1]
    assert "Traceback" not in errors.decode()
