"""Whether the service can be reached, as the Agent shows it: connecting, online, offline (an
outage: a chime when it starts in a conversation, then one a minute while turns go unanswered),
or refused (the key or the setup: the state `error`)."""

from __future__ import annotations

from collections.abc import Callable

from edge_agent import events as ev
from edge_agent.turns import TurnLedger

OFFLINE_CHIME_EVERY_S = 60.0


class LinkStatus:
    def __init__(
        self,
        clock: Callable[[], float],
        chime: Callable[[str], None],
        emit: Callable[[ev.AgentEvent], None],
        ledger: TurnLedger,
    ) -> None:
        self.clock = clock
        self.chime = chime
        self.emit = emit
        self.ledger = ledger
        self.connecting = True  # a conversation is open and its session is not up yet
        self.offline = False  # an outage, not a connect
        self.refused = False
        self._offline_chimed_at = -OFFLINE_CHIME_EVERY_S

    @property
    def up(self) -> bool:
        return not (self.connecting or self.offline)

    def turn_ended(self) -> None:
        """A turn that will wait for the outage: the offline chime, at most once a minute."""
        if self.offline and self.clock() - self._offline_chimed_at >= OFFLINE_CHIME_EVERY_S:
            self._offline_chimed_at = self.clock()
            self.chime("offline")

    def connected(self, event: ev.Connected) -> None:
        self.connecting = self.offline = self.refused = False
        self.emit(ev.ConnectionChanged("online"))
        self.ledger.connected(event.resumed, event.reconnects)

    def went_offline(self, event: ev.Offline, conversation_open: bool) -> None:
        """LiveSession (or the idle probe) logs the outage; here it becomes a state and a chime."""
        if not self.offline and conversation_open:
            self._offline_chimed_at = self.clock()
            self.chime("offline")
        self.offline = True
        self.emit(ev.ConnectionChanged("offline", event.cause))

    def back_online(self) -> None:
        if self.offline or self.refused:
            self.offline = self.refused = False
            self.emit(ev.ConnectionChanged("online"))

    def key_refused(self, event: ev.KeyRefused) -> None:
        if not self.refused:
            self.refused = True
            self.chime("error")
            self.ledger.report("key", f"the service refused the key or setup: {event.detail}")
            self.emit(ev.ConnectionChanged("error", event.detail))
