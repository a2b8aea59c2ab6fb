"""The one TOML schema (see docs/interface.md): plain data, validated with pydantic."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.config_errors import describe_error
from edge_agent.config_sections import (
    CREDENTIAL_REFERENCE,
    CaFile,
    McpConfig,
    MqttConfig,
    Section,
    TimersConfig,
)
from edge_agent.errors import UserError

SYSTEM_CONFIG = Path("/etc/edge-agent/config.toml")
DEFAULT_MODEL = "gemini-3.8-live"


SPI0_PINS = (7, 10, 11)  # CE1, MOSI, SCLK: the APA102 ring on the ReSpeaker HATs


def _bcm_pin(pin: int) -> int:
    if not 0 <= pin <= 27:
        raise ValueError("BCM pins are 0..27")
    return pin


Pin = Annotated[int, AfterValidator(_bcm_pin)]


def _ip_address(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError("expected an IP address, e.g. 127.0.0.1, 0.0.0.0 or ::1") from None
    return address


IpAddress = Annotated[str, AfterValidator(_ip_address)]


class LiveConfig(Section):
    model: str = DEFAULT_MODEL
    api_version: Literal["v1", "v1beta", "v1alpha"] = "v1beta"
    endpoint: str = ""
    ca_file: CaFile = ""
    token_command: str = ""
    system_instruction: str = (
        "You are a helpful voice assistant on a small device. Answer briefly and clearly."
    )
    response_modality: Literal["audio", "text"] = "audio"
    voice: str = ""
    language: str = ""
    thinking_budget: int = Field(-1, ge=-1)
    thinking_level: Literal["", "minimal", "low", "medium", "high"] = ""
    include_thoughts: bool = False
    affective_dialog: bool = False
    proactive_audio: bool = False
    media_resolution: Literal["low", "medium", "high"] = "low"
    input_transcription: bool = True
    output_transcription: bool = True
    session_resumption: bool = True
    context_compression: bool = True
    compression_trigger_tokens: int = Field(25600, gt=0)
    compression_target_tokens: int = Field(12800, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    ping_interval_s: float = Field(30.0, ge=0)
    ping_timeout_s: float = Field(60.0, gt=0)
    max_backoff_s: float = Field(60.0, ge=0.1)
    reply_timeout_s: float = Field(20.0, gt=0)
    compression: bool = False

    @field_validator("endpoint")
    @classmethod
    def _secure_url(cls, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        if endpoint and (parts.scheme not in ("https", "wss") or not parts.hostname):
            raise ValueError('expected an https:// or wss:// URL, or "" for the Gemini API')
        return endpoint

    @model_validator(mode="after")
    def _target_below_trigger(self) -> LiveConfig:
        if self.compression_target_tokens >= self.compression_trigger_tokens:
            raise ValueError("compression_target_tokens must be below compression_trigger_tokens")
        return self


class ConversationConfig(Section):
    start: Literal["speech", "button", "always", "wake_word"] = "speech"
    idle_timeout_s: float = Field(20, gt=0)
    remember_minutes: float = Field(10, ge=0)
    chimes: bool = True
    max_tokens_per_day: int = Field(0, ge=0)


class WakeWordConfig(Section):
    models: list[str] = Field(default_factory=lambda: ["okay_nabu"])
    probability_cutoff: float = Field(0.0, ge=0.0, lt=1.0)
    sliding_window: int = Field(0, ge=0, le=100)
    refractory_s: float = Field(2.0, ge=0.0)

    @field_validator("models")
    @classmethod
    def _named(cls, models: list[str]) -> list[str]:
        if not models or not all(name.strip() for name in models):
            raise ValueError("expected at least one model name or .json path")
        return models


class TurnsConfig(Section):
    mode: Literal["vad", "push_to_talk", "server_vad"] = "vad"
    start_sensitivity: Literal["high", "low"] = "high"
    end_sensitivity: Literal["high", "low"] = "high"
    prefix_padding_ms: int = Field(20, ge=0)
    silence_duration_ms: int = Field(500, ge=0)
    activity_handling: Literal["interrupt", "no_interruption"] = "interrupt"


class VadConfig(Section):
    aggressiveness: int = Field(2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 30
    preroll_ms: int = Field(300, ge=0, le=5000)
    hangover_ms: int = Field(700, ge=0)
    hangover_short_ms: int = Field(1500, ge=0)
    short_phrase_ms: int = Field(1000, ge=0)
    min_speech_ms: int = Field(200, ge=0)
    max_turn_s: float = Field(30, gt=0)
    continuation_ms: int = Field(2000, ge=0)
    min_level_dbfs: float = Field(-65.0, ge=-96.0, le=0.0)
    noise_margin_db: float = Field(8.0, ge=0.0, le=40.0)


class AudioConfig(Section):
    input_device: str = "default"
    output_device: str = "default"
    input_rate: int = Field(0, ge=0)
    output_rate: int = Field(0, ge=0)
    period_ms: int = Field(20, ge=5, le=100)
    jitter_ms: int = Field(100, ge=0, le=2000)
    echo: Literal["half_duplex", "none", "system", "aec"] = "half_duplex"
    echo_tail_ms: int = Field(400, ge=0)
    volume: float = Field(1.0, ge=0.0, le=4.0)
    speaker_idle_stop_s: float = Field(2.0, ge=0.0)


class CameraConfig(Section):
    source: Literal["none", "picamera2", "opencv", "files"] = "none"
    device: str = ""
    path: str = ""
    fps: float = Field(1.0, gt=0, le=30)
    width: int = Field(768, ge=16)
    height: int = Field(768, ge=16)
    jpeg_quality: int = Field(80, ge=1, le=100)
    send: Literal["while_talking", "in_conversation", "always", "on_request"] = "while_talking"


class GpioConfig(Section):
    button_pin: Pin = 0
    button_mode: Literal["hold", "toggle"] = "hold"
    button_pull_up: bool = True
    long_press_s: float = Field(2.0, gt=0)
    poll_ms: int = Field(0, ge=0)
    led_pin: Pin = 0
    rgb_pins: list[Pin] = Field(default_factory=list)
    ring: Literal["none", "apa102"] = "none"
    ring_leds: int = Field(12, ge=1)
    privacy_led_pin: Pin = 0
    required: bool = False

    @field_validator("rgb_pins")
    @classmethod
    def _three_pins(cls, pins: list[int]) -> list[int]:
        if pins and len(pins) != 3:
            raise ValueError("expected [] or three pins [r, g, b]")
        return pins


TIMER_TOOLS = ("set_timer", "set_alarm", "set_reminder", "list_timers", "cancel_timer")
DEFAULT_TOOLS = ("get_time", "device_status", "end_conversation", *TIMER_TOOLS)


class ToolsConfig(Section):
    enabled: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOLS))
    google_search: bool = False
    code_execution: bool = False
    timeout_s: float = Field(10, gt=0)
    gpio_outputs: dict[str, Pin] = Field(default_factory=dict)

    def wanted(self, timers_on: bool) -> list[str]:
        """The names to offer; the timers' tools only while [timers] is on (no warning then)."""
        return [n for n in self.enabled if timers_on or n not in TIMER_TOOLS]


