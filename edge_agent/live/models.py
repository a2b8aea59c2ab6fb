"""The Live models the service knows and what each accepts.

One table drives both the emulator's rules and `edge-agent check`'s warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_agent.config import Config


@dataclass(frozen=True)
class ModelTraits:
    display_name: str
    version: str
    input_token_limit: int = 131072
    output_token_limit: int = 65536
    text_output: bool = True
    thinking_budget: bool = False
    thinking_levels: tuple[str, ...] = ()
    affective_dialog: bool = False
    proactive_audio: bool = False
    proactive_always_on: bool = False
    non_blocking_tools: bool = False
    blocking_tools: bool = True
    client_content_after_realtime: bool = True  # clientContent all session long (3.8)
    # 3.1: clientContent only as the initial history, with historyConfig in the setup
    client_content_history_only: bool = False
    one_part_per_message: bool = False  # 2.5 sends each part in its own serverContent
    # realtimeInputConfig.turnCoverage when the setup says none: every frame sent counts (3.x)
    turn_coverage: str = "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO"
    interaction_status: bool = False  # reports IN_PROGRESS / IDLE (3.8 extended thinking)
    # 3.1: a serverContent with only usageMetadata (the prompt's) before the answer's first
    # model turn; not an answer
    usage_before_answer: bool = False


_NATIVE_AUDIO_25 = ModelTraits(
    display_name="Gemini 2.5 Flash Native Audio Preview",
    version="2.5",
    output_token_limit=8192,
    text_output=False,
    thinking_budget=True,
    affective_dialog=True,
    proactive_audio=True,
    non_blocking_tools=True,
    client_content_after_realtime=False,
    one_part_per_message=True,
    turn_coverage="TURN_INCLUDES_ONLY_ACTIVITY",
)

DEFAULT_MODEL = "gemini-3.8-live"

KNOWN_MODELS: dict[str, ModelTraits] = {
    "gemini-3.8-live": ModelTraits(
        display_name="Gemini 3.8 Live",
        version="3.8",
        text_output=False,
        proactive_always_on=True,
        non_blocking_tools=True,
    ),
    "gemini-3.8-live-extended-thinking": ModelTraits(
        display_name="Gemini 3.8 Live Extended Thinking",
        version="3.8",
        text_output=False,
        thinking_levels=("low", "medium", "high"),
        non_blocking_tools=True,
        blocking_tools=False,
        interaction_status=True,
    ),
    "gemini-3.1-flash-live-preview": ModelTraits(
        display_name="Gemini 3.1 Flash Live Preview",
        version="3.1",
        text_output=False,
        thinking_levels=("minimal", "low", "medium", "high"),
        client_content_after_realtime=False,
        client_content_history_only=True,
        usage_before_answer=True,
    ),
    "gemini-2.5-flash-native-audio-preview-09-2025": replace(
        _NATIVE_AUDIO_25, display_name="Gemini 2.5 Flash Native Audio Preview 09-2025"
    ),
    "gemini-2.5-flash-native-audio-preview-12-2025": replace(
        _NATIVE_AUDIO_25, display_name="Gemini 2.5 Flash Native Audio Preview 12-2025"
    ),
}

V1ALPHA_REASONS = ("affective_dialog", "proactive_audio", "token_command")


def traits(model: str) -> ModelTraits | None:
    return KNOWN_MODELS.get(model.removeprefix("models/"))


def config_hint(refusal: str) -> str:
    """Where the service's refusal names a [live] option ("thinking_level HIGH is not
    supported"), the key to change."""
    from edge_agent.config import LiveConfig

    found = [(refusal.find(key), key) for key in LiveConfig.model_fields if key != "model"]
    named = sorted((at, key) for at, key in found if at >= 0)
    return f" (change [live] {named[0][1]})" if named else ""


def history_seed_only(model: str) -> bool:
    """A fresh session is seeded with history through historyConfig (3.1), not mid-session."""
    known = traits(model)
    return known is not None and known.client_content_history_only


def compatibility_warnings(config: Config) -> list[str]:
    """Options known not to work with the chosen model (unknown models get no warnings)."""
    live = config.live
    known = traits(live.model)
    if known is None:
        return []
    name = live.model
    warnings = []
    if not live.context_compression and config.camera.source != "none":
        warnings.append(
            "the camera needs context compression (sessions with video end after "
            "2 minutes without it); it is switched on"
        )
    if live.response_modality == "text" and not known.text_output:
        warnings.append(f'{name} answers with audio only; response_modality = "text" is refused')
    if live.thinking_budget >= 0 and not known.thinking_budget:
        warnings.append(f"{name} does not take thinking_budget; leave it at -1")
    if live.thinking_level and live.thinking_level not in known.thinking_levels:
        levels = ", ".join(known.thinking_levels)
        takes = f"it takes {levels}" if levels else 'it takes none: leave thinking_level = ""'
        warnings.append(f"{name} does not take thinking_level {live.thinking_level!r}; {takes}")
    if live.affective_dialog and not known.affective_dialog:
        warnings.append(f"{name} has no affective dialog")
    if live.proactive_audio and known.proactive_always_on:
        warnings.append(f"{name} is always proactive; proactive_audio changes nothing")
    elif live.proactive_audio and not known.proactive_audio:
        warnings.append(f"{name} has no proactive audio")
    return warnings


def effective_api_version(config: Config) -> str:
    """v1alpha when a feature needs it (affective dialog, proactive audio, ephemeral tokens)."""
    live = config.live
    if live.affective_dialog or live.proactive_audio or live.token_command:
        return "v1alpha"
    return live.api_version
