"""The broker connection on aiomqtt: discovery, availability and states on every connect, then
commands in and changed states out, until the daemon stops. A broker that is down or refuses
the login is a log line and a retry, never the agent's end. Imported after READY."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import aiomqtt

from edge_agent.config import WebConfig
from edge_agent.config_sections import MqttConfig
from edge_agent.live.probe import tls_context
from edge_agent.mqtt.discovery import OFFLINE, ONLINE, Topics, device, entity_config, page_url
from edge_agent.mqtt.states import States

log = logging.getLogger(__name__)
paho_log = logging.getLogger("edge_agent.mqtt.paho")
paho_log.setLevel(logging.INFO)  # paho's debug lines are one per packet

QOS = 1
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
STABLE_S = 30.0  # a connection that lasted this long starts the backoff afresh when lost
REFUSED_RETRY_S = 300.0  # a refused login waits for someone to fix it
GOODBYE_S = 2.0  # at most this long for "offline" on the way out
LOGIN_REFUSED = {4, 5, 134, 135, 140}  # bad user name or password, not authorized, bad method
CLOSED = {7, 128}  # paho's "connection lost", and its "unspecified error" for a closed socket


class Connection:
    def __init__(
        self,
        config: MqttConfig,
        web: WebConfig,
        states: States,
        password: str | None,
        stopping: asyncio.Event,
    ) -> None:
        self.config = config
        self.web = web
        self.states = states
        self.topics: Topics = states.topics
        self.password = password
        self.stopping = stopping
        self.where = f"{config.host}:{config.broker_port}"
        self._publishing = asyncio.Lock()  # one batch at a time keeps each topic's order
        self._outage_since: float | None = None
        self._refused = ""

    async def run(self) -> None:
        delay = FIRST_RETRY_S
        while not self.stopping.is_set():
            connected_at: float | None = None
            try:
                async with self._client() as client:
                    connected_at = time.monotonic()
                    self._on_connected()
                    await self._serve(client)
            except Exception as exc:  # aiomqtt's errors, or a bug: said once, then retried
                if self.stopping.is_set():
                    return
                if connected_at is not None and time.monotonic() - connected_at >= STABLE_S:
                    delay = FIRST_RETRY_S  # a connection that flaps keeps backing off
                wait = self._on_fault(exc, connected_at is not None, delay)
            else:
                continue
            delay = min(delay * 2, MAX_RETRY_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.stopping.wait()

    def _client(self) -> aiomqtt.Client:
        config = self.config
        return aiomqtt.Client(
            config.host,
            config.broker_port,
            username=config.username or None,
            password=self.password,
            identifier=f"edge-agent-{self.topics.node}",
            will=aiomqtt.Will(self.topics.availability, OFFLINE, QOS, retain=True),
            keepalive=config.keepalive_s,
            tls_context=tls_context(config.ca_file) if config.tls else None,
            logger=paho_log,
        )

    def _on_connected(self) -> None:
        if self._outage_since is not None:
            gap = time.monotonic() - self._outage_since
            log.info("mqtt: connected to %s after %.0f s without it", self.where, gap)
        elif self._refused:
            log.info("mqtt: %s took the login", self.where)
        else:
            log.info(
                "mqtt: connected to %s as %s; discovery under %s/",
                self.where,
                self.topics.node,
                self.config.discovery_prefix,
            )
        self._outage_since, self._refused = None, ""

    def _on_fault(self, exc: Exception, connected: bool, delay: float) -> float:
        """One line per outage or refusal; how long to wait before the next attempt."""
        reason = _reason(exc)
        code = getattr(exc, "rc", None)
        if isinstance(exc, aiomqtt.MqttError) and getattr(code, "value", code) in LOGIN_REFUSED:
            if reason != self._refused:
                log.error(
                    "mqtt: the MQTT broker %s refused the login of %r: %s; trying again every "
                    "%.0f s",
                    self.where,
                    self.config.username,
                    reason,
                    REFUSED_RETRY_S,
                )
            self._refused = reason
            return REFUSED_RETRY_S
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            level = logging.WARNING if isinstance(exc, aiomqtt.MqttError) else logging.ERROR
            what = "lost the MQTT broker at" if connected else "cannot reach the MQTT broker at"
            log.log(level, "mqtt: %s %s (%s); retrying", what, self.where, reason)
        else:
            log.debug("mqtt: %s still unreachable: %s", self.where, reason)
        return delay

    async def _serve(self, client: aiomqtt.Client) -> None:
        wanted = [(topic, QOS) for topic in (*self.states.commands, self.topics.status)]
        await client.subscribe(wanted)
        await self._announce(client)
        tasks = {
            asyncio.ensure_future(self._read(client)),
            asyncio.ensure_future(self._write(client)),
            asyncio.ensure_future(self.stopping.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # a lost connection raises here
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):  # stopping: say goodbye
            async with asyncio.timeout(GOODBYE_S):
                await client.publish(self.topics.availability, OFFLINE, QOS, retain=True)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Discovery, every state, then "online": after each connect, since a broker without
        persistence forgets retained messages, and whenever Home Assistant comes back."""
        page = await asyncio.to_thread(
            page_url, self.web, self.config.host, self.config.broker_port
        )
        info = device(self.topics, self.config, page)
        async with self._publishing:
            for entity in self.states.wanted:
                payload = json.dumps(entity_config(entity, self.topics, info))
                await client.publish(self.topics.config(entity), payload, QOS, retain=True)
            for entity in self.states.unwanted:  # switched off in the config: removed
                cleared = [self.topics.config(entity)]
                if entity.state is not None:
                    cleared.append(self.topics.state(entity))
                if entity.attributes is not None:
                    cleared.append(self.topics.attributes(entity))
                for topic in cleared:
                    await client.publish(topic, b"", QOS, retain=True)
            for topic, payload in self.states.everything().items():
                await client.publish(topic, payload, QOS, retain=True)
            await client.publish(self.topics.availability, ONLINE, QOS, retain=True)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.retain:  # a retained command must not replay at every connect
                continue
            payload = message.payload if isinstance(message.payload, bytes) else b""
            topic = message.topic.value
            if topic == self.topics.status:
                if payload == ONLINE.encode():
                    await self._announce(client)
            else:
                self.states.command(topic, payload)

    async def _write(self, client: aiomqtt.Client) -> None:
        while True:
            await self.states.dirty.wait()
            self.states.dirty.clear()
            async with self._publishing:
                for topic, payload in self.states.changes().items():
                    await client.publish(topic, payload, QOS, retain=True)


def _reason(exc: BaseException) -> str:
    """aiomqtt wraps the cause of a lost connection; the cause says more."""
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    code = getattr(cause, "rc", None)
    if isinstance(cause, aiomqtt.MqttCodeError) and getattr(code, "value", code) in CLOSED:
        return "the connection closed"
    return " ".join(str(cause).split()) or type(cause).__name__