class WebConfig(Section):
    enabled: bool = False
    address: IpAddress = "127.0.0.1"
    port: int = Field(8780, ge=1, le=65535)
    credential: str = Field("web-token", pattern=r"^[A-Za-z0-9_.@-]+$")

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


class ServiceConfig(Section):
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_address: IpAddress = "127.0.0.1"
    state_dir: str = "/var/lib/edge-agent"


class Config(Section):
    live: LiveConfig = Field(default_factory=LiveConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    wake_word: WakeWordConfig = Field(default_factory=WakeWordConfig)
    turns: TurnsConfig = Field(default_factory=TurnsConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    timers: TimersConfig = Field(default_factory=TimersConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.conversation.start == "wake_word" and self.camera.send == "always":
            raise ValueError(
                '[conversation] start = "wake_word" cannot go with [camera] send = "always" '
                "(the camera would stream before anyone called); "
                'use send = "while_talking" or "in_conversation"'
            )
        if self.camera.source == "files" and not self.camera.path:
            raise ValueError(
                '[camera] path: source = "files" needs an image or a folder of images: '
                'set path, or source = "none"'
            )
        if self.turns.mode == "push_to_talk" and not self.gpio.button_pin:
            raise ValueError(
                "[turns] mode: push_to_talk needs a button: set [gpio] button_pin "
                '(e.g. 17), or mode = "vad"'
            )
        taken: dict[int, str] = {}
        for pin, name in _pins_in_use(self):
            if pin in taken:
                raise ValueError(f"{name}: GPIO{pin} is already {taken[pin]}; choose another pin")
            taken[pin] = name
        return self

    def credential_names(self) -> list[str]:
        """The systemd credentials the config reads besides the key: every credential:NAME in
        its values (MCP headers and env, passwords), and [web] credential off loopback."""
        names = set(_credential_references(self.model_dump()))
        if self.web.enabled and not self.web.loopback:
            names.add(self.web.credential)
        return sorted(names)


def _credential_references(value: Any) -> list[str]:
    if isinstance(value, str):
        return CREDENTIAL_REFERENCE.findall(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [name for item in value for name in _credential_references(item)]
    return []


def _pins_in_use(config: Config) -> list[tuple[int, str]]:
    gpio = config.gpio
    named = [
        (gpio.button_pin, "[gpio] button_pin"),
        (gpio.led_pin, "[gpio] led_pin"),
        *((pin, "[gpio] rgb_pins") for pin in gpio.rgb_pins),
        (gpio.privacy_led_pin, "[gpio] privacy_led_pin"),
    ]
    used = [(pin, name) for pin, name in named if pin]
    if gpio.ring == "apa102":
        used = [(pin, "[gpio] ring (SPI0)") for pin in SPI0_PINS] + used
    outputs = config.tools.gpio_outputs.items()
    return used + [(pin, f"[tools] gpio_outputs.{name}") for name, pin in outputs]


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: str  # the file it came from, or "packaged default"


def packaged_default_text() -> str:
    return resources.files("edge_agent").joinpath("default.toml").read_text("utf-8")


def find_config_file(explicit: str | None) -> Path | None:
    """Lookup order: --config, then /etc/edge-agent/config.toml, then the packaged default."""
    if explicit:
        return Path(explicit)
    if SYSTEM_CONFIG.is_file():
        return SYSTEM_CONFIG
    return None


def load_config(explicit: str | None = None) -> LoadedConfig:
    path = find_config_file(explicit)
    if path is None:
        origin = "packaged default"
        return LoadedConfig(parse_config(packaged_default_text(), origin), origin)
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
            "save it as UTF-8 TOML"
        ) from None
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except OSError as exc:
        raise UserError(f"config file {path} cannot be read: {exc.strerror}") from None
    return LoadedConfig(parse_config(text, str(path)), str(path))


def parse_config(text: str, origin: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{origin}: invalid TOML: {exc}") from None
    return config_from_dict(data, origin)


def config_from_dict(data: dict[str, Any], origin: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{origin}: {describe_error(exc, data, Config)}") from None
