"""One LiveServerMessage -> the project's events, every field of it, in wire order."""

from __future__ import annotations

from typing import Any

from google.genai import types

from edge_agent.events import (
    CodeExecution,
    FunctionCall,
    GenerationComplete,
    GoAway,
    Grounding,
    InputTranscript,
    Interrupted,
    LiveEvent,
    ModelAudio,
    ModelText,
    ModelThought,
    OutputTranscript,
    ResumptionUpdate,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
    WaitingForInput,
)


def events_from_message(message: types.LiveServerMessage) -> list[LiveEvent]:
    """TurnComplete comes last, so the usage riding in the same frame is known by then."""
    events: list[LiveEvent] = []
    content = message.server_content
    if content is not None:
        events += _content_events(content)
    if message.tool_call is not None and message.tool_call.function_calls:
        events.append(
            ToolCall(
                tuple(
                    FunctionCall(id=c.id or "", name=c.name or "", args=dict(c.args or {}))
                    for c in message.tool_call.function_calls
                )
            )
        )
    if message.tool_call_cancellation is not None:
        events.append(ToolCallCancellation(tuple(message.tool_call_cancellation.ids or ())))
    if message.usage_metadata is not None:
        events.append(_usage(message.usage_metadata))
    if message.go_away is not None:
        events.append(GoAway(parse_duration(message.go_away.time_left)))
    update = message.session_resumption_update
    if update is not None:
        events.append(ResumptionUpdate(update.new_handle or "", bool(update.resumable)))
    if content is not None and content.turn_complete:
        reason = content.turn_complete_reason
        events.append(TurnComplete(str(reason.value) if reason is not None else ""))
    return events


def _content_events(content: types.LiveServerContent) -> list[LiveEvent]:
    events: list[LiveEvent] = []
    if content.interrupted:
        events.append(Interrupted())
    if content.input_transcription is not None and content.input_transcription.text:
        transcript = content.input_transcription
        events.append(InputTranscript(transcript.text or "", bool(transcript.finished)))
    if content.model_turn is not None:
        for part in content.model_turn.parts or []:
            if part.inline_data is not None and part.inline_data.data:
                events.append(ModelAudio(part.inline_data.data))
            elif part.text and part.thought:
                events.append(ModelThought(part.text))
            elif part.text:
                events.append(ModelText(part.text))
            elif part.executable_code is not None:
                events.append(CodeExecution(code=part.executable_code.code or ""))
            elif part.code_execution_result is not None:
                result = part.code_execution_result
                outcome = str(result.outcome.value) if result.outcome is not None else ""
                events.append(CodeExecution(output=result.output or "", outcome=outcome))
    if content.output_transcription is not None and content.output_transcription.text:
        events.append(OutputTranscript(content.output_transcription.text))
    if content.grounding_metadata is not None:
        events.append(Grounding(content.grounding_metadata.model_dump(exclude_none=True)))
    if content.url_context_metadata is not None:
        events.append(Grounding(content.url_context_metadata.model_dump(exclude_none=True)))
    if content.waiting_for_input:
        events.append(WaitingForInput())
    if content.generation_complete:
        events.append(GenerationComplete())
    return events


MAX_TOKENS = 10**9  # more in one message is not a real count


def _count(value: Any) -> int:
    """A token count from the server: a non-negative integer within reason, else 0."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        return 0
    return value


def _usage(usage: types.UsageMetadata) -> Usage:
    by_modality: dict[str, int] = {}
    details: list[Any] = [
        *(usage.prompt_tokens_details or []),
        *(usage.response_tokens_details or []),
    ]
    for detail in details:
        if detail.modality is not None:
            name = str(detail.modality.value)[:32]
            by_modality[name] = by_modality.get(name, 0) + _count(detail.token_count)
    prompt = _count(usage.prompt_token_count)
    response = _count(usage.response_token_count)
    total = _count(usage.total_token_count) or prompt + response
    return Usage(prompt, response, max(total, prompt + response), by_modality)


MAX_DURATION_S = 24 * 3600.0


def parse_duration(text: str | None) -> float:
    """google.protobuf.Duration JSON ("50s", "1.5s") -> seconds; nonsense -> 0, capped at a day."""
    if not text:
        return 0.0
    try:
        seconds = float(str(text).rstrip("s"))
    except ValueError:
        return 0.0
    if seconds != seconds:  # NaN
        return 0.0
    return min(max(seconds, 0.0), MAX_DURATION_S)
