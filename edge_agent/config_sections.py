"""The config's sections for what plugs in beside the Agent ([mcp], [mqtt], [timers]), and the
base every section shares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


def existing_file(hint: str) -> AfterValidator:
    """A path that must name a file, or "" (the key's default); `hint` says what to give."""

    def check(path: str) -> str:
        if path and not Path(path).is_file():
            raise ValueError(f"no such file; give {hint}")
        return path

    return AfterValidator(check)


CaFile = Annotated[str, existing_file('a PEM CA certificate\'s path, or ""')]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


CREDENTIAL_REFERENCE = re.compile(r"credential:([A-Za-z0-9_.-]+)")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TOOL_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,31})?$")


class McpServerConfig(Section):
    name: str
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)
    prefix: str = ""
    timeout_s: float = Field(10, gt=0)
    non_blocking: bool = False

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not SERVER_NAME.match(name):
            raise ValueError("expected 1-32 letters, digits, '-' or '_'")
        return name

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, prefix: str) -> str:
        if not TOOL_PREFIX.match(prefix):
            raise ValueError('expected "" or a letter then letters, digits or \'_\' (e.g. "ha_")')
        return prefix

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if bool(self.command) == bool(self.url):
            raise ValueError("set either command (a stdio server) or url (Streamable HTTP or SSE)")
        if self.url and (self.args or self.env):
            raise ValueError("args and env are for a stdio server (command), not a url")
        if self.command and self.headers:
            raise ValueError("headers are for a url, not a stdio server (command)")
        return self

    def credential_names(self) -> list[str]:
        values = [*self.env.values(), *self.headers.values()]
        return sorted({name for v in values for name in CREDENTIAL_REFERENCE.findall(v)})


class McpConfig(Section):
    servers: list[McpServerConfig] = Field(default_factory=list)

    @field_validator("servers")
    @classmethod
    def _unique_names(cls, servers: list[McpServerConfig]) -> list[McpServerConfig]:
        names = [server.name for server in servers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two servers are named {name!r}")
        return servers


MQTT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a node id: Home Assistant's topic rules
MQTT_PREFIX = re.compile(r"^[^#+/\s]+(/[^#+/\s]+)*$")
HOST_NAME = re.compile(r"^[A-Za-z0-9_.:%-]{1,253}$")  # a host name or an IPv4/IPv6 address


class MqttConfig(Section):
    enabled: bool = False
    host: str = "homeassistant.local"
    port: int = Field(0, ge=0, le=65535)
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: CaFile = ""
    discovery_prefix: str = "homeassistant"
    node_id: str = ""
    keepalive_s: int = Field(60, ge=5, le=65535)
    publish_transcripts: bool = False
    remote_conversation: bool = False

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not HOST_NAME.match(host):
            raise ValueError("expected the broker's host name or IP address")
        return host

    @field_validator("password")
    @classmethod
    def _reference(cls, password: str) -> str:
        if password and not CREDENTIAL_REFERENCE.fullmatch(password):
            raise ValueError(
                'expected "credential:NAME" (the password in the systemd credential NAME, '
                "or the variable NAME), never the password itself"
            )
        return password

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not MQTT_PREFIX.match(prefix):
            raise ValueError('expected a topic without wildcards, e.g. "homeassistant"')
        return prefix

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, node_id: str) -> str:
        if node_id and not MQTT_NAME.match(node_id):
            raise ValueError("expected 1-64 letters, digits, '-' or '_', or \"\" for the host name")
        return node_id

    @model_validator(mode="after")
    def _login(self) -> MqttConfig:
        if self.password and not self.username:
            raise ValueError("password needs a username")
        if self.ca_file and not self.tls:
            raise ValueError("ca_file is for tls = true")
        return self

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def password_credential(self) -> str:
        """The credential's name, or "" without a password."""
        match = CREDENTIAL_REFERENCE.fullmatch(self.password)
        return match.group(1) if match else ""


class TimersConfig(Section):
    enabled: bool = True  # the timer, alarm and reminder tools, and announcements
    sound: Annotated[str, existing_file('a WAV file\'s path, or "" for the built-in sound')] = ""
    ring_max_s: float = Field(300, ge=5, le=3600)
    min_volume_percent: int = Field(50, ge=0, le=100)
