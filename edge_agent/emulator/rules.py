"""What a model refuses in a setup, from the model table (edge_agent/live/models.py).

The service closes such a setup with 1007; the docs do not give its wording, so the reasons
here name the field and the model.
"""

from __future__ import annotations

from typing import Any

from edge_agent.live.models import ModelTraits

INVALID = "Request contains an invalid argument"


def setup_problem(model: str, traits: ModelTraits, setup: dict[str, Any]) -> str | None:
    """The 1007 reason for a setup this model refuses, or None."""
    name = "models/" + model.removeprefix("models/")
    generation = setup.get("generationConfig", {})
    if "TEXT" in generation.get("responseModalities", []) and not traits.text_output:
        return f"{INVALID}: {name} answers with audio only; TEXT output is not supported."
    thinking = generation.get("thinkingConfig", {})
    level = str(thinking.get("thinkingLevel", "THINKING_LEVEL_UNSPECIFIED"))
    if level != "THINKING_LEVEL_UNSPECIFIED" and level.lower() not in traits.thinking_levels:
        return f"{INVALID}: thinking_level {level} is not supported by {name}."
    if "thinkingBudget" in thinking and not traits.thinking_budget:
        return f"{INVALID}: thinking_budget is not supported by {name}; use thinking_level."
    if generation.get("enableAffectiveDialog") and not traits.affective_dialog:
        return f"{INVALID}: enable_affective_dialog is not supported by {name}."
    proactive = setup.get("proactivity", {}).get("proactiveAudio")
    if proactive is False and traits.proactive_always_on:
        return f"{INVALID}: {name} is always proactive; proactive_audio cannot be false."
    if proactive and not (traits.proactive_audio or traits.proactive_always_on):
        return f"{INVALID}: proactive_audio is not supported by {name}."
    for tool in setup.get("tools", []):
        for declared in tool.get("functionDeclarations", []):
            behavior = declared.get("behavior", "UNSPECIFIED")
            function = declared.get("name")
            if behavior == "NON_BLOCKING" and not traits.non_blocking_tools:
                return f"{INVALID}: {name} has synchronous functions only ({function})."
            if behavior == "BLOCKING" and not traits.blocking_tools:
                return f"{INVALID}: {name} has asynchronous functions only ({function})."
    return None


def blocking(traits: ModelTraits, behavior: str) -> bool:
    """Whether a call waits for its response: as declared, else the model's own default."""
    if behavior == "NON_BLOCKING":
        return False
    if behavior == "BLOCKING":
        return True
    return traits.blocking_tools
