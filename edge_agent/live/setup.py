"""Config -> google-genai LiveConnectConfig. Tools arrive as plain dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.genai import types

from edge_agent.config import Config
from edge_agent.live.models import history_seed_only

MEDIA_RESOLUTIONS = {
    "low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
    "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
    "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH,
}
START_SENSITIVITY = {
    "high": types.StartSensitivity.START_SENSITIVITY_HIGH,
    "low": types.StartSensitivity.START_SENSITIVITY_LOW,
}
END_SENSITIVITY = {
    "high": types.EndSensitivity.END_SENSITIVITY_HIGH,
    "low": types.EndSensitivity.END_SENSITIVITY_LOW,
}
ACTIVITY_HANDLING = {
    "interrupt": types.ActivityHandling.START_OF_ACTIVITY_INTERRUPTS,
    "no_interruption": types.ActivityHandling.NO_INTERRUPTION,
}


def build_live_config(
    config: Config,
    function_declarations: Sequence[dict[str, Any]] = (),
    resume_handle: str | None = None,
    seed_history: bool = False,
) -> types.LiveConnectConfig:
    """`seed_history`: the session opens with the last one's transcript as its history."""
    live = config.live
    modality = types.Modality.AUDIO if live.response_modality == "audio" else types.Modality.TEXT
    return types.LiveConnectConfig(
        response_modalities=[modality],
        system_instruction=_system_instruction(live.system_instruction),
        speech_config=_speech_config(config),
        thinking_config=_thinking_config(config),
        enable_affective_dialog=True if live.affective_dialog else None,
        proactivity=types.ProactivityConfig(proactive_audio=True) if live.proactive_audio else None,
        media_resolution=MEDIA_RESOLUTIONS[live.media_resolution],
        input_audio_transcription=(
            types.AudioTranscriptionConfig() if live.input_transcription else None
        ),
        output_audio_transcription=(
            types.AudioTranscriptionConfig() if live.output_transcription else None
        ),
        realtime_input_config=_realtime_input_config(config),
        session_resumption=(
            types.SessionResumptionConfig(handle=resume_handle) if live.session_resumption else None
        ),
        context_window_compression=_compression(config),
        tools=_tools(config, function_declarations),
        history_config=(
            types.HistoryConfig(initial_history_in_client_content=True)
            if seed_history and history_seed_only(live.model)
            else None
        ),
    )


def _system_instruction(text: str) -> types.Content | None:
    if not text:
        return None
    return types.Content(role="system", parts=[types.Part(text=text)])


def _speech_config(config: Config) -> types.SpeechConfig | None:
    live = config.live
    if live.response_modality != "audio" or not (live.voice or live.language):
        return None
    voice = None
    if live.voice:
        voice = types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=live.voice)
        )
    return types.SpeechConfig(voice_config=voice, language_code=live.language or None)


def _thinking_config(config: Config) -> types.ThinkingConfig | None:
    live = config.live
    budget = live.thinking_budget if live.thinking_budget >= 0 else None
    level = types.ThinkingLevel(live.thinking_level.upper()) if live.thinking_level else None
    if budget is None and level is None and not live.include_thoughts:
        return None
    return types.ThinkingConfig(
        thinking_budget=budget,
        thinking_level=level,
        include_thoughts=True if live.include_thoughts else None,
    )


def _realtime_input_config(config: Config) -> types.RealtimeInputConfig:
    turns = config.turns
    if turns.mode == "server_vad":
        detection = types.AutomaticActivityDetection(
            disabled=False,
            start_of_speech_sensitivity=START_SENSITIVITY[turns.start_sensitivity],
            end_of_speech_sensitivity=END_SENSITIVITY[turns.end_sensitivity],
            prefix_padding_ms=turns.prefix_padding_ms,
            silence_duration_ms=turns.silence_duration_ms,
        )
    else:  # local VAD or push-to-talk: the client sends activityStart / activityEnd
        detection = types.AutomaticActivityDetection(disabled=True)
    return types.RealtimeInputConfig(
        automatic_activity_detection=detection,
        activity_handling=ACTIVITY_HANDLING[turns.activity_handling],
    )


def _compression(config: Config) -> types.ContextWindowCompressionConfig | None:
    """Always on with a camera: without it audio+video sessions end after 2 minutes."""
    live = config.live
    if not live.context_compression and config.camera.source == "none":
        return None
    return types.ContextWindowCompressionConfig(
        trigger_tokens=live.compression_trigger_tokens,
        sliding_window=types.SlidingWindow(target_tokens=live.compression_target_tokens),
    )


def _tools(config: Config, declarations: Sequence[dict[str, Any]]) -> list[Any] | None:
    tools: list[Any] = []
    if declarations:
        tools.append(
            types.Tool(function_declarations=[types.FunctionDeclaration(**d) for d in declarations])
        )
    if config.tools.google_search:
        tools.append(types.Tool(google_search=types.GoogleSearch()))
    if config.tools.code_execution:
        tools.append(types.Tool(code_execution=types.ToolCodeExecution()))
    return tools or None
