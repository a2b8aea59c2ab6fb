"""Home Assistant over MQTT (docs/home-assistant.md). Imported only with [mqtt] enabled = true;
aiomqtt is imported once READY has been sent, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING

from edge_agent.config import Config
from edge_agent.config_sections import MqttConfig
from edge_agent.credentials import MissingCredential, read_credential
from edge_agent.errors import UserError
from edge_agent.mqtt.discovery import Topics
from edge_agent.mqtt.entities import ENTITIES, Sources
from edge_agent.mqtt.states import States

if TYPE_CHECKING:
    from edge_agent.agent import Agent
    from edge_agent.audio.volume import Volume
    from edge_agent.timers.app import Timers

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'edge-agent[mqtt]'"
CLOSE_BOUND_S = 3.0


def check(config: MqttConfig) -> None:
    """Before any device opens: without aiomqtt, or without the password's credential, exit 2."""
    if importlib.util.find_spec("aiomqtt") is None:
        raise UserError(f"[mqtt] enabled = true needs aiomqtt: {INSTALL_HINT}")
    password(config)


def check_lines(config: MqttConfig) -> list[str]:
    """`check`: where it connects, and whether aiomqtt and the password are there."""
    topics = Topics.for_config(config)
    lines = [
        f"# mqtt: {config.host}:{config.broker_port}{' (tls)' if config.tls else ''} as "
        f"{topics.node}, discovery under {config.discovery_prefix}/"
    ]
    if importlib.util.find_spec("aiomqtt") is None:
        lines.append(f"#   aiomqtt not installed: {INSTALL_HINT}")
    if config.password_credential:
        try:
            password(config)
            lines.append(f"#   credential {config.password_credential}: set, not shown")
        except UserError as exc:
            lines.append(f"#   {str(exc).removeprefix('[mqtt] password: ')}")
    return lines


def password(config: MqttConfig) -> str | None:
    name = config.password_credential
    if not name:
        return None
    try:
        return read_credential(name)
    except MissingCredential as exc:
        raise UserError(f"[mqtt] password: {exc}") from None


class Bridge:
    """Follows the Agent from now on; connects to the broker in the background."""

    def __init__(
        self,
        config: Config,
        agent: Agent,
        volume: Volume,
        timers: Timers | None,
        reachable: bool,
    ) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        connection = "online" if reachable else "offline"
        sources = Sources(agent, volume, reachable, connection, timers)
        self.states = States(config.mqtt, ENTITIES, sources, Topics.for_config(config.mqtt))
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            secret = password(self.config.mqtt)
            await asyncio.to_thread(importlib.import_module, "edge_agent.mqtt.connection")
            from edge_agent.mqtt.connection import Connection

            connection = Connection(
                self.config.mqtt, self.config.web, self.states, secret, self.stopping
            )
            await connection.run()
        except (ImportError, UserError) as exc:
            log.error("mqtt: not started: %s", exc)
        except Exception as exc:  # whatever it is, the agent runs on without Home Assistant
            log.error("mqtt: stopped: %r", exc)

    async def close(self) -> None:
        """Publishes "offline" (retained), then disconnects cleanly."""
        self.states.detach()
        self.stopping.set()
        try:
            async with asyncio.timeout(CLOSE_BOUND_S):
                await asyncio.shield(self.task)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
