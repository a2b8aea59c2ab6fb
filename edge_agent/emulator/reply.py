"""An answer as the service streams it: the serverContent messages of each step, in order.

Audio goes in 100 ms chunks with the output transcription's words placed at their time in
the speech (by their share of the characters); text answers come a few words per message.
Models that send one part per message (2.5) get the transcription in a message of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.emulator import voice

WORDS_PER_TEXT_MESSAGE = 3


@dataclass
class Answer:
    text: str
    thought: str = ""
    code_parts: list[dict[str, Any]] = field(default_factory=list)  # executableCode, result
    grounding: dict[str, Any] | None = None
    url_context: dict[str, Any] | None = None


@dataclass
class Step:
    messages: list[dict[str, Any]]  # serverContent bodies, sent back to back
    seconds: float = 0.0  # audio in this step (the pace of the stream)


def model_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"modelTurn": {"role": "model", "parts": list(parts)}}


def preamble(answer: Answer, one_part: bool) -> list[dict[str, Any]]:
    """Thoughts, code and its result, grounding: what comes before the spoken answer."""
    parts: list[dict[str, Any]] = []
    if answer.thought:
        parts.append({"text": answer.thought, "thought": True})
    parts += answer.code_parts
    if one_part:
        messages = [model_turn(part) for part in parts]
    else:
        messages = [model_turn(*parts)] if parts else []
    if answer.grounding is not None:
        messages.append({"groundingMetadata": answer.grounding})
    if answer.url_context is not None:
        messages.append({"urlContextMetadata": answer.url_context})
    return messages


def audio_steps(pcm: bytes, transcript: str, transcribe: bool, one_part: bool) -> list[Step]:
    pieces = voice.chunks(pcm) or [b""]
    words = transcript.split()
    duration = len(pcm) / 2 / voice.OUTPUT_RATE
    total = sum(len(w) + 1 for w in words) or 1
    starts, offset = [], 0
    for word in words:
        starts.append(duration * offset / total)
        offset += len(word) + 1
    steps, placed, elapsed = [], 0, 0.0
    for index, piece in enumerate(pieces):
        seconds = len(piece) / 2 / voice.OUTPUT_RATE
        elapsed += seconds
        last = index == len(pieces) - 1
        due = len(words) if last else sum(1 for s in starts if s < elapsed)
        spoken = " ".join(words[placed:due])
        if spoken and placed:  # pieces carry their own spacing, as the service's do
            spoken = " " + spoken
        placed = max(placed, due)
        content = model_turn({"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": piece}})
        messages = [content]
        if transcribe and spoken:
            if one_part:
                messages.append({"outputTranscription": {"text": spoken}})
            else:
                content["outputTranscription"] = {"text": spoken}
        steps.append(Step(messages, seconds))
    return steps


def text_steps(transcript: str) -> list[Step]:
    words = transcript.split()
    groups = [
        words[i : i + WORDS_PER_TEXT_MESSAGE] for i in range(0, len(words), WORDS_PER_TEXT_MESSAGE)
    ] or [[]]
    steps = []
    for index, group in enumerate(groups):
        tail = "" if index == len(groups) - 1 else " "
        steps.append(Step([model_turn({"text": " ".join(group) + tail})]))
    return steps
