"""LiveSession: one Live API session that survives GoAway, drops, outages and refused resumes.

Sending never blocks the caller: messages go to an outbox, and what was sent stays in a journal
until answered, replayed first by a new connection (live/journal.py). When to connect again and
what is an outage: live/backoff.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.config import Config
from edge_agent.credentials import KeyProvider
from edge_agent.errors import UserError
from edge_agent.events import (
    BadServerMessage,
    Connected,
    Disconnected,
    GoAway,
    InputTranscript,
    Interrupted,
    KeyRefused,
    LiveEvent,
    ModelAudio,
    ModelText,
    Offline,
    Online,
    OutputTranscript,
    Reseeded,
    ResumptionUpdate,
    ToolResponseLost,
    TurnComplete,
    TurnLost,
)
from edge_agent.live.backoff import IMMEDIATE_CLOSE_S, Backoff, pause
from edge_agent.live.journal import HISTORY_LINES, Journal, Outgoing, remember
from edge_agent.live.models import config_hint, history_seed_only
from edge_agent.live.resumption import HandleFile
from edge_agent.live.sdk import load_wire, loaded_wire
from edge_agent.logs import RateLimitedLog

log = logging.getLogger(__name__)
bad_messages = RateLimitedLog(log)
MALFORMED = (ValueError, TypeError, AttributeError, KeyError, RecursionError)


async def load_sdk(config: Config) -> None:
    """Imports google-genai in a worker thread; the daemon calls it right after READY."""
    seconds = await load_wire(hide_aiohttp=not config.web.enabled)
    if seconds is not None:
        log.info("google-genai loaded in %.1f s", seconds)


MAX_HANDLE_CHARS = 4096  # a real handle is short; a huge one is not kept (nor written to flash)
REPLAY_WINDOW_S = 10.0  # a turn that ended longer ago is not sent late: it is reported lost
GOAWAY_SILENCE_S = 1.5  # after goAway, this long without a message: switch, do not wait
Declarations = Callable[[], Sequence[dict[str, Any]]]


class _Switch(Exception):
    """A planned reconnect (after goAway, or an answer that never came): a new socket."""


class LiveSession:
    def __init__(
        self,
        config: Config,
        on_event: Callable[[LiveEvent], None],
        key_provider: KeyProvider,
        declarations: Sequence[dict[str, Any]] | Declarations = (),
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.key_provider = key_provider
        self.declarations = declarations  # a callable is asked again before each connect
        self.state_dir = state_dir
        self.reconnects = 0
        self.connected = False
        self.connected_at = 0.0
        self._handle_file = HandleFile(state_dir)
        resumes = config.live.session_resumption
        self.handle: str | None = self._handle_file.load(config.live.model) if resumes else None
        self.last_resume_handle: str | None = None  # the handle the last connect resumed with
        self._backoff = Backoff()
        self._served_turn = False  # the current connection completed a turn
        self._outbox: deque[Outgoing] = deque()
        self._journal = Journal(self._outbox)
        self._history: deque[tuple[str, str]] = deque(maxlen=HISTORY_LINES)
        self._wake = asyncio.Event()
        self._send_now: Callable[[str, bytes], bool] | None = None  # the connection's, if any
        self._switch = asyncio.Event()
        self._goaway_pending = False
        self._model_busy = False
        self._user_turn_open = False
        self._ever_connected = False
        self._reseed = False  # the next fresh session gets the recent transcript
        self._reseed_now = False  # ... and is opened without a backoff
        self._closing = False
        self._switch_cause = ""
        self._last_message_at = 0.0
        self._attempt_at = 0.0
        self._disconnected_at: float | None = None
        self._goaway_timer: asyncio.TimerHandle | None = None
        self._online_check: asyncio.TimerHandle | None = None

    @property
    def offline(self) -> bool:
        """An outage is being reported (not a single quick reconnect)."""
        return self._backoff.offline

    # ---- sending (never blocks) ------------------------------------------------------------

    def send_audio(self, pcm16k: bytes) -> None:
        self._queue(Outgoing("audio", pcm16k))

    def send_video(self, jpeg: bytes) -> None:
        if self.connected:  # a stale frame is worth nothing after a gap
            self._queue(Outgoing("video", jpeg))

    def send_text(self, text: str, turn: int = 0) -> None:
        """Inside an activity (detection off) the activityEnd ends the turn, not the text."""
        kind = "text_in_activity" if self._user_turn_open else "text"
        self._queue(Outgoing(kind, text, turn))

    def activity_start(self) -> None:
        self._user_turn_open = True
        self._queue(Outgoing("activity_start"))

    def activity_end(self, turn: int = 0) -> None:
        self._user_turn_open = False
        self._queue(Outgoing("activity_end", turn=turn))
        self._maybe_switch()  # a goAway that came while the user spoke: switch now

    def audio_stream_end(self, turn: int = 0) -> None:
        self._queue(Outgoing("audio_stream_end", turn=turn))
        self._maybe_switch()

    def send_client_content(self, turns: list[tuple[str, str]], turn_complete: bool) -> None:
        self._queue(Outgoing("content", (turns, turn_complete)))

    def send_tool_response(
        self, call_id: str, name: str, response: dict[str, Any], scheduling: str | None = None
    ) -> None:
        self._queue(Outgoing("tool_response", (call_id, name, response, scheduling)))

    def _queue(self, item: Outgoing) -> None:
        if not self._outbox and self._send_now is not None and self._sent_at_once(item):
            return
        self._outbox.append(item)
        if not self.connected:
            self._bound_gap_audio()
        self._wake.set()

    def _sent_at_once(self, item: Outgoing) -> bool:
        """A frame with nothing queued before it goes out now, without waking the sender."""
        assert self._send_now is not None
        try:
            sent = self._send_now(item.kind, item.payload)
        except Exception as exc:  # the socket broke: the sender's send() finds out and reconnects
            log.debug("direct send failed: %r", exc)
            return False
        if sent:
            self._journal.record(item)
        return sent

    def _bound_gap_audio(self) -> None:
        dropped = self._journal.bound_outbox_audio()
        if dropped:
            self.on_event(
                TurnLost("audio_dropped", f"offline too long: dropped {dropped:.1f} s of audio")
            )

    # ---- the connection loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Connects, serves, reconnects; returns only after stop(). Never raises: a refused key
        is a state the agent shows, everything else an outage retried with backoff."""
        self._closing = False
        self._switch.clear()
        try:
            await self._run()
        finally:
            self.connected = False

    async def _run(self) -> None:
        while not self._closing:
            self._served_turn = False
            key_refused = False
            try:
                await self._connect_and_serve()
                continue
            except _Switch:
                cause = self._switch_cause or "goAway"
            except TimeoutError:
                cause = "no setupComplete within the connect timeout"
            except UserError as exc:  # no key any more, or the token command failed
                cause = str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is untrusted; so is what the SDK makes of it
                cause, key_refused = self._classify(exc)
            if self._closing:
                break
            was_connected = self.connected
            lived = time.monotonic() - self.connected_at if was_connected else 0.0
            self._lost(cause)
            planned = bool(self._switch_cause) or cause == "goAway"
            fresh_session, self._reseed_now, self._switch_cause = self._reseed_now, False, ""
            if self._backoff.connection_ended(lived, self._served_turn, planned, fresh_session):
                continue
            cap = self.config.live.max_backoff_s
            delay = cap if key_refused else self._backoff.delay(cap)
            if key_refused:
                self.on_event(KeyRefused(cause))
            elif self._backoff.is_outage(was_connected):
                self._report_outage(cause, delay)
            self._expire_stale_turns(time.monotonic())
            log.debug("reconnecting in %.1f s (%s)", delay, cause)
            await pause(delay, self._fresh_turn_waiting)

    def _fresh_turn_waiting(self) -> bool:
        return self._journal.fresh_turn_waiting(time.monotonic(), REPLAY_WINDOW_S)

    def _report_outage(self, cause: str, delay: float) -> None:
        """One WARNING when an outage starts, one INFO per change of cause; none per attempt."""
        began = not self._backoff.offline
        if not self._backoff.outage_attempt(cause):
            return
        if began:
            log.warning("offline: %s; retrying with backoff", cause)
        else:
            log.info("still offline, now: %s", cause)
        self.on_event(Offline(cause, delay))

    def _classify(self, exc: Exception) -> tuple[str, bool]:
        """The cause to report, and whether the key or the model was refused."""
        wire = loaded_wire()
        if isinstance(exc, wire.APIError):
            detail = wire.error_detail(exc) + config_hint(wire.error_detail(exc))
            return f"{exc.code} {detail}".strip()[:240], self._handle_api_error(exc.code, detail)
        if isinstance(exc, wire.NETWORK_ERRORS):
            return f"network: {exc}", False  # ssl.SSLError is an OSError: a clock before NTP
        log.debug("session error", exc_info=True)
        return f"unexpected {type(exc).__name__}: {str(exc)[:160]}", False

    def _handle_api_error(self, code: int | None, text: str) -> bool:
        """True when the key, the model or the setup was refused: a slow retry, state `error`."""
        if (code == 1007 and "API key" in text) or (code == 1008 and "API Key" in text):
            return True
        if code == 1008 and "not found" in text:
            return True
        if code == 1007 and not self.connected and not self.last_resume_handle:
            return True  # an option the model does not take (a refused handle: a fresh one)
        session_expired = code == 1011 and "Deadline expired" in text and not self._goaway_pending
        if code == 1007 or session_expired:  # after a goAway it is the connection that ended
            log.warning("the service ended the session (%s): starting a fresh one", text.strip())
            self._forget_handle()
            self._reseed, self._reseed_now = True, True
        return False

    def _lost(self, cause: str) -> None:
        if self.connected:
            self.connected = False
            self._disconnected_at = time.monotonic()
            self.on_event(Disconnected(cause))
        self._model_busy = False
        self._goaway_pending = False
        for timer in (self._goaway_timer, self._online_check):
            if timer is not None:
                timer.cancel()
        self._switch.clear()

    def reconnect(self, cause: str) -> None:
        """An answer did not come: a new connection replays the turns that are still fresh."""
        if self.connected:
            self._switch_cause = cause
            self._switch.set()

    def _expire_stale_turns(self, now: float) -> None:
        """Turns that ended over REPLAY_WINDOW_S before `now` are reported lost, not sent."""
        for lost in self._journal.expire_stale_turns(now, REPLAY_WINDOW_S):
            self.on_event(lost)

    async def _connect_and_serve(self) -> None:
        self._attempt_at = time.monotonic()  # a turn is sent in time if its attempt began in time
        await load_sdk(self.config)
        credential = await asyncio.to_thread(self.key_provider)
        handle = self.handle if self.config.live.session_resumption else None
        self.last_resume_handle = handle
        declared = self.declarations() if callable(self.declarations) else self.declarations
        seed = self._reseed and bool(self._history) and not handle
        connection = loaded_wire().connect(self.config, credential, list(declared), handle, seed)
        async with asyncio.timeout(self.config.live.connect_timeout_s):
            session = await connection.__aenter__()
        try:
            self._on_connected(resumed=bool(handle))
            await self._serve(session)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):  # servers can go silent: never wait on them
                    await connection.__aexit__(None, None, None)

    def _on_connected(self, resumed: bool) -> None:
        now = time.monotonic()
        gap = now - self._disconnected_at if self._disconnected_at is not None else 0.0
        if self._ever_connected:
            self.reconnects += 1
        self.connected, self.connected_at = True, now
        if self._backoff.offline:  # back online once it lasts (a goAway loop does not)
            loop = asyncio.get_running_loop()
            self._online_check = loop.call_later(IMMEDIATE_CLOSE_S, self._back_online)
        self._expire_stale_turns(self._attempt_at)
        replay = self._journal.take()
        if not resumed:
            replay = self._drop_dead_tool_responses(replay)
            if self._reseed and self._history:
                complete = history_seed_only(self.config.live.model)  # 3.1: ends the history
                replay = [Outgoing("content", (list(self._history), complete)), *replay]
                self.on_event(Reseeded(len(self._history)))
                log.info("re-seeded the fresh session with %d transcript lines", len(self._history))
        self._reseed = False
        self._outbox.extendleft(reversed(replay))
        if self._ever_connected:
            kind = "resumed" if resumed else "fresh session"
            log.debug("reconnected (%s) after %.2f s", kind, gap)
        self._ever_connected = True
        self.on_event(Connected(resumed, self.reconnects, gap))
        self._wake.set()

    def _back_online(self) -> None:
        attempts = self._backoff.back_online() if self.connected else None
        if attempts is not None:
            gap = self.connected_at - (self._disconnected_at or self.connected_at)
            log.info("back online after %d failed attempts (%.0f s)", attempts, gap)
            self.on_event(Online(attempts))

    def _drop_dead_tool_responses(self, replay: list[Outgoing]) -> list[Outgoing]:
        """A fresh session has no open calls: responses for the old session's calls are lost."""
        replay, dead = self._journal.drop_tool_responses(replay)
        for item in dead:
            call_id, name = item.payload[0], item.payload[1]
            log.warning(
                "tool response for %s (%s) dropped: its call ended with the session", name, call_id
            )
            self.on_event(ToolResponseLost(call_id, name))
        return replay

    async def _serve(self, session: Any) -> None:
        self._send_now = loaded_wire().direct_sender(session)
        sender = asyncio.create_task(self._send_loop(session))
        receiver = asyncio.create_task(self._receive_loop(session))
        switch: asyncio.Task[Any] = asyncio.create_task(self._switch.wait())
        try:
            done, _ = await asyncio.wait(
                [sender, receiver, switch], return_when=asyncio.FIRST_COMPLETED
            )
            for task in (receiver, sender):
                if task in done:
                    task.result()  # re-raises the connection's error
            if self._closing:
                return
            raise _Switch()
        finally:
            self._send_now = None
            for task in (sender, receiver, switch):
                task.cancel()
            await asyncio.gather(sender, receiver, switch, return_exceptions=True)

    async def _send_loop(self, session: Any) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            item = self._outbox[0]
            await loaded_wire().send(session, item.kind, item.payload)
            self._outbox.popleft()
            self._journal.record(item)

    async def _receive_loop(self, session: Any) -> None:
        """A message the SDK cannot make sense of is dropped; the socket goes on."""
        receive = loaded_wire().receiver(session)
        while True:
            try:
                events = await receive()
            except MALFORMED as exc:
                self._bad_message(f"{type(exc).__name__}: {str(exc)[:160]}")
                continue
            except Exception as exc:
                if not isinstance(exc, loaded_wire().APIError) or 1000 <= (exc.code or 0) <= 4999:
                    raise  # the connection closed, or worse: the connection loop decides
                self._bad_message(f"an error object: {str(exc)[:160]}")
                continue
            self._deliver(events)

    def _deliver(self, events: list[LiveEvent]) -> None:
        self._last_message_at = time.monotonic()
        for event in events:
            self._note(event)
            try:
                self.on_event(event)
            except Exception as exc:  # what a server sends must never stop the receive loop
                bad_messages.warning(
                    "handler", f"{type(event).__name__} could not be handled: {exc!r:.200}"
                )
                log.debug("handler error", exc_info=True)

    def _bad_message(self, reason: str) -> None:
        bad_messages.warning("bad", f"dropped a malformed server message ({reason})")
        self.on_event(BadServerMessage(reason))

    def _note(self, event: LiveEvent) -> None:
        """Bookkeeping before the agent sees the event."""
        if isinstance(event, TurnComplete | Interrupted):
            self._journal.answered()
        if isinstance(event, ModelAudio | ModelText):
            self._model_busy = True
        elif isinstance(event, TurnComplete | Interrupted):
            self._model_busy = False
            self._served_turn = True
            self._back_online()
            self._maybe_switch()
        if isinstance(event, ResumptionUpdate) and event.resumable and event.handle:
            if len(event.handle) <= MAX_HANDLE_CHARS:
                self.handle = event.handle
                self._save_handle()
            else:
                self._bad_message(f"a resumption handle of {len(event.handle)} characters")
        elif isinstance(event, GoAway):
            self._on_goaway(event.time_left_s)
        elif isinstance(event, InputTranscript):
            remember(self._history, "user", event.text)
        elif isinstance(event, OutputTranscript | ModelText):
            remember(self._history, "model", event.text)

    def _on_goaway(self, time_left_s: float) -> None:
        margin = min(5.0, time_left_s * 0.2)
        log.info("goAway: %.0f s left; switching at the next idle moment", time_left_s)
        self._goaway_pending = True
        loop = asyncio.get_running_loop()
        self._goaway_timer = loop.call_later(max(0.0, time_left_s - margin), self._switch.set)
        loop.call_later(GOAWAY_SILENCE_S, self._switch_if_silent)
        self._maybe_switch()

    def _switch_if_silent(self) -> None:
        """A server that stops talking after goAway would hold the answer until timeLeft."""
        if not self._goaway_pending or self._switch.is_set():
            return
        quiet = time.monotonic() - self._last_message_at
        if quiet >= GOAWAY_SILENCE_S:
            log.debug("goAway then %.1f s of silence: switching now", quiet)
            self._switch.set()
        else:
            asyncio.get_running_loop().call_later(
                GOAWAY_SILENCE_S - quiet, self._switch_if_silent
            )

    def _maybe_switch(self) -> None:
        if self._goaway_pending and not self._model_busy and not self._user_turn_open:
            self._switch.set()

    # ---- the persisted handle ----------------------------------------------------------------

    def _save_handle(self) -> None:
        if self.handle is None:
            return
        try:
            self._handle_file.save(self.handle, self.config.live.model)
        except OSError as exc:
            log.warning("cannot keep the resumption handle in %s: %s", self._handle_file.path, exc)

    def _forget_handle(self) -> None:
        self.handle = None
        self._handle_file.forget()

    def forget_session(self) -> None:
        """The next connection starts a new session (a conversation too old to continue)."""
        self._forget_handle()
        self._history.clear()

    def stop(self) -> None:
        """Ends run(); what was not sent belongs to the conversation that ended."""
        for item in self._journal.unsent_turn_ends():
            detail = "the conversation ended before it could be sent"
            self.on_event(TurnLost("offline", detail, item.turn))
        self._closing = True
        self._switch.set()
        self._outbox.clear()
        self._journal.clear()
        self._user_turn_open = False

    async def close(self) -> None:
        self.stop()
