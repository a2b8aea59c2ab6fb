"""Issue 23: the emulator behaves as the service does, one test per item, through the SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import numpy as np
import pytest
import webrtcvad
from google.genai import errors, types

from edge_agent.emulator.scenario import Scenario, Turn
from tests.conftest import read_log, sdk_client
from tests.test_emulator import ask, audio_bytes, collect_turn, pcm_blob, raw_exchange, stream

MODEL = "gemini-3.8-live"
AUDIO: dict[str, Any] = {"response_modalities": ["AUDIO"]}
MANUAL: dict[str, Any] = {
    **AUDIO,
    "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
}


def contents(messages: list[types.LiveServerMessage]) -> list[types.LiveServerContent]:
    return [m.server_content for m in messages if m.server_content]


async def refusal(emulator: Any, model: str, config: dict[str, Any], version: str) -> str:
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(emulator, version=version).aio.live.connect(
            model=model, config=config
        ) as session:
            await ask(session, "hello")
            await collect_turn(session)
    assert caught.value.code == 1007
    return str(caught.value)


# ---- 1. models differ ------------------------------------------------------------------------


async def test_each_model_refuses_what_it_does_not_support(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    thinking = {**MANUAL, "thinking_config": {"thinking_level": "LOW"}}
    assert "thinking_level" in await refusal(emulator, MODEL, thinking, "v1beta")
    text = {**MANUAL, "response_modalities": ["TEXT"]}
    assert "audio only" in await refusal(emulator, MODEL, text, "v1beta")
    affective = {**MANUAL, "enable_affective_dialog": True}
    assert "affective" in await refusal(emulator, MODEL, affective, "v1alpha")
    not_proactive = {**MANUAL, "proactivity": {"proactive_audio": False}}
    assert "always proactive" in await refusal(emulator, MODEL, not_proactive, "v1alpha")
    non_blocking = {
        **MANUAL,
        "tools": [{"function_declarations": [{"name": "lights", "behavior": "NON_BLOCKING"}]}],
    }
    assert "synchronous" in await refusal(
        emulator, "gemini-3.1-flash-live-preview", non_blocking, "v1beta"
    )
    # the same options on the models that take them
    native = "gemini-2.5-flash-native-audio-preview-12-2025"
    accepted = [
        (native, {**MANUAL, "thinking_config": {"thinking_budget": 512}}, "v1beta"),
        (native, {**affective, "proactivity": {"proactive_audio": True}}, "v1alpha"),
        ("gemini-3.1-flash-live-preview", thinking, "v1beta"),
        (MODEL, non_blocking, "v1beta"),
    ]
    for model, config, version in accepted:
        client = sdk_client(emulator, version=version)
        async with client.aio.live.connect(model=model, config=config) as session:
            await ask(session, "hello")
            assert audio_bytes(await collect_turn(session))


async def test_2_5_sends_one_part_per_message_and_takes_client_content_only_first(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    config = {**MANUAL, "output_audio_transcription": {}}
    native = "gemini-2.5-flash-native-audio-preview-09-2025"
    async with sdk_client(emulator).aio.live.connect(model=native, config=config) as session:
        await ask(session, "hello")
        separate = contents(await collect_turn(session))
        with pytest.raises(errors.APIError) as caught:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="and now?")])
            )
            await collect_turn(session)
    assert caught.value.code == 1007 and "client_content" in str(caught.value)
    assert all(not (c.model_turn and c.output_transcription) for c in separate)
    assert any(c.output_transcription for c in separate)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "hello")
        together = contents(await collect_turn(session))
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="and now?")])
        )
        assert audio_bytes(await collect_turn(session))  # 3.x: all session long
    assert any(c.model_turn and c.output_transcription for c in together)


async def test_3_1_takes_client_content_only_as_the_initial_history(
    start_emulator: Callable[..., Any],
) -> None:
    """Issue 32: the 3.1 docs; the service closes with 1007 otherwise."""
    emulator = await start_emulator()
    flash = "gemini-3.1-flash-live-preview"
    history = [
        types.Content(role="user", parts=[types.Part(text="what is the capital of France")]),
        types.Content(role="model", parts=[types.Part(text="Paris.")]),
    ]
    seeded = {**MANUAL, "history_config": {"initial_history_in_client_content": True}}
    async with sdk_client(emulator).aio.live.connect(model=flash, config=seeded) as session:
        await session.send_client_content(turns=history, turn_complete=True)  # no answer
        await ask(session, "and of Italy")
        assert audio_bytes(await collect_turn(session))
        with pytest.raises(errors.APIError) as mid_session:  # not after the history
            await session.send_client_content(turns=history[0], turn_complete=False)
            await collect_turn(session)
    assert mid_session.value.code == 1007
    with pytest.raises(errors.APIError) as unseeded:  # not without historyConfig
        async with sdk_client(emulator).aio.live.connect(model=flash, config=MANUAL) as session:
            await session.send_client_content(turns=history, turn_complete=True)
            await collect_turn(session)
    assert unseeded.value.code == 1007 and "initial history" in str(unseeded.value)
    asked = [m for m in read_log(emulator) if m["dir"] == "out" and "serverContent" in m["msg"]]
    turns = [m for m in asked if m["msg"]["serverContent"].get("turnComplete")]
    assert len(turns) == 1  # the seeded history itself was not answered


# ---- 2. the model picks tools ----------------------------------------------------------------

THERMOSTAT = {
    "name": "set_thermostat",
    "description": "Set the heating temperature of a room.",
    "parameters_json_schema": {
        "type": "object",
        "properties": {
            "room": {"type": "string", "enum": ["kitchen", "bedroom", "office"]},
            "celsius": {"type": "integer", "minimum": 10, "maximum": 28},
            "mode": {"type": "string", "default": "comfort"},
            "boost": {"type": "boolean"},
        },
        "required": ["room", "celsius", "boost"],
    },
}


async def test_the_model_calls_a_declared_function_with_valid_arguments_then_uses_the_result(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    config = {
        **MANUAL,
        "output_audio_transcription": {},
        "tools": [{"function_declarations": [THERMOSTAT, {"name": "get_time"}]}],
    }
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "please warm the bedroom heating to 35 degrees")
        call = None
        async for message in session.receive():
            if message.tool_call:
                call = message.tool_call.function_calls[0]
                break
        assert call is not None and call.name == "set_thermostat"
        jsonschema.validate(call.args, THERMOSTAT["parameters_json_schema"])
        assert call.args == {"room": "bedroom", "celsius": 28, "mode": "comfort", "boost": True}
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"output": "set to 28"})
            ]
        )
        answer = contents(await collect_turn(session))
    said = "".join(c.output_transcription.text for c in answer if c.output_transcription)
    assert "set to 28" in said


async def test_the_guide_function_calling_example(start_emulator: Callable[..., Any]) -> None:
    # ai.google.dev Live API tool use guide, as written there
    emulator = await start_emulator()
    tools: list[Any] = [
        {"function_declarations": [{"name": "turn_on_the_lights"}, {"name": "turn_off_the_lights"}]}
    ]
    config = {"response_modalities": ["AUDIO"], "tools": tools}
    called = []
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns={"parts": [{"text": "Turn on the lights please"}]})
        async for response in session.receive():
            if response.tool_call:
                function_responses = []
                for fc in response.tool_call.function_calls or []:
                    called.append(fc.name)
                    function_responses.append(
                        types.FunctionResponse(id=fc.id, name=fc.name, response={"result": "ok"})
                    )
                await session.send_tool_response(function_responses=function_responses)
            if response.data:
                break
    assert called == ["turn_on_the_lights"]


async def test_search_grounds_and_code_execution_shows_code_and_result(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    config = {**MANUAL, "tools": [{"google_search": {}}, {"code_execution": {}}]}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "who won the last world cup")
        searched = contents(await collect_turn(session))
        await ask(session, "what is 6 times 7")
        computed = contents(await collect_turn(session))
    grounding = next(c.grounding_metadata for c in searched if c.grounding_metadata)
    assert grounding.web_search_queries == ["who won the last world cup"]
    assert grounding.grounding_chunks and grounding.grounding_chunks[0].web
    parts = [p for c in computed if c.model_turn for p in c.model_turn.parts or []]
    code = next(p.executable_code for p in parts if p.executable_code)
    result = next(p.code_execution_result for p in parts if p.code_execution_result)
    assert code.code == "print(6 * 7)" and result.output == "42\n"
    assert result.outcome == types.Outcome.OUTCOME_OK


async def test_non_blocking_scheduling_interrupt_when_idle_silent_and_will_continue(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator(scenario=Scenario(turns=[Turn(), Turn(reply_seconds=6.0)]))
    lamp = {"name": "dim_lamp", "description": "Dim the lamp.", "behavior": "NON_BLOCKING"}
    config = {**MANUAL, "tools": [{"function_declarations": [lamp]}]}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "dim the lamp")
        first = await collect_turn(session)  # answered without waiting for the response
        call = next(m.tool_call.function_calls[0] for m in first if m.tool_call)

        def response(scheduling: str, output: str, more: bool) -> types.FunctionResponse:
            return types.FunctionResponse(
                id=call.id,
                name=call.name,
                response={"output": output},
                will_continue=more,
                scheduling=types.FunctionResponseScheduling(scheduling),
            )

        await session.send_tool_response(function_responses=[response("SILENT", "50%", True)])
        await ask(session, "tell me a long story")  # a 6 s answer
        async for message in session.receive():
            if message.data:  # the story is playing: a result that interrupts it
                await session.send_tool_response(
                    function_responses=[response("INTERRUPT", "30%", True)]
                )
                break
        cut_then_result = await collect_turn(session)
        assert any(c.interrupted for c in contents(cut_then_result))
        assert audio_bytes(cut_then_result)
        await session.send_tool_response(function_responses=[response("WHEN_IDLE", "", False)])
        with pytest.raises(asyncio.TimeoutError):  # an empty last response says nothing
            await asyncio.wait_for(session._receive(), 0.5)
        session_state = next(iter(emulator.connections.values())).session
    said = [h["text"] for h in session_state.history if h["role"] == "model"]
    assert any("30%" in s for s in said) and not any("50%" in s for s in said)
    assert not session_state.open_calls  # willContinue=false closed the call


# ---- 3. a stream that stops ends the turn ---------------------------------------------------


async def test_the_guide_one_shot_clip_is_answered(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray]
) -> None:
    clip = speech("how are you today", gap_s=0.0, lead_s=0.2)  # ends in speech
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=AUDIO) as session:
        await session.send_realtime_input(audio=pcm_blob(clip))
        messages = await asyncio.wait_for(collect_turn(session), 10)
    assert audio_bytes(messages)
    log = read_log(emulator)
    assert sum("turnComplete" in e["msg"].get("serverContent", {}) for e in log) == 1


# ---- 4. transcriptions and speech ------------------------------------------------------------


async def test_answers_are_espeak_speech_with_streamed_transcriptions(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray]
) -> None:
    scenario = Scenario(turns=[Turn(input_transcript="what is the weather like in Paris today")])
    emulator = await start_emulator(scenario=scenario)
    config = {**MANUAL, "input_audio_transcription": {}, "output_audio_transcription": {}}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(audio=pcm_blob(speech("what is the weather")))
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        messages = await collect_turn(session)
    inputs = [c.input_transcription for c in contents(messages) if c.input_transcription]
    assert len(inputs) > 1 and inputs[-1].finished
    assert "".join(i.text or "" for i in inputs) == "what is the weather like in Paris today"
    outputs = [c.output_transcription.text for c in contents(messages) if c.output_transcription]
    assert len(outputs) >= 4 and "".join(outputs) == "This is the emulator's answer number 1."
    pcm = np.frombuffer(audio_bytes(messages), "<i2")
    assert voiced_share(pcm, 24000) > 0.5


def voiced_share(pcm: np.ndarray, rate: int) -> float:
    import soxr

    samples = np.asarray(soxr.resample(pcm, rate, 16000), np.int16)
    vad = webrtcvad.Vad(3)
    frames = [samples[i : i + 480] for i in range(0, len(samples) - 480, 480)]
    return sum(vad.is_speech(f.tobytes(), 16000) for f in frames) / max(1, len(frames))


# ---- 5. thoughts -----------------------------------------------------------------------------


async def test_include_thoughts_yields_thought_parts(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    config = {**MANUAL, "thinking_config": {"include_thoughts": True}}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "hello")
        messages = await collect_turn(session)
    parts = [p for c in contents(messages) if c.model_turn for p in c.model_turn.parts or []]
    thoughts = [p.text for p in parts if p.thought]
    assert thoughts and "hello" in thoughts[0]
    assert all(m.text is None for m in messages)  # msg.text skips thoughts
    usage = messages[-1].usage_metadata
    assert usage is not None and usage.thoughts_token_count


# ---- 6. the field table ----------------------------------------------------------------------


async def test_fields_the_sdk_sends_are_accepted_and_loose_fields_are_checked(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    config = {
        **MANUAL,
        "safety_settings": [
            {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
        ],
        "generation_config": {"response_mime_type": "text/plain"},
    }
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "hello")
        assert audio_bytes(await collect_turn(session))
    setup = {"model": f"models/{MODEL}"}
    for bad, field in [
        ({"tools": [{"function_declarations": [{"name": "x", "parameters": 1}]}]}, "parameters"),
        ({"tools": [{"code_execution": {"timeout": 5}}]}, "timeout"),
        ({"safety_settings": [{"category": "HARM_CATEGORY_BOGUS"}]}, "category"),
    ]:
        code, reason = await raw_exchange(emulator, [json.dumps({"setup": {**setup, **bad}})])
        assert code == 1007 and field in reason, reason


# ---- 7. usage --------------------------------------------------------------------------------


async def test_usage_counts_images_from_client_content(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        image = types.Part(inline_data=types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg"))
        await session.send_client_content(
            turns=types.Content(role="user", parts=[image, types.Part(text="what is this")])
        )
        messages = await collect_turn(session)
    usage = messages[-1].usage_metadata
    assert usage is not None
    by_modality = {d.modality.value: d.token_count for d in usage.prompt_tokens_details or []}
    assert by_modality["IMAGE"] == 258


@pytest.mark.parametrize(
    ("model", "coverage", "images"),
    [
        (MODEL, None, 3),  # 3.x's default: the audio activity and all video
        ("gemini-3.1-flash-live-preview", None, 3),
        (MODEL, "TURN_INCLUDES_ONLY_ACTIVITY", 0),
        ("gemini-2.5-flash-native-audio-preview-09-2025", None, 0),  # 2.5's default
    ],
)
async def test_frames_sent_before_a_typed_question_count_as_the_turn_coverage_says(
    start_emulator: Callable[..., Any], model: str, coverage: str | None, images: int
) -> None:
    """Issue 32: three frames, then realtimeInput.text (automatic activity detection)."""
    emulator = await start_emulator()
    config: dict[str, Any] = {**AUDIO}
    if coverage:
        config["realtime_input_config"] = {"turn_coverage": coverage}
    async with sdk_client(emulator).aio.live.connect(model=model, config=config) as session:
        for _ in range(3):
            frame = types.Blob(data=b"\xff\xd8jpeg", mime_type="image/jpeg")
            await session.send_realtime_input(video=frame)
        await session.send_realtime_input(text="What do you see?")
        messages = await collect_turn(session)
    # the prompt's usage: with turnComplete, or (3.1) in the usage-only message before the answer
    usage = next(
        m.usage_metadata
        for m in reversed(messages)
        if m.usage_metadata and m.usage_metadata.prompt_tokens_details
    )
    by_modality = {d.modality.value: d.token_count for d in usage.prompt_tokens_details or []}
    per_image = by_modality.get("IMAGE", 0) / images if images else 0
    assert (by_modality.get("IMAGE", 0) > 0) == (images > 0) and per_image in (0, 64, 128, 256, 258)


# ---- 8. connection lifetime ------------------------------------------------------------------


async def test_a_connection_gets_goaway_before_its_ten_minutes(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator(clock_scale=1200)  # 9 min = 0.45 s
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        message = await asyncio.wait_for(session._receive(), 5)
        assert message.go_away is not None and message.go_away.time_left == "60s"
        with pytest.raises(errors.APIError) as caught:
            await asyncio.wait_for(session._receive(), 5)
    assert caught.value.code == 1011
    emulator = await start_emulator(goaway_every=0.1, goaway_time_left_s=60)
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        assert (await asyncio.wait_for(session._receive(), 5)).go_away is not None
        with pytest.raises(asyncio.TimeoutError):  # once per connection
            await asyncio.wait_for(session._receive(), 0.4)


# ---- 9. ephemeral token locks ----------------------------------------------------------------


async def test_token_locks_are_field_by_field(start_emulator: Callable[..., Any]) -> None:
    emulator = await start_emulator()
    minting = sdk_client(emulator, version="v1alpha")
    client_config = {**MANUAL, "temperature": 0.2, "max_output_tokens": 99}
    locked = types.LiveConnectConstraints(
        model=MODEL, config=types.LiveConnectConfig(temperature=0.9)
    )
    for lock_more, expected in (
        (None, {"temperature": 0.9, "maxOutputTokens": 99}),
        (["max_output_tokens"], {"temperature": 0.9}),
    ):
        token = await minting.aio.auth_tokens.create(
            config=types.CreateAuthTokenConfig(
                uses=1, live_connect_constraints=locked, lock_additional_fields=lock_more
            )
        )
        client = sdk_client(emulator, api_key=str(token.name), version="v1alpha")
        async with client.aio.live.connect(model=MODEL, config=client_config):
            pass
        generation = emulator.parsed_setups[-1]["generationConfig"]
        assert {k: generation.get(k) for k in expected} == expected
        assert generation["responseModalities"] == ["AUDIO"]  # the client's, kept
        if lock_more:
            assert "maxOutputTokens" not in generation  # locked to the token's (unset)


# ---- 10. messages the service sends ----------------------------------------------------------


async def test_an_empty_turn_waits_for_input_and_resumption_updates_count_messages(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    config = {**MANUAL, "session_resumption": {}}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        messages = await collect_turn(session)
        update = (await asyncio.wait_for(session._receive(), 5)).session_resumption_update
    last = messages[-1].server_content
    assert last is not None and last.waiting_for_input and last.turn_complete
    assert last.turn_complete_reason == types.TurnCompleteReason.NEED_MORE_INPUT
    assert not audio_bytes(messages)
    assert update is not None and update.last_consumed_client_message_index == 2


async def test_typed_text_without_activity_detection_waits_for_activity_end(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=MANUAL) as session:
        await session.send_realtime_input(text="what time is it")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(session._receive(), 0.5)
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        assert audio_bytes(await collect_turn(session))


async def test_pipecat_seeded_history_then_audio_is_answered_once(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray]
) -> None:
    # pipecat's GeminiLiveLLMService: the context as clientContent (turnComplete false), then
    # the microphone streams with the service's activity detection
    emulator = await start_emulator()
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=AUDIO) as session:
        await session.send_client_content(
            turns=[
                types.Content(role="user", parts=[types.Part(text="You are a helpful robot.")]),
                types.Content(role="model", parts=[types.Part(text="Understood.")]),
            ],
            turn_complete=False,
        )
        await stream(session, speech("what can you do", gap_s=1.5))
        assert audio_bytes(await asyncio.wait_for(collect_turn(session), 10))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(session._receive(), 1.5)
    log = read_log(emulator)
    assert sum("turnComplete" in e["msg"].get("serverContent", {}) for e in log) == 1


async def test_url_context_metadata_and_extended_thinking_interaction_status(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    config = {**MANUAL, "tools": [{"url_context": {}}]}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "summarise https://example.com/news please")
        read = contents(await collect_turn(session))
    metadata = next(c.url_context_metadata for c in read if c.url_context_metadata)
    assert metadata.url_metadata and metadata.url_metadata[0].retrieved_url == (
        "https://example.com/news"
    )
    extended = "gemini-3.8-live-extended-thinking"
    async with sdk_client(emulator).aio.live.connect(model=extended, config=MANUAL) as session:
        await ask(session, "think hard")
        messages = contents(await collect_turn(session))  # receive() ends at IDLE
    statuses = [c.interaction_status.value for c in messages if c.interaction_status]
    assert statuses == ["IN_PROGRESS", "IDLE"] and messages[-1].turn_complete


async def called(emulator: Any, tools: list[dict[str, Any]], text: str) -> types.FunctionCall:
    config = {**MANUAL, "tools": [{"function_declarations": tools}]}
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, text)
        async for message in session.receive():
            if message.tool_call and message.tool_call.function_calls:
                return message.tool_call.function_calls[0]
    raise AssertionError("no tool call")


TARGET = {"name": {"type": "string"}, "area": {"type": "string"}}
HOME_TARGET = {"type": "object", "properties": TARGET}


async def test_the_words_said_pick_home_assistants_intent_and_its_target(
    start_emulator: Callable[..., Any],
) -> None:
    """Issue 32: "switch off the kitchen light" called HassLightSet with no arguments."""
    emulator = await start_emulator()
    tools = [
        {"name": "HassTurnOn", "description": "Turns on/opens/presses a device or entity",
         "parameters_json_schema": HOME_TARGET},
        {"name": "HassTurnOff", "description": "Turns off/closes a device or entity",
         "parameters_json_schema": HOME_TARGET},
        {"name": "HassLightSet",
         "description": "Sets the brightness percentage or color of a light",
         "parameters_json_schema": {
             "type": "object", "properties": {**TARGET, "brightness": {"type": "integer"}}}},
    ]  # fmt: skip
    call = await called(emulator, tools, "switch off the kitchen light")
    assert (call.name, call.args) == ("HassTurnOff", {"name": "Kitchen Light"})


async def test_a_number_said_wins_over_the_declared_default(
    start_emulator: Callable[..., Any],
) -> None:
    emulator = await start_emulator()
    garden = {
        "name": "water_garden",
        "description": "Waters the garden",
        "parameters_json_schema": {
            "type": "object",
            "properties": {"minutes": {"type": "integer", "default": 5, "maximum": 60}},
        },
    }
    call = await called(emulator, [garden], "water the garden for 12 minutes")
    assert call.args == {"minutes": 12}


async def test_an_mcp_result_is_said_once(start_emulator: Callable[..., Any]) -> None:
    """A result with both its structure and its text (as edge-agent hands MCP results on)."""
    emulator = await start_emulator()
    config = {
        **MANUAL,
        "output_audio_transcription": {},
        "tools": [{"function_declarations": [{"name": "get_weather"}]}],
    }
    async with sdk_client(emulator).aio.live.connect(model=MODEL, config=config) as session:
        await ask(session, "get the weather")
        call = None
        async for message in session.receive():
            if message.tool_call and message.tool_call.function_calls:
                call = message.tool_call.function_calls[0]
                break
        assert call is not None
        result = {"output": {"structured": {"sky": "sunny"}, "text": "Sunny and warm"}}
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response=result)]
        )
        answer = contents(await collect_turn(session))
    said = "".join(c.output_transcription.text for c in answer if c.output_transcription)
    assert said.count("Sunny and warm") == 1 and "sky" not in said, said
