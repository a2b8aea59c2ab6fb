"""When the agent listens and what it costs: the conversation lifecycle and the daily budget.

A Live session exists only during a conversation (except start = "always"). It opens on the
first speech or a button press, closes after idle_timeout_s without speech either way, on the
end_conversation tool or a double press, and a new one within remember_minutes resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edge_agent.config import Config
from edge_agent.live.session import LiveSession
from edge_agent.statefiles import write_private

log = logging.getLogger(__name__)

BUDGET_FILE = "tokens.json"
CLOSED_FILE = "conversation.json"  # when the last conversation closed, for a resume after restart


class Link(Protocol):
    """Opens and closes the Live session (the driver owns the task that runs it)."""

    def open(self, resume: bool) -> None: ...
    def close(self) -> None: ...


class DailyBudget:
    """Tokens spent today (local time), kept in the state directory across restarts."""

    def __init__(self, limit: int, state_dir: Path | None, today: Callable[[], dt.date]) -> None:
        self.limit = limit
        self.path = state_dir / BUDGET_FILE if state_dir is not None else None
        self.today = today
        self.day = today()
        self.spent = 0
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError, ValueError, KeyError):
            saved = json.loads(self.path.read_text("utf-8"))
            if saved["day"] == self.day.isoformat():
                self.spent = int(saved["tokens"])

    def _roll(self) -> None:
        if self.today() != self.day:
            self.day, self.spent = self.today(), 0

    def add(self, tokens: int) -> None:
        self._roll()
        self.spent += tokens
        if self.path is not None:
            with contextlib.suppress(OSError):
                write_private(
                    self.path, json.dumps({"day": self.day.isoformat(), "tokens": self.spent})
                )

    @property
    def exhausted(self) -> bool:
        self._roll()
        return self.limit > 0 and self.spent >= self.limit


class Conversation:
    def __init__(
        self,
        config: Config,
        link: Link,
        clock: Callable[[], float],
        chime: Callable[[str], None],
        budget: DailyBudget,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config.conversation
        self.link = link
        self.clock = clock
        self.chime = chime
        self.budget = budget
        self.is_open = False
        self.listening = False  # open with the microphone live (not only to say something)
        self.tokens = 0  # in the current conversation
        self.count = 0
        self._last_activity = 0.0
        self._closed_path = state_dir / CLOSED_FILE if state_dir is not None else None
        self._closed_at: float | None = self._load_closed_at()
        self._end_requested = False
        self.listeners: list[Callable[[bool, str], None]] = []  # (open, reason)

    @property
    def always(self) -> bool:
        return self.config.start == "always"

    def open(self, reason: str, listening: bool = True) -> bool:
        """Opens a conversation; False when the daily budget refuses it. One opened only to say
        something (listening False: a reminder, an announcement) keeps the microphone closed and
        shows nothing; it closes once said, or starts listening when opened again."""
        if self.is_open:
            self.activity()
            if listening and not self.listening:
                self._listen(reason)
            return True
        if self.budget.exhausted:
            log.warning(
                "conversation refused: %d of %d tokens spent today",
                self.budget.spent,
                self.budget.limit,
            )
            self.chime("error")
            return False
        remember_s = self.config.remember_minutes * 60
        resume = self._closed_at is not None and self.clock() - self._closed_at <= remember_s
        self.link.open(resume)
        self.is_open, self.tokens, self._end_requested = True, 0, False
        self.count += 1
        self.activity()
        log.info(
            "conversation %d opened (%s%s%s)",
            self.count,
            reason,
            ", resuming the last one" if resume else "",
            "" if listening else ", the microphone closed",
        )
        if listening:
            self._listen(reason)
        return True

    def _listen(self, reason: str) -> None:
        self.listening = True
        self.chime("listening")
        for listener in self.listeners:
            listener(True, reason)

    def close(self, reason: str) -> None:
        if not self.is_open:
            return
        self.link.close()
        was_listening = self.listening
        self.is_open = self.listening = False
        self._closed_at = self.clock()
        self._save_closed_at()
        if was_listening:
            self.chime("done")
            for listener in self.listeners:
                listener(False, reason)
        log.info(
            "conversation %d closed (%s): %d tokens, %d today",
            self.count,
            reason,
            self.tokens,
            self.budget.spent,
        )

    def remember_on_exit(self) -> None:
        """The daemon stops: a conversation open now may be resumed after the restart."""
        if self.is_open:
            self._closed_at = self.clock()
            self._save_closed_at()

    def _load_closed_at(self) -> float | None:
        if self._closed_path is None:
            return None
        try:
            wall = float(json.loads(self._closed_path.read_text("utf-8"))["closed_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.clock() - max(0.0, time.time() - wall)

    def _save_closed_at(self) -> None:
        if self._closed_path is None:
            return
        try:
            write_private(self._closed_path, json.dumps({"closed_at": time.time()}))
        except OSError as exc:
            log.warning("cannot keep the conversation's close time: %s", exc)

    def activity(self) -> None:
        """Speech either way (the user's or the model's) keeps the conversation open."""
        self._last_activity = self.clock()

    def request_end(self) -> None:
        """end_conversation: close once the current answer has played."""
        self._end_requested = True

    def tick(self, busy: bool) -> None:
        if not self.is_open or busy:
            return
        if self._end_requested:
            self.close("the model ended it")
        elif not self.listening:
            self.close("said")
        elif not self.always and self.clock() - self._last_activity >= self.config.idle_timeout_s:
            self.close(f"{self.config.idle_timeout_s:g} s without speech")

    def add_tokens(self, tokens: int) -> None:
        self.tokens += tokens
        self.budget.add(tokens)


class SessionLink:
    """Runs a LiveSession while a conversation is open; a session that dies is started again."""

    RESTART_AFTER_S = 5.0

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.task: asyncio.Task[None] | None = None
        self._open = False

    def open(self, resume: bool) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()  # a closing run still in its backoff sleep
        if not resume:
            self.session.forget_session()
        self._open = True
        self._start()

    def _start(self) -> None:
        self.task = asyncio.create_task(self.session.run())
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("the live session stopped unexpectedly (%r); restarting", error)
        if self._open:
            asyncio.get_running_loop().call_later(self.RESTART_AFTER_S, self._restart)

    def _restart(self) -> None:
        if self._open and (self.task is None or self.task.done()):
            self._start()

    def close(self) -> None:
        self._open = False
        self.session.stop()

    async def shutdown(self) -> None:
        self._open = False
        self.session.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
