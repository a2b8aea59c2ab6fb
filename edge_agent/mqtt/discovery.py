"""Home Assistant's MQTT discovery: the topics, the device and each entity's config payload."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from edge_agent import __version__
from edge_agent.config import WebConfig
from edge_agent.config_sections import MqttConfig
from edge_agent.gpio import DEVICE_TREE
from edge_agent.mqtt.entities import Entity

ONLINE, OFFLINE = "online", "offline"
ORIGIN = {"name": "edge-agent", "sw_version": __version__}


def safe_name(name: str) -> str:
    """A host name as Home Assistant takes a node id: letters, digits, '_' and '-'."""
    return re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_-")[:64] or "edge_agent"


@dataclass(frozen=True)
class Topics:
    prefix: str  # Home Assistant's discovery prefix
    node: str

    @classmethod
    def for_config(cls, config: MqttConfig) -> Topics:
        return cls(config.discovery_prefix, config.node_id or safe_name(socket.gethostname()))

    @property
    def base(self) -> str:
        return f"edge-agent/{self.node}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def status(self) -> str:
        """Where Home Assistant says "online" when it (re)starts."""
        return f"{self.prefix}/status"

    def state(self, entity: Entity) -> str:
        return f"{self.base}/{entity.key}"

    def attributes(self, entity: Entity) -> str:
        return f"{self.base}/{entity.key}/attributes"

    def command(self, entity: Entity) -> str:
        return f"{self.base}/{entity.key}/set"

    def config(self, entity: Entity) -> str:
        return f"{self.prefix}/{entity.component}/{self.node}/{entity.key}/config"

    def unique_id(self, entity: Entity) -> str:
        return f"edge_agent_{self.node}_{entity.key}"


def device(topics: Topics, config: MqttConfig, page: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "identifiers": [f"edge_agent_{topics.node}"],
        "name": config.node_id or socket.gethostname(),
        "model": "edge-agent",
        "sw_version": __version__,
    }
    with contextlib.suppress(OSError, UnicodeDecodeError):
        found["hw_version"] = (DEVICE_TREE / "model").read_text().strip("\0\n ")
    if page:
        found["configuration_url"] = page
    return found


def entity_config(entity: Entity, topics: Topics, device: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": entity.name,
        "unique_id": topics.unique_id(entity),
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": device,
        "origin": ORIGIN,
        **entity.discovery,
    }
    if entity.state is not None:
        payload["state_topic"] = topics.state(entity)
    if entity.attributes is not None:
        payload["json_attributes_topic"] = topics.attributes(entity)
    if entity.command is not None:
        payload["command_topic"] = topics.command(entity)
    return payload


def page_url(web: WebConfig, broker: str, port: int) -> str | None:
    """The page's address as other devices reach it, or None when it serves this device only.
    Blocking (it may resolve the broker's name)."""
    if not web.enabled or web.loopback:
        return None
    address = ipaddress.ip_address(web.address)
    host = str(address)
    if address.is_unspecified:  # every interface: the one that faces the broker
        family = socket.AF_INET if address.version == 4 else socket.AF_UNSPEC
        host = _local_address_toward(broker, port, family) or f"{socket.gethostname()}.local"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{web.port}/"


def _local_address_toward(host: str, port: int, family: int) -> str | None:
    """The address this device sends from toward `host`; connecting a UDP socket sends nothing."""
    try:
        family, _, _, _, target = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(target)
            local = str(probe.getsockname()[0]).split("%")[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(local).is_loopback else local
