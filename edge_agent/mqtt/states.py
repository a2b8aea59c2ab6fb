"""The entities' states kept current from the Agent's event stream and the volume, and what the
broker has not been told yet; commands from Home Assistant go to their entity."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

from edge_agent.config_sections import MqttConfig
from edge_agent.events import AgentEvent
from edge_agent.mqtt.discovery import Topics
from edge_agent.mqtt.entities import Entity, Refused, Sources

log = logging.getLogger(__name__)


class States:
    def __init__(
        self, config: MqttConfig, entities: tuple[Entity, ...], sources: Sources, topics: Topics
    ) -> None:
        self.sources = sources
        self.topics = topics

        def wanted(entity: Entity) -> bool:
            return entity.wanted(config) and (sources.timers is not None or not entity.timers)

        self.wanted = tuple(entity for entity in entities if wanted(entity))
        self.unwanted = tuple(entity for entity in entities if not wanted(entity))
        self.commands = {
            topics.command(entity): entity for entity in self.wanted if entity.command is not None
        }
        self.sent: dict[str, str] = {}  # topic -> payload, as the broker holds them
        self.dirty = asyncio.Event()  # something differs from what was sent
        self._midnight: asyncio.TimerHandle | None = None
        sources.agent.listeners.append(self.on_event)
        sources.volume.listeners.append(self.on_volume)
        self._at_midnight()

    def detach(self) -> None:
        self.sources.agent.listeners.remove(self.on_event)
        self.sources.volume.listeners.remove(self.on_volume)
        if self._midnight is not None:
            self._midnight.cancel()

    # ---- from the Agent (on the event loop; cheap and never raising) --------------------------

    def on_event(self, event: AgentEvent) -> None:
        try:
            self.sources.remember(event)
        except Exception as exc:  # a bug here must not reach the Agent
            log.error("mqtt: event %s not understood: %r", type(event).__name__, exc)
        self.refresh()

    def on_volume(self, percent: int) -> None:
        self.refresh()

    def refresh(self) -> None:
        try:
            if self.snapshot() != self.sent:
                self.dirty.set()
        except Exception as exc:
            log.error("mqtt: states not read: %r", exc)

    def _at_midnight(self) -> None:
        """Tokens today fall to 0 at local midnight without an event."""
        self.refresh()
        now = dt.datetime.now()
        midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time())
        delay = (midnight - now).total_seconds() + 1
        self._midnight = asyncio.get_running_loop().call_later(delay, self._at_midnight)

    # ---- to the broker -------------------------------------------------------------------

    def snapshot(self) -> dict[str, str]:
        """Every state and attributes topic with its payload now."""
        found = {}
        for entity in self.wanted:
            if entity.state is not None:
                found[self.topics.state(entity)] = entity.state(self.sources)
            if entity.attributes is not None:
                attributes = entity.attributes(self.sources)
                found[self.topics.attributes(entity)] = json.dumps(attributes, ensure_ascii=False)
        return found

    def changes(self) -> dict[str, str]:
        """What changed since it was last sent; from now on counted as sent."""
        now = self.snapshot()
        changed = {topic: text for topic, text in now.items() if self.sent.get(topic) != text}
        self.sent.update(changed)
        return changed

    def everything(self) -> dict[str, str]:
        """All of it, for a broker that may have forgotten (a reconnect, Home Assistant back)."""
        self.sent = self.snapshot()
        return dict(self.sent)

    def command(self, topic: str, payload: bytes) -> None:
        entity = self.commands.get(topic)
        if entity is None or entity.command is None:
            return
        if not payload and not entity.empty_is_command:
            return  # how a retained message is deleted: not a command
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            log.warning("mqtt: %s ignored (%.60r): not UTF-8", entity.key, payload)
            return
        try:
            entity.command(self.sources, text)
        except Refused as refused:
            log.warning("mqtt: %s ignored (%.60r): %s", entity.key, text, refused)
        except Exception as exc:  # whatever it is, the agent runs on
            log.error("mqtt: %s failed: %r", entity.key, exc)
