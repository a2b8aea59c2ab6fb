"""Config schema, `check`, bad-config errors, and every key -> LiveConnectConfig -> setup JSON."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from edge_agent.config import Config, config_from_dict, packaged_default_text
from edge_agent.credentials import find_api_key
from edge_agent.live.models import compatibility_warnings, effective_api_version
from edge_agent.live.setup import build_live_config
from tests.conftest import REPO, run_cli, sdk_client

PROFILES = sorted((REPO / "config").glob("*.toml"))


def test_default_file_lists_every_key_with_the_schema_defaults() -> None:
    data = tomllib.loads(packaged_default_text())
    assert config_from_dict(data) == Config()
    for section, model in Config.model_fields.items():
        schema_keys = set(model.annotation.model_fields)  # type: ignore[union-attr]
        assert set(data[section]) == schema_keys, section
    assert (REPO / "config" / "default.toml").read_text() == packaged_default_text()


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_check_passes_on_every_shipped_profile_without_a_key(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(profile)]) == 0
    out = capsys.readouterr().out
    assert f"# config: {profile}" in out
    assert "none found" in out
    assert tomllib.loads(out)  # the effective config is valid TOML


def test_partial_file_merges_with_defaults() -> None:
    config = config_from_dict({"vad": {"aggressiveness": 3}})
    assert config.vad.aggressiveness == 3
    assert config.vad.hangover_ms == Config().vad.hangover_ms
    assert config.live == Config().live


BAD_CONFIGS = [
    ("[lvie]\nmodel = 'x'\n", "[lvie]: unknown section (did you mean 'live'?)"),
    ("[live]\nmodle = 'x'\n", "[live] modle: unknown key (did you mean 'model'?)"),
    ("[vad]\naggressiveness = 'high'\n", "[vad] aggressiveness: Input should be a valid integer"),
    (
        "[vad]\naggressiveness = 5\n",
        "[vad] aggressiveness: Input should be less than or equal to 3",
    ),
    ("[turns]\nmode = 'wake'\n", "[turns] mode: expected 'vad', 'push_to_talk' or 'server_vad'"),
    ("[gpio]\nrgb_pins = [1, 2]\n", "[gpio] rgb_pins: expected [] or three pins"),
    ("[live]\ncompression_target_tokens = 99999\n", "[live]: compression_target_tokens must"),
    ("[live\nmodel = 1\n", "invalid TOML"),
    (
        "[[mcp.servers]]\nname = 'ha'\nurl = 'http://ha/api/mcp'\nheader = {}\n",
        "[mcp] servers.0.header: unknown key (did you mean 'headers'?)",
    ),
    (
        "[[mcp.servers]]\nname = 'ha'\ncommand = 'x'\nurl = 'http://ha/api/mcp'\n",
        "[mcp] servers.0: set either command (a stdio server) or url",
    ),
    (
        "[tools.gpio_outputs]\nfan = 'x'\n",
        "[tools] gpio_outputs.fan: Input should be a valid integer",
    ),
    ("[service]\nmetrics_address = 'everywhere'\n", "[service] metrics_address: expected an IP"),
    ("[turns]\nmode = 'push_to_talk'\n", "[turns] mode: push_to_talk needs a button: set [gpio]"),
    ("[gpio]\nbutton_pin = 28\n", "[gpio] button_pin: BCM pins are 0..27 (got 28)"),
    ("[gpio]\nled_pin = -1\n", "[gpio] led_pin: BCM pins are 0..27 (got -1)"),
    ("[gpio]\nrgb_pins = [5, 6, 99]\n", "[gpio] rgb_pins.2: BCM pins are 0..27 (got 99)"),
    ("[tools.gpio_outputs]\nfan = 40\n", "[tools] gpio_outputs.fan: BCM pins are 0..27 (got 40)"),
    (
        "[gpio]\nbutton_pin = 17\n[tools.gpio_outputs]\nfan = 17\n",
        "[tools] gpio_outputs.fan: GPIO17 is already [gpio] button_pin; choose another pin",
    ),
    (
        "[gpio]\nbutton_pin = 17\nled_pin = 17\n",
        "[gpio] led_pin: GPIO17 is already [gpio] button_pin; choose another pin",
    ),
    (
        "[gpio]\nring = 'apa102'\nled_pin = 10\n",
        "[gpio] led_pin: GPIO10 is already [gpio] ring (SPI0); choose another pin",
    ),
    (
        "[conversation]\nidle_timeout_s = inf\n",
        "[conversation] idle_timeout_s: Input should be a finite",
    ),
    ("[live]\nreply_timeout_s = nan\n", "[live] reply_timeout_s: Input should be a finite"),
    (
        "[live]\nmax_backoff_s = 1e-9\n",
        "[live] max_backoff_s: Input should be greater than or equal",
    ),
    (
        "[live]\nendpoint = 'localhost:8765'\n",
        "[live] endpoint: expected an https:// or wss:// URL",
    ),
    ("[live]\nendpoint = 'http://proxy:80'\n", "[live] endpoint: expected an https:// or wss://"),
    (
        "[live]\nca_file = '/nonexistent/ca.pem'\n",
        "[live] ca_file: no such file; give a PEM CA certificate's path",
    ),
    ("[web]\naddress = 'pi.local'\n", "[web] address: expected an IP address, e.g. 127.0.0.1"),
    ("[web]\ncredential = '../key'\n", "[web] credential: String should match pattern"),
    (
        "[mqtt]\nusername = 'ha'\npassword = 'hunter2'\n",
        '[mqtt] password: expected "credential:NAME"',
    ),
    ("[mqtt]\npassword = 'credential:mqtt-password'\n", "[mqtt]: password needs a username"),
    ("[mqtt]\nnode_id = 'kitchen/pi'\n", "[mqtt] node_id: expected 1-64 letters, digits"),
    ("[mqtt]\ndiscovery_prefix = 'ha/#'\n", "[mqtt] discovery_prefix: expected a topic without"),
    ("[mqtt]\nhost = ''\n", "[mqtt] host: expected the broker's host name or IP address"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and expected in lines[0]


@pytest.mark.parametrize(
    "content",
    [b"[live]\nmodel = '\xff\xfe'\n", bytes(range(256)), "[live]\n".encode("utf-16")],
    ids=["latin-1", "binary", "utf-16"],
)
def test_an_undecodable_config_is_one_line_and_exit_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    done = run_cli("check", "--config", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"edge-agent: error: {path}: not UTF-8 text")
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


def test_check_into_a_closed_pipe_ends_quietly() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        f"{sys.executable} -m edge_agent check | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.startswith("# config:")
    assert done.stderr == "", done.stderr


def test_missing_file_from_the_real_command_line(tmp_path: Path) -> None:
    done = run_cli("check", "--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"edge-agent: error: config file {tmp_path / 'nope.toml'} not found"
    )
    assert "Traceback" not in done.stderr


def test_key_sources_in_order_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "gemini-api-key").write_text("cred-secret\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "GEMINI_API_KEY": "g", "GOOGLE_API_KEY": "o"}
    found = find_api_key(env)
    assert found is not None and found.value == "cred-secret"
    assert "cred-secret" not in repr(found)
    found = find_api_key({"GEMINI_API_KEY": "", "GOOGLE_API_KEY": "o"})
    assert found is not None and found.source == "GOOGLE_API_KEY"
    assert find_api_key({}) is None
    done = run_cli("check", env={"GEMINI_API_KEY": "very-secret-key"})
    assert done.returncode == 0
    assert "very-secret-key" not in done.stdout + done.stderr
    assert "from GEMINI_API_KEY (set, not shown)" in done.stdout


def test_check_warns_about_options_the_model_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    config = config_from_dict(
        {"live": {"model": "gemini-3.8-live", "thinking_level": "low", "response_modality": "text"}}
    )
    warnings = compatibility_warnings(config)
    assert (
        "gemini-3.8-live does not take thinking_level 'low'; it takes none: leave "
        'thinking_level = ""'
    ) in warnings
    assert any("audio only" in w for w in warnings)
    extended = {"model": "gemini-3.8-live-extended-thinking", "thinking_level": "minimal"}
    assert compatibility_warnings(config_from_dict({"live": extended})) == [
        "gemini-3.8-live-extended-thinking does not take thinking_level 'minimal'; "
        "it takes low, medium, high"
    ]
    assert compatibility_warnings(config_from_dict({"live": {"model": "my-future-model"}})) == []


def test_api_version_switches_to_v1alpha_when_a_feature_needs_it() -> None:
    assert effective_api_version(Config()) == "v1beta"
    for live in ({"affective_dialog": True}, {"proactive_audio": True}, {"token_command": "x"}):
        assert effective_api_version(config_from_dict({"live": live})) == "v1alpha"


# (TOML override, LiveConnectConfig attribute path, value, setup JSON path, value on the wire)
KEY_TABLE: list[tuple[dict[str, Any], str, Any, str, Any]] = [
    (
        {"live": {"model": "gemini-3.1-flash-live-preview"}},
        "",
        None,
        "model",
        "models/gemini-3.1-flash-live-preview",
    ),
    (
        {"live": {"response_modality": "text"}},
        "response_modalities.0",
        "TEXT",
        "generationConfig.responseModalities.0",
        "TEXT",
    ),
    (
        {"live": {"voice": "Kore"}},
        "speech_config.voice_config.prebuilt_voice_config.voice_name",
        "Kore",
        "generationConfig.speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName",
        "Kore",
    ),
    (
        {"live": {"language": "de-DE"}},
        "speech_config.language_code",
        "de-DE",
        "generationConfig.speechConfig.languageCode",
        "de-DE",
    ),
    (
        {"live": {"thinking_budget": 512}},
        "thinking_config.thinking_budget",
        512,
        "generationConfig.thinkingConfig.thinkingBudget",
        512,
    ),
    (
        {"live": {"thinking_level": "low"}},
        "thinking_config.thinking_level",
        "LOW",
        "generationConfig.thinkingConfig.thinkingLevel",
        "LOW",
    ),
    (
        {"live": {"include_thoughts": True}},
        "thinking_config.include_thoughts",
        True,
        "generationConfig.thinkingConfig.includeThoughts",
        True,
    ),
    (
        {"live": {"affective_dialog": True}},
        "enable_affective_dialog",
        True,
        "generationConfig.enableAffectiveDialog",
        True,
    ),
    (
        {"live": {"proactive_audio": True}},
        "proactivity.proactive_audio",
        True,
        "proactivity.proactiveAudio",
        True,
    ),
    (
        {"live": {"media_resolution": "high"}},
        "media_resolution",
        "MEDIA_RESOLUTION_HIGH",
        "generationConfig.mediaResolution",
        "MEDIA_RESOLUTION_HIGH",
    ),
    (
        {"live": {"system_instruction": "Be a pirate."}},
        "system_instruction.parts.0.text",
        "Be a pirate.",
        "systemInstruction.parts.0.text",
        "Be a pirate.",
    ),
    (
        {"live": {"input_transcription": True}},
        "input_audio_transcription",
        {},
        "inputAudioTranscription",
        {},
    ),
    (
        {"live": {"input_transcription": False}},
        "input_audio_transcription",
        None,
        "inputAudioTranscription",
        None,
    ),
    (
        {"live": {"output_transcription": True}},
        "output_audio_transcription",
        {},
        "outputAudioTranscription",
        {},
    ),
    (
        {"live": {"output_transcription": False}},
        "output_audio_transcription",
        None,
        "outputAudioTranscription",
        None,
    ),
    ({"live": {"session_resumption": True}}, "session_resumption", {}, "sessionResumption", {}),
    (
        {"live": {"session_resumption": False}},
        "session_resumption",
        None,
        "sessionResumption",
        None,
    ),
    (
        {"live": {"compression_trigger_tokens": 30000}},
        "context_window_compression.trigger_tokens",
        30000,
        "contextWindowCompression.triggerTokens",
        30000,
    ),
    (
        {"live": {"compression_target_tokens": 3000}},
        "context_window_compression.sliding_window.target_tokens",
        3000,
        "contextWindowCompression.slidingWindow.targetTokens",
        3000,
    ),
    (
        {"live": {"context_compression": False}},
        "context_window_compression",
        None,
        "contextWindowCompression",
        None,
    ),
    (
        {"turns": {"mode": "vad"}},
        "realtime_input_config.automatic_activity_detection.disabled",
        True,
        "realtimeInputConfig.automaticActivityDetection.disabled",
        True,
    ),
    (
        {"turns": {"mode": "push_to_talk"}, "gpio": {"button_pin": 17}},
        "realtime_input_config.automatic_activity_detection.disabled",
        True,
        "realtimeInputConfig.automaticActivityDetection.disabled",
        True,
    ),
    (
        {"turns": {"mode": "server_vad"}},
        "realtime_input_config.automatic_activity_detection.disabled",
        False,
        "realtimeInputConfig.automaticActivityDetection.disabled",
        False,
    ),
    (
        {"turns": {"mode": "server_vad", "start_sensitivity": "low"}},
        "realtime_input_config.automatic_activity_detection.start_of_speech_sensitivity",
        "START_SENSITIVITY_LOW",
        "realtimeInputConfig.automaticActivityDetection.startOfSpeechSensitivity",
        "START_SENSITIVITY_LOW",
    ),
    (
        {"turns": {"mode": "server_vad", "end_sensitivity": "low"}},
        "realtime_input_config.automatic_activity_detection.end_of_speech_sensitivity",
        "END_SENSITIVITY_LOW",
        "realtimeInputConfig.automaticActivityDetection.endOfSpeechSensitivity",
        "END_SENSITIVITY_LOW",
    ),
    (
        {"turns": {"mode": "server_vad", "prefix_padding_ms": 60}},
        "realtime_input_config.automatic_activity_detection.prefix_padding_ms",
        60,
        "realtimeInputConfig.automaticActivityDetection.prefixPaddingMs",
        60,
    ),
    (
        {"turns": {"mode": "server_vad", "silence_duration_ms": 800}},
        "realtime_input_config.automatic_activity_detection.silence_duration_ms",
        800,
        "realtimeInputConfig.automaticActivityDetection.silenceDurationMs",
        800,
    ),
    (
        {"turns": {"activity_handling": "no_interruption"}},
        "realtime_input_config.activity_handling",
        "NO_INTERRUPTION",
        "realtimeInputConfig.activityHandling",
        "NO_INTERRUPTION",
    ),
    ({"tools": {"google_search": True}}, "tools.0.google_search", {}, "tools.0.googleSearch", {}),
    (
        {"tools": {"code_execution": True}},
        "tools.0.code_execution",
        {},
        "tools.0.codeExecution",
        {},
    ),
]


def dig(value: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if value is None:
            return None
        if isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            value = getattr(value, part)
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_none=True)
    return getattr(value, "value", value)


@pytest.mark.parametrize(
    ("override", "sdk_path", "sdk_value", "wire_path", "wire_value"),
    KEY_TABLE,
    ids=[str(row[0]) for row in KEY_TABLE],
)
async def test_every_key_reaches_its_field_and_the_wire(
    start_emulator: Any,
    override: dict[str, Any],
    sdk_path: str,
    sdk_value: Any,
    wire_path: str,
    wire_value: Any,
) -> None:
    config = config_from_dict(override)
    live_config = build_live_config(config)
    if sdk_path:
        assert dig(live_config, sdk_path) == sdk_value
    # the emulator refuses what the chosen model refuses; a model it does not know takes all
    emulator = await start_emulator(any_model=True)
    model = config.live.model if "model" in override.get("live", {}) else "any-live-model"
    client = sdk_client(emulator, version=effective_api_version(config))
    async with client.aio.live.connect(model=model, config=live_config):
        pass
    assert dig(emulator.parsed_setups[-1], wire_path) == wire_value


async def test_function_declarations_arrive_as_plain_dicts(start_emulator: Any) -> None:
    declaration = {
        "name": "set_volume",
        "description": "Set the speaker volume.",
        "parameters_json_schema": {
            "type": "object",
            "properties": {"level_percent": {"type": "integer"}},
            "required": ["level_percent"],
        },
        "behavior": "NON_BLOCKING",
    }
    emulator = await start_emulator()
    config = build_live_config(Config(), [declaration])
    async with sdk_client(emulator).aio.live.connect(model="gemini-3.8-live", config=config):
        pass
    sent = emulator.parsed_setups[-1]["tools"][0]["functionDeclarations"][0]
    assert sent["name"] == "set_volume" and sent["behavior"] == "NON_BLOCKING"
    assert sent["parametersJsonSchema"]["properties"] == {"level_percent": {"type": "integer"}}


def _run_and_check(tmp_path: Path, text: str) -> tuple[Any, Any]:
    """`run` (WAV devices, no service) and `check` on the same config."""
    import numpy as np

    from tests.conftest import write_wav

    mic = write_wav(tmp_path / "mic.wav", np.zeros(16000, np.int16))
    path = tmp_path / "config.toml"
    path.write_text(
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp_path}/o.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n'
        '[live]\nendpoint = "https://127.0.0.1:9"\nmax_backoff_s = 0.5\n' + text
    )
    ran = run_cli("run", "--config", str(path), env={"GEMINI_API_KEY": "k"})
    return ran, run_cli("check", "--config", str(path))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[conversation]\nstart = "wake_word"\n[wake_word]\nmodels = ["okay_google"]\n',
            "[wake_word] models: 'okay_google' is neither a built-in model",
        ),
        (
            '[camera]\nsource = "files"\n',
            '[camera] path: source = "files" needs an image or a folder of images',
        ),
    ],
    ids=["wake-word", "camera-files"],
)
def test_check_refuses_what_run_refuses_with_the_same_line(
    tmp_path: Path, text: str, error: str
) -> None:
    ran, checked = _run_and_check(tmp_path, text)
    assert ran.returncode == 2 and checked.returncode == 2, (ran.stderr, checked.stderr)
    line = ran.stderr.splitlines()[-1]
    assert error in line
    assert checked.stderr.splitlines() == [line] and checked.stdout == ""


def test_check_warns_where_run_would_limp(tmp_path: Path) -> None:
    text = (
        '[live]\nmodel = "gemini-9-live"\n[tools]\nenabled = ["get_time", "weather"]\n'
        f'[camera]\nsource = "files"\npath = "{tmp_path}/no-pictures"\n'
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    checked = run_cli("check", "--config", str(path))
    assert checked.returncode == 0, checked.stderr
    warnings = checked.stderr.splitlines()
    assert all(w.startswith("edge-agent: warning: ") for w in warnings), warnings
    assert len(warnings) == 3, warnings
    model, tool, camera = sorted(warnings, key=lambda w: ("model" not in w, "tool" not in w))
    assert "'gemini-9-live' is not a known model" in model and "check --online" in model
    assert "gemini-3.8-live" in model  # the known ones are named
    assert "tool 'weather' is enabled but not installed" in tool and "get_time" in tool
    assert f"no images at {tmp_path}/no-pictures" in camera


def test_the_credentials_a_config_reads() -> None:
    servers = [
        {"name": "a", "url": "http://h/mcp", "headers": {"X": "credential:one credential:two"}},
        {"name": "b", "command": "x", "env": {"T": "credential:three"}},
    ]
    config = config_from_dict({"mcp": {"servers": servers}, "web": {"enabled": True}})
    assert config.credential_names() == ["one", "three", "two"]  # the page on loopback: none
    public = config_from_dict({"web": {"enabled": True, "address": "0.0.0.0"}})
    assert public.credential_names() == ["web-token"]
