"""The emulator against the unmodified google-genai SDK (and raw WebSockets for bad frames)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from google.genai import errors, types

from edge_agent.config import config_from_dict
from edge_agent.emulator.scenario import CloseStep, GoAwayStep, Scenario, ToolCallStep, Turn
from edge_agent.emulator.server import Emulator
from edge_agent.live.setup import build_live_config
from tests.conftest import read_log, run_cli, sdk_client, write_wav

MODEL = "gemini-3.8-live"
MANUAL = build_live_config(config_from_dict({"turns": {"mode": "vad"}}))
AUTOMATIC = build_live_config(config_from_dict({"turns": {"mode": "server_vad"}}))
LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


async def ask(session: Any, text: str) -> None:
    """A typed turn: with activity detection off, activityStart/activityEnd bracket it."""
    await session.send_realtime_input(activity_start=types.ActivityStart())
    await session.send_realtime_input(text=text)
    await session.send_realtime_input(activity_end=types.ActivityEnd())


def pcm_blob(samples: np.ndarray, rate: int = 16000) -> types.Blob:
    return types.Blob(data=samples.astype("<i2").tobytes(), mime_type=f"audio/pcm;rate={rate}")


async def collect_turn(session: Any) -> list[types.LiveServerMessage]:
    """Messages up to and including turnComplete (or an interruption)."""
    messages = []
    async for message in session.receive():
        messages.append(message)
    return messages


async def resumable_handle(session: Any) -> str:
    """The handle that follows a turnComplete (the service sends it after the turn)."""
    while True:
        message = await asyncio.wait_for(session._receive(), 5)
        update = message.session_resumption_update
        if update and update.resumable:
            return str(update.new_handle)


def audio_bytes(messages: list[types.LiveServerMessage]) -> bytes:
    return b"".join(
        part.inline_data.data
        for m in messages
        if m.server_content and m.server_content.model_turn
        for part in m.server_content.model_turn.parts or []
        if part.inline_data and part.inline_data.data
    )


async def stream(
    session: Any, samples: np.ndarray, rate: int = 16000, chunk_ms: int = 100, paced: bool = False
) -> None:
    """Unpaced by default; paced at real time where a reply must finish within a gap."""
    step = rate * chunk_ms // 1000
    for start in range(0, len(samples), step):
        await session.send_realtime_input(audio=pcm_blob(samples[start : start + step], rate))
        if paced:
            await asyncio.sleep(chunk_ms / 1000)


async def test_manual_turn_is_answered_in_full(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        assert session.session_id
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(audio=pcm_blob(np.ones(16000, np.int16)))
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        messages = await collect_turn(session)
        assert (await resumable_handle(session)).startswith("handle-")
    pcm = audio_bytes(messages)
    assert 1.5 < len(pcm) / 2 / 24000 < 4.0  # espeak-ng saying the answer's 7 words
    contents = [m.server_content for m in messages if m.server_content]
    assert any(c.input_transcription and c.input_transcription.text for c in contents)
    said = [c.output_transcription.text for c in contents if c.output_transcription]
    assert "".join(said) == "This is the emulator's answer number 1." and len(said) >= 4
    kinds = [k for c in contents for k in ("generation_complete", "turn_complete") if getattr(c, k)]
    assert kinds == ["generation_complete", "turn_complete"]
    usage = messages[-1].usage_metadata
    assert usage is not None and usage.total_token_count == (
        usage.prompt_token_count + usage.response_token_count
    )
    assert {d.modality.value for d in usage.prompt_tokens_details} >= {"AUDIO"}
    in_flight = [m.session_resumption_update for m in messages if m.session_resumption_update]
    assert in_flight and not in_flight[0].resumable
    frames = [e for e in read_log(emulator) if e["dir"] == "out" and "serverContent" in e["msg"]]
    chunk_sizes = [
        int(part["inlineData"]["data"].strip("<> bytes"))
        for e in frames
        for part in e["msg"]["serverContent"].get("modelTurn", {}).get("parts", [])
    ]
    assert max(chunk_sizes) <= 4800  # 100 ms at 24 kHz


async def test_automatic_detection_on_espeak_speech_one_answer_per_question(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray]
) -> None:
    audio = speech("what is the weather today", "and tomorrow", gap_s=3.0)
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=AUTOMATIC) as session:
        # in real time: sent all at once, the second question's start would interrupt the
        # first answer before it ends (one receive() would then hold both answers)
        await stream(session, audio, paced=True)
        first = await collect_turn(session)
        second = await collect_turn(session)
    assert audio_bytes(first) and audio_bytes(second)
    assert emulator.registry.sessions_by_handle  # a handle per turn
    transcripts = [
        m.server_content.input_transcription.text
        for m in first + second
        if m.server_content and m.server_content.input_transcription
    ]
    assert len(transcripts) == 2


async def test_audio_at_48k_is_understood(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray]
) -> None:
    import soxr

    audio = np.asarray(soxr.resample(speech("hello there"), 16000, 48000), np.int16)
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=AUTOMATIC) as session:
        await stream(session, audio, rate=48000)
        assert audio_bytes(await collect_turn(session))


async def test_audio_stream_end_closes_the_turn_at_once(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray]
) -> None:
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=AUTOMATIC) as session:
        await stream(session, speech("hello there", gap_s=0.1))
        await session.send_realtime_input(audio_stream_end=True)
        assert audio_bytes(await collect_turn(session))


async def test_text_input_and_client_content_are_turns(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator(any_model=True)  # the known models answer in audio only
    text_config = build_live_config(config_from_dict({"live": {"response_modality": "text"}}))
    async with sdk_client(emulator).aio.live.connect(
        model="a-text-model", config=text_config
    ) as session:
        await ask(session, "What time is it?")
        first = await collect_turn(session)
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="And the date?")]),
            turn_complete=True,
        )
        second = await collect_turn(session)
    assert not audio_bytes(first + second)
    for number, turn in enumerate((first, second), 1):
        pieces = [m.text for m in turn if m.text]
        assert len(pieces) > 1  # streamed a few words at a time, as the service does
        assert "".join(pieces) == f"This is the emulator's answer number {number}."


async def test_user_speech_interrupts_the_answer(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(reply_seconds=8.0)]))
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        received = 0
        async for message in session.receive():
            if message.data:
                received += 1
                if received == 3:
                    await session.send_realtime_input(activity_start=types.ActivityStart())
            if message.server_content and message.server_content.interrupted:
                break
    assert received < 40  # the 8 s answer (80 chunks) was cut


async def test_no_interruption_lets_the_answer_finish(start_emulator: Callable[..., Any]) -> None:
    config = build_live_config(
        config_from_dict({"turns": {"activity_handling": "no_interruption"}})
    )
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "tell me a story")
        await session.send_realtime_input(activity_start=types.ActivityStart())
        messages = await collect_turn(session)
    assert not any(m.server_content and m.server_content.interrupted for m in messages)
    assert len(audio_bytes(messages)) / 2 / 24000 > 1.4


async def test_tool_call_waits_for_a_response_with_its_id(
    start_emulator: Callable[..., Any],
) -> None:
    scenario = Scenario(
        turns=[
            Turn(
                tool_call=ToolCallStep(name="get_time", args={"zone": "utc"}),
                transcript="It is noon.",
            )
        ]
    )
    emulator = await start_emulator(scenario=scenario)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "what time is it")
        call = None
        async for message in session.receive():
            if message.tool_call:
                call = message.tool_call.function_calls[0]
                break
        assert call is not None and call.name == "get_time" and call.args == {"zone": "utc"}
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"output": "12:00"})
            ]
        )
        messages = await collect_turn(session)
    assert audio_bytes(messages)
    session_state = next(iter(emulator.registry.sessions_by_handle.values()))
    assert session_state.tool_responses[0]["id"] == call.id


async def test_wrong_tool_response_id_closes_1007(start_emulator: Callable[..., Any]) -> None:
    scenario = Scenario(turns=[Turn(tool_call=ToolCallStep(name="get_time"))])
    emulator = await start_emulator(scenario=scenario)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "time?")
        async for message in session.receive():
            if message.tool_call:
                break
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id="made-up", name="get_time", response={"output": "x"})
            ]
        )
        with pytest.raises(errors.APIError) as caught:
            await collect_turn(session)
    assert caught.value.code == 1007 and "made-up" in str(caught.value)


async def test_tool_call_cancellation(start_emulator: Callable[..., Any]) -> None:
    scenario = Scenario(turns=[Turn(tool_call=ToolCallStep(name="slow", cancel_after_ms=50))])
    emulator = await start_emulator(scenario=scenario)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "do the slow thing")
        call_id, cancelled = None, None
        async for message in session.receive():
            if message.tool_call:
                call_id = message.tool_call.function_calls[0].id
            if message.tool_call_cancellation:
                cancelled = message.tool_call_cancellation.ids
                break
    assert cancelled == [call_id]


async def test_non_blocking_call_answers_without_waiting(
    start_emulator: Callable[..., Any],
) -> None:
    scenario = Scenario(turns=[Turn(tool_call=ToolCallStep(name="lights", non_blocking=True))])
    emulator = await start_emulator(scenario=scenario)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "lights on")
        messages = await collect_turn(session)
        call = next(m.tool_call.function_calls[0] for m in messages if m.tool_call)
        assert audio_bytes(messages)  # answered before any response
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    id=call.id, name=call.name, response={"output": "on"}, scheduling="WHEN_IDLE"
                )
            ]
        )
        follow_up = await collect_turn(session)
    assert audio_bytes(follow_up)


async def test_resumption_keeps_history_and_turn_count(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    client = sdk_client(emulator)
    async with client.aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "first")
        await collect_turn(session)
        handle = await resumable_handle(session)
    resumed = build_live_config(config_from_dict({}), resume_handle=handle)
    async with client.aio.live.connect(model=MODEL, config=resumed) as session:
        await ask(session, "second")
        messages = await collect_turn(session)
    state = emulator.registry.sessions_by_handle[handle]
    assert state.turn_count == 2 and [h["role"] for h in state.history] == ["user", "model"] * 2
    transcript = "".join(
        m.server_content.output_transcription.text
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    assert "number 2" in transcript


async def test_resume_while_the_old_socket_is_open_is_refused(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    client = sdk_client(emulator)
    async with client.aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "first")
        await collect_turn(session)
        handle = await resumable_handle(session)
        resumed = build_live_config(config_from_dict({}), resume_handle=handle)
        with pytest.raises(errors.APIError) as caught:
            async with client.aio.live.connect(model=MODEL, config=resumed):
                pass
    assert caught.value.code == 1011


async def test_unknown_handle_is_refused_with_1007(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    config = build_live_config(config_from_dict({}), resume_handle="handle-nope")
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config):
            pass
    assert caught.value.code == 1007


async def test_a_turn_without_activity_end_before_a_drop_is_discarded(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    client = sdk_client(emulator)
    async with client.aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "first")
        await collect_turn(session)
        handle = await resumable_handle(session)
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(audio=pcm_blob(np.ones(8000, np.int16)))
        await asyncio.sleep(0.05)
    assert emulator.registry.sessions_by_handle[handle].turn_count == 1


async def test_rejected_model_and_keys_close_as_the_service_does(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator(api_key="right", reject_models=("gemini-0-gone",))
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emulator, "right").aio.live.connect(
            model="gemini-0-gone", config=MANUAL
        ):
            pass
    assert caught.value.code == 1008 and "not found" in str(caught.value)
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emulator, "wrong").aio.live.connect(model=MODEL, config=MANUAL):
            pass
    assert caught.value.code == 1007 and "API key not valid" in str(caught.value)
    async with sdk_client(emulator, "right").aio.live.connect(model=MODEL, config=MANUAL):
        pass


def raw_context(emulator: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emulator.cert_path))


async def raw_exchange(
    emulator: Emulator, frames: list[str | bytes], query: str = "?key=k", path: str = LIVE_PATH
) -> tuple[int | None, str]:
    """Sends frames on a raw WebSocket; returns the close code and reason."""
    url = f"wss://127.0.0.1:{emulator.port}{path}{query}"
    async with websockets.connect(url, ssl=raw_context(emulator), max_size=2**24) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or ""


SETUP = json.dumps(
    {
        "setup": {
            "model": "models/gemini-3.8-live",
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
        }
    }
)
BAD_FRAMES = [
    (["not json"], 1007, "Invalid JSON"),
    (['{"realtime_input": {"text": "hi"}}'], 1007, "setup must come first"),
    (['{"setup": {"model": "models/gemini-3.8-live", "bogus": 1}}'], 1007, 'Unknown name "bogus"'),
    (['{"setup": {"model": 5}}'], 1007, "setup.model"),
    (
        [
            '{"setup": {"model": "models/gemini-3.8-live", "generation_config": '
            '{"enable_affective_dialog": true}}}'
        ],
        1007,
        'Unknown name "enable_affective_dialog"',
    ),
    (
        [SETUP, '{"realtime_input": {"audio": {"data": "%%%", "mime_type": "audio/pcm"}}}'],
        1007,
        "base64",
    ),
    ([SETUP, '{"realtime_input": {"audio": {"data": 12}}}'], 1007, "realtime_input.audio.data"),
    ([SETUP, '{"realtime_input": {}, "client_content": {}}'], 1007, "exactly one"),
    ([SETUP, '{"tool_response": {"function_responses": [{"id": "nope"}]}}'], 1007, "nope"),
    ([SETUP, '{"realtime_input": {"audio_stream_end": true}}'], 1007, "audio_stream_end"),
    ([SETUP, "[1, 2]"], 1007, "Expected an object"),
    ([SETUP, b"\xff\xfe"], 1007, "Invalid JSON"),
    ([SETUP, "x" * (9 * 1024 * 1024)], 1009, ""),
]


async def test_bad_frames_close_that_connection_only(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as healthy:
        for frames, code, reason in BAD_FRAMES:
            got_code, got_reason = await raw_exchange(emulator, frames)
            assert got_code == code and reason in got_reason, (frames[-1][:60], got_reason)
        await ask(healthy, "still there?")
        assert (await collect_turn(healthy))[-1].server_content.turn_complete


async def test_fuzzed_frames_never_crash_the_server(start_emulator: Callable[..., Any]) -> None:
    rng = np.random.default_rng(7)
    emulator = await start_emulator()
    shapes = ['{"realtime_input": %s}', '{"client_content": %s}', '{"tool_response": %s}', "%s"]
    values = [
        "null",
        "1",
        '"x"',
        "[]",
        "{}",
        '{"audio": []}',
        '{"turns": [{"parts": 3}]}',
        '{"function_responses": [null]}',
        '{"mediaChunks": [{"data": "AAA="}]}',
        "true",
    ]
    for _ in range(40):
        frame = shapes[rng.integers(len(shapes))] % values[rng.integers(len(values))]
        code, _ = await raw_exchange(emulator, [SETUP, frame, SETUP])
        assert code in (1007, 1000, None)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "ok?")
        assert audio_bytes(await collect_turn(session))


async def test_missing_key_and_other_auth_forms(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    code, reason = await raw_exchange(emulator, [SETUP], query="")
    assert code == 1008 and "API Key" in reason
    url = f"wss://127.0.0.1:{emulator.port}/proxy{LIVE_PATH}"
    async with websockets.connect(
        url, ssl=raw_context(emulator), additional_headers={"x-goog-api-key": "k"}
    ) as ws:
        await ws.send(SETUP)
        assert "setupComplete" in json.loads(await ws.recv())


async def test_goaway_then_close_on_the_scaled_clock(start_emulator: Callable[..., Any]) -> None:
    scenario = Scenario(turns=[Turn(go_away=GoAwayStep(time_left_s=10))])
    emulator = await start_emulator(scenario=scenario, clock_scale=50)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "hi")
        await collect_turn(session)
        await resumable_handle(session)
        message = await session._receive()
        assert message.go_away is not None and message.go_away.time_left == "10s"
        with pytest.raises(errors.APIError) as caught:
            await session._receive()
    assert caught.value.code == 1011 and "Deadline expired" in str(caught.value)


async def test_scenario_close_with_code_and_reason(start_emulator: Callable[..., Any]) -> None:
    scenario = Scenario(
        turns=[
            Turn(close=CloseStep(code=1011, reason="Internal error occurred.", before_reply=True))
        ]
    )
    emulator = await start_emulator(scenario=scenario)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "hi")
        with pytest.raises(errors.APIError) as caught:
            await collect_turn(session)
    assert caught.value.code == 1011 and "Internal error occurred." in str(caught.value)


async def test_scenario_interruption_and_wav_reply(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "reply.wav", np.full(44100, 1000, np.int16), rate=44100, channels=1)
    scenario = Scenario(turns=[Turn(wav=str(wav)), Turn(interrupt_after_s=0.3)])
    emulator = await start_emulator(scenario=scenario)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "one")
        first = await collect_turn(session)
        await ask(session, "two")
        second = await collect_turn(session)
    assert abs(len(audio_bytes(first)) / 2 - 24000) < 50
    assert any(m.server_content and m.server_content.interrupted for m in second)
    assert len(audio_bytes(second)) / 2 / 24000 <= 0.41


async def test_session_limit_without_compression(start_emulator: Callable[..., Any]) -> None:
    config = build_live_config(config_from_dict({"live": {"context_compression": False}}))
    emulator = await start_emulator(clock_scale=600)  # 2 min of video-session time = 0.2 s
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(
            video=types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg")
        )
        with pytest.raises(errors.APIError) as caught:
            await asyncio.wait_for(collect_turn(session), 5)
    assert caught.value.code == 1011
    log = read_log(emulator)
    assert any(
        e["msg"].get("realtimeInput", {}).get("video", {}).get("mimeType") == "image/jpeg"
        for e in log
    )


async def test_faults_drop_goaway_silence_and_no_setup_complete(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator(drop_every=0.3)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        with pytest.raises(errors.APIError) as caught:
            await asyncio.wait_for(session._receive(), 5)
    assert caught.value.code == 1006

    emulator = await start_emulator(goaway_every=0.2, silent_after_goaway=True)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        assert (await asyncio.wait_for(session._receive(), 5)).go_away is not None
        await ask(session, "anyone?")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(session._receive(), 0.5)

    emulator = await start_emulator(no_setup_complete=True)
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.5):
            async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL):
                pass


async def test_latency_fault_delays_answers(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator(latency_ms=300)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "hi")
        await collect_turn(session)
    log = read_log(emulator)
    asked = next(e["t"] for e in log if "realtimeInput" in e["msg"])
    answered = next(e["t"] for e in log if "modelTurn" in e["msg"].get("serverContent", {}))
    assert answered - asked >= 0.3


async def test_ephemeral_token_session(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator(api_key="real-key")
    client = sdk_client(emulator, "real-key", version="v1alpha")
    token = await client.aio.auth_tokens.create(
        config=types.CreateAuthTokenConfig(
            uses=1,
            live_connect_constraints=types.LiveConnectConstraints(
                model=MODEL, config=types.LiveConnectConfig(response_modalities=["AUDIO"])
            ),
        )
    )
    assert token.name and token.name.startswith("auth_tokens/")
    token_client = sdk_client(emulator, token.name, version="v1alpha")
    async with token_client.aio.live.connect(model=MODEL, config=MANUAL) as session:
        await ask(session, "hi")
        assert audio_bytes(await collect_turn(session))
    with pytest.raises(errors.APIError):  # one use only
        async with token_client.aio.live.connect(model=MODEL, config=MANUAL):
            pass
    paths = [e for e in read_log(emulator) if "setup" in e["msg"]]
    assert paths


async def test_log_replaces_payloads_and_keeps_mime_types(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(audio=pcm_blob(np.ones(1600, np.int16)))
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        await collect_turn(session)
    log = read_log(emulator)
    assert all(set(e) == {"t", "dir", "conn", "msg"} for e in log)
    audio_in = next(
        e["msg"]["realtimeInput"]["audio"]
        for e in log
        if "audio" in e["msg"].get("realtimeInput", {})
    )
    assert audio_in == {"data": "<3200 bytes>", "mimeType": "audio/pcm;rate=16000"}
    raw = emulator.options.log_path.read_text()
    assert base64.b64encode(b"\x01\x00" * 100).decode()[:40] not in raw


def test_emulator_command_prints_its_ready_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent",
            "emulator",
            "--port",
            "0",
            "--cert-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on https://127.0.0.1:")
        assert line.endswith(f"(trust {tmp_path / 'cert.pem'})")
        assert (tmp_path / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_bad_scenario_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text('{"turns": [{"reply_secs": 1}]}')
    done = run_cli("emulator", "--scenario", str(bad), "--cert-dir", str(tmp_path))
    assert done.returncode == 2 and "reply_secs" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_scenario_wav_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    from edge_agent.emulator.scenario import load_scenario

    write_wav(tmp_path / "answer.wav", np.zeros(100, np.int16))
    (tmp_path / "s.json").write_text('{"turns": [{"wav": "answer.wav"}, {}]}')
    scenario = load_scenario(str(tmp_path / "s.json"))
    assert scenario.turns[0].wav == str(tmp_path / "answer.wav")
    assert scenario.turn(5).reply_seconds == 1.5
