"""Timers, alarms, reminders and announcements beside the Agent.

What falls due rings on the device: the ring cuts any answer, plays while the microphone is
muted, and is the agent's own sound to the echo guard. The next speech, wake word or press is
the ring's stop (the Agent hands it over and sends nothing), and so are the page, the API and
cancel_timer. A reminder and an announcement are spoken by the model once no one speaks and no
answer is under way; where the person starts conversations the microphone stays closed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_agent.agent import Agent
from edge_agent.audio.chimes import chime
from edge_agent.config_sections import TimersConfig
from edge_agent.events import AgentError, State, TimerChanged
from edge_agent.timers.schedule import Entry, Schedule

log = logging.getLogger(__name__)

TICK_S = 0.1  # how often the schedule is asked while ringing or with words to say
IDLE_TICK_S = 1.0  # otherwise at least this often (a wall clock may jump), or when one is due
RING_AHEAD_S = 0.5  # ring audio kept queued on the speaker
REMINDER = 'Say this reminder to the person, briefly, in one sentence: "{}"'
ANNOUNCEMENT = 'Read this announcement aloud word for word, and say nothing else: "{}"'
TOLD = ("set", "cancelled", "missed")  # what the schedule says that the stream carries as is


class Timers:
    def __init__(
        self,
        config: TimersConfig,
        agent: Agent,
        schedule: Schedule,
        ring_cycle: Callable[[float], bytes],
    ) -> None:
        self.config = config
        self.agent = agent
        self.schedule = schedule
        self.ring_cycle = ring_cycle  # one cycle at the speaker's rate, at a volume
        self.ringing: list[Entry] = []
        self._ring_started = 0.0
        self._next_tick = 0.0
        self._to_say: deque[tuple[str, str, Entry | None]] = deque()  # (words, reason, reminder)
        schedule.listeners.append(self._changed)

    def start(self) -> None:
        """Once at start: what fell due while the daemon was down rings (or is missed)."""
        to_ring, _missed = self.schedule.load()
        self._fall_due(to_ring)

    def wrap(self, on_mic_frame: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """The schedule is asked beside the mic frames when tick() last said, on the Agent's
        clock: one comparison a frame while nothing is due."""
        clock = self.agent.clock

        def frame(pcm: bytes) -> None:
            on_mic_frame(pcm)
            if clock() >= self._next_tick:
                self.tick()

        return frame

    def tick(self) -> None:
        self._fall_due(self.schedule.due())
        if self.ringing:
            self._keep_ringing()
        elif self._to_say:
            self._say_next()
        wait = TICK_S if self.ringing or self._to_say else IDLE_TICK_S
        due_in = self.schedule.due_in()
        self._next_tick = self.agent.clock() + min(wait, due_in if due_in is not None else wait)

    # ---- commands (the page, the API, the tools) --------------------------------------------

    def stop(self, how: str) -> bool:
        """Silences the ring; False when nothing rings."""
        if not self.ringing:
            return False
        self.agent.speaker.stop_sounds()
        self.agent.take_next_input(None)
        log.info("%s stopped (%s)", ", ".join(e.label for e in self.ringing), how)
        for entry in self.ringing:
            self._emit("stopped", entry)
        self.ringing = []
        return True

    def stop_named(self, label: str | None) -> list[str]:
        """cancel_timer on what rings (it has left the schedule): the labels stopped, [] when
        nothing rings or `label` names none of it."""
        wanted = (label or "").strip().lower()
        if not any(wanted in entry.label.lower() for entry in self.ringing):
            return []
        labels = [entry.label for entry in self.ringing]
        self.stop("cancel_timer")
        return labels

    def announce(self, text: str, with_chime: bool = True) -> str:
        """Queues `text` to be read out; "" when queued, else why not (for a 409). A refused
        one still gets its chime and a line on the page (an AgentError on the stream)."""
        why_not = ""
        if self.agent.conversation.budget.exhausted:
            why_not = "the daily token budget is spent"
        elif self.agent.state in (State.OFFLINE, State.ERROR):
            why_not = "the service cannot be reached"
        if with_chime:
            speaker = self.agent.speaker
            speaker.chime(chime("announce", speaker.device_rate))
        if why_not:
            log.warning("announcement not spoken (%s): %s", why_not, text)
            self.agent.emit(AgentError("announcement", f"not spoken ({why_not}): {text}"))
            return why_not
        self._to_say.append((ANNOUNCEMENT.format(text), "announcement", None))
        self._next_tick = 0.0
        return ""

    def entries(self) -> list[dict[str, Any]]:
        """What rings now, then what is set, soonest first (the page, the API, MQTT)."""
        describe = self.schedule.describe
        ringing = [{**describe(e), "ringing": True} for e in self.ringing]
        return ringing + [{**describe(e), "ringing": False} for e in self.schedule.entries()]

    # ---- inside -----------------------------------------------------------------------------

    def _fall_due(self, entries: list[Entry]) -> None:
        to_ring = []
        for entry in entries:
            if entry.kind == "reminder" and self._can_speak():
                self._to_say.append((REMINDER.format(entry.text), "reminder", entry))
            else:
                if entry.kind == "reminder":
                    self.agent.ledger.report(
                        "reminder", f"reminder {entry.label!r} could not be spoken: offline"
                    )
                to_ring.append(entry)
        if to_ring:
            self._start_ringing(to_ring)

    def _can_speak(self) -> bool:
        budget = self.agent.conversation.budget
        return self.agent.state not in (State.OFFLINE, State.ERROR) and not budget.exhausted

    def _start_ringing(self, entries: list[Entry]) -> None:
        if not self.ringing:  # timers due together ring once
            self._ring_started = self.agent.clock()
            self.agent.alert(self._ring())
            self.agent.take_next_input(self._stopped_by)
        log.info("%s: ringing", ", ".join(e.label for e in entries))
        self.ringing += entries
        for entry in entries:
            self._emit("ringing", entry)

    def _stopped_by(self, what: str) -> None:
        self.stop(what)

    def _keep_ringing(self) -> None:
        if self.agent.clock() - self._ring_started >= self.config.ring_max_s:
            self.stop(f"no one stopped it in {self.config.ring_max_s:g} s")
        elif self.agent.speaker.sounds_s < RING_AHEAD_S:
            self.agent.speaker.sound(self._ring())

    def _ring(self) -> bytes:
        return self.ring_cycle(max(self.agent.speaker.volume, self.config.min_volume_percent / 100))

    def _say_next(self) -> None:
        words, reason, reminder = self._to_say[0]
        if self.agent.say(words, reason):
            self._to_say.popleft()
            if reminder is not None:
                self._emit("spoken", reminder)

    def _changed(self, what: str, entry: Entry) -> None:
        if what == "set":
            self._next_tick = 0.0  # asked again at the next frame: it may be due sooner
        if what in TOLD:
            self._emit(what, entry)

    def _emit(self, what: str, entry: Entry) -> None:
        self.agent.emit(TimerChanged(what, self.schedule.describe(entry)))
