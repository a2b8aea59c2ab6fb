"""Scripted replies: a JSON file with one entry per user turn (format in README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.errors import UserError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCallStep(Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    non_blocking: bool = False  # answer at once instead of waiting for the response
    cancel_after_ms: int | None = None  # send toolCallCancellation instead of waiting


class GoAwayStep(Strict):
    time_left_s: float = 50.0


class CloseStep(Strict):
    code: int = 1011
    reason: str = "Internal error occurred."
    before_reply: bool = False  # the turn then never completes (the client must resend it)


class Turn(Strict):
    reply_seconds: float = 1.5
    wav: str = ""
    transcript: str = ""
    input_transcript: str = ""
    tool_call: ToolCallStep | None = None
    interrupt_after_s: float | None = None  # the service cuts its own answer here
    go_away: GoAwayStep | None = None
    close: CloseStep | None = None


class Scenario(Strict):
    turns: list[Turn] = Field(default_factory=list)

    def turn(self, index: int) -> Turn:
        return self.turns[index] if index < len(self.turns) else Turn()


def load_scenario(path: str | None) -> Scenario:
    if not path:
        return Scenario()
    try:
        data = json.loads(Path(path).read_text("utf-8"))
        scenario = Scenario.model_validate(data)
    except FileNotFoundError:
        raise UserError(f"scenario file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"scenario {path}: invalid JSON: {exc}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise UserError(f"scenario {path}: {where}: {error['msg']}") from None
    base = Path(path).parent
    turns = []
    for turn in scenario.turns:
        if turn.wav:
            wav = base / turn.wav  # an absolute turn.wav stays as it is
            if not wav.is_file():
                raise UserError(f"scenario {path}: wav {turn.wav} not found")
            turn = turn.model_copy(update={"wav": str(wav)})
        turns.append(turn)
    return Scenario(turns=turns)
