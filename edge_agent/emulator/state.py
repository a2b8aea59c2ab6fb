"""What outlives a connection: sessions (history, tokens, handles) and ephemeral tokens."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edge_agent.emulator.scenario import Turn

AUDIO_TOKENS_PER_SECOND = 32  # published rate for audio input and output
TEXT_CHARS_PER_TOKEN = 4
VIDEO_TOKENS = {"MEDIA_RESOLUTION_LOW": 64, "MEDIA_RESOLUTION_MEDIUM": 256}
VIDEO_TOKENS_DEFAULT = 258


@dataclass
class Usage:
    """Tokens in the session's context by modality; the prompt of each turn is all of it."""

    prompt: dict[str, int] = field(default_factory=dict)

    def add_prompt(self, modality: str, tokens: int) -> None:
        if tokens > 0:
            self.prompt[modality] = self.prompt.get(modality, 0) + tokens


@dataclass
class OpenCall:
    name: str
    blocking: bool
    turn: Turn
    response: asyncio.Future[dict[str, Any]] | None = None


@dataclass
class Session:
    session_id: str
    setup: dict[str, Any]
    turn_count: int = 0
    history: list[dict[str, str]] = field(default_factory=list)  # {"role", "text"}
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    saw_video: bool = False
    open_connection: int | None = None
    call_count: int = 0
    open_calls: dict[str, OpenCall] = field(default_factory=dict)
    cancelled_calls: set[str] = field(default_factory=set)
    tool_responses: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Token:
    name: str
    uses_left: int  # 0 = unlimited
    expires: float
    new_session_expires: float
    locked_setup: dict[str, Any]
    field_mask: tuple[str, ...] | None = None  # None: every field the token sets is locked


class Registry:
    def __init__(self) -> None:
        self.sessions_by_handle: dict[str, Session] = {}
        self.tokens: dict[str, Token] = {}

    def new_session(self, setup: dict[str, Any]) -> Session:
        return Session(session_id=secrets.token_hex(8), setup=setup)

    def new_handle(self, session: Session) -> str:
        handle = "handle-" + secrets.token_urlsafe(12)
        self.sessions_by_handle[handle] = session
        return handle

    def mint_token(
        self,
        uses: int,
        expires: float,
        new_session_expires: float,
        setup: dict[str, Any],
        field_mask: tuple[str, ...] | None = None,
    ) -> Token:
        token = Token(
            name="auth_tokens/" + secrets.token_hex(16),
            uses_left=uses,
            expires=expires,
            new_session_expires=new_session_expires,
            locked_setup=setup,
            field_mask=field_mask,
        )
        self.tokens[token.name] = token
        return token
