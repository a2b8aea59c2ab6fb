"""What a person meets on a real Pi: the docs in the repository, the sandbox's /proc, the wiring,
the installer and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from tests.conftest import REPO, missing, read_log, run_cli, simulate_against, write_wav


def test_the_docs_are_in_the_repository_and_carry_every_config_key() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/architecture.md" in readme and "docs/interface.md" in readme
    assert "CONTRACT.md" not in readme and "ARCHITECTURE.md" not in readme
    interface = (REPO / "docs" / "interface.md").read_text()
    default = (REPO / "config" / "default.toml").read_text()
    assert f"```toml\n{default}```" in interface  # regenerate: see the markers in interface.md
    for link in re.findall(r"\]\(([^)#]+)\)", readme + interface):
        if not link.startswith("http"):
            base = REPO if link.startswith("docs/") else REPO / "docs"
            assert (base / link).exists() or (REPO / link).exists(), link


# The unit's /proc (ProcSubset=pid, ProtectProc=invisible) without systemd: a private PID and
# mount namespace, /proc mounted with subset=pid, and a Pi 4's device tree where a Pi has it.
DEVICE_TREE = "/sys/firmware/devicetree/base"
SANDBOX = (
    "mount -t proc -o subset=pid,hidepid=invisible proc /proc"
    " && mount -t tmpfs tmpfs /sys/firmware"
    f" && mkdir -p {DEVICE_TREE}/system"
    f" && printf 'Raspberry Pi 4 Model B Rev 1.5\\000' > {DEVICE_TREE}/model"
    f" && printf '\\000\\300\\061\\025' > '{DEVICE_TREE}/system/linux,revision'"  # c03115
    ' && test ! -e /proc/uptime && test ! -e /proc/cpuinfo && exec "$@"'
)


def in_sandbox(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        missing("needs root and unshare for the /proc sandbox")
    done = subprocess.run(
        ["unshare", "-m", "-p", "--fork", "--mount-proc", "sh", "-c", SANDBOX, "sh", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if "unshare failed" in done.stderr or "mount:" in done.stderr:
        missing(f"no namespaces here: {done.stderr.strip()}")
    return done


def test_a_missing_prerequisite_fails_in_ci_and_is_skipped_elsewhere(tmp_path: Path) -> None:
    """The /proc sandbox test with no unshare on PATH, run by pytest with and without CI set
    (CI services set CI=true): a green CI run has run every test."""
    sandbox_test = (
        "tests/test_field.py::test_default_tools_and_board_detection_work_under_the_units_proc"
    )
    summaries = {}
    for ci in ("true", "1", ""):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-n",
                "0",
                "-p",
                "no:cacheprovider",
                sandbox_test,
            ],
            cwd=REPO,
            env={**os.environ, "CI": ci, "PATH": str(tmp_path)},  # nothing on PATH
            capture_output=True,
            text=True,
            check=False,
        )
        summaries[ci] = done.stdout
    for ci in ("true", "1"):
        assert "1 failed" in summaries[ci] and "needs root and unshare" in summaries[ci]
    assert "1 skipped" in summaries[""], summaries[""]


PROBE = """
import json
from gpiozero.pins.local import LocalPiFactory
from edge_agent.gpio import teach_gpiozero
from edge_agent.tools.builtins import device_status, get_time

teach_gpiozero()


class Probe(LocalPiFactory):  # gpiozero's own board detection, as lgpio's factory uses it
    pass


print(json.dumps({"board": Probe().board_info.model, "status": device_status.function(),
                  "time": get_time.function()}))
"""


def test_default_tools_and_board_detection_work_under_the_units_proc() -> None:
    done = in_sandbox(sys.executable, "-c", PROBE)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["board"] == "4B"
    status = found["status"]
    assert status["model"] == "Raspberry Pi 4 Model B Rev 1.5"
    for key in ("load_1min", "uptime_hours", "memory_total_mb"):
        assert isinstance(status[key], int | float) and status[key] >= 0, (key, status)
    assert status.get("memory_available_mb") or status.get("memory_free_mb"), status
    assert found["time"]["date"]


async def test_device_status_answers_the_model_inside_the_sandbox(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    """The real command line inside the sandbox; the model asks for the device's status."""
    from edge_agent.emulator.scenario import Scenario, ToolCallStep, Turn

    scenario = Scenario(turns=[Turn(tool_call=ToolCallStep(name="device_status"), transcript="ok")])
    emulator = await start_emulator(scenario=scenario)
    done = await asyncio.to_thread(in_sandbox, *simulate_against(emulator, "--json"))
    assert done.returncode == 0, done.stderr
    responses = [
        response
        for entry in read_log(emulator)
        if entry["dir"] == "in"
        for response in entry["msg"].get("toolResponse", {}).get("functionResponses", [])
    ]
    assert len(responses) == 1, responses
    output = responses[0]["response"]
    assert "error" not in output, output
    assert output["output"]["uptime_hours"] >= 0


@pytest.mark.parametrize("board", ["respeaker", "voice-bonnet", "i2s-amp", "usb"])
def test_setup_pi_installs_named_pcms_and_leaves_the_default_alone(
    board: str, tmp_path: Path
) -> None:
    if not shutil.which("aplay"):
        missing("alsa-utils missing")
    script = str(REPO / "hardware" / "setup-pi.sh")
    args = ["sh", script, "--print-alsa", "--board", board, "--card", "Device"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "pcm.!default" not in done.stdout and "ctl.!default" not in done.stdout
    conf = tmp_path / "60-edge-agent.conf"
    conf.write_text(done.stdout)
    env = {**os.environ, "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{conf}"}
    listed = subprocess.run(["aplay", "-L"], capture_output=True, text=True, env=env, check=False)
    assert f"edge_mic\n    edge-agent microphone ({board}, shared)" in listed.stdout
    assert "edge_speaker\n" in listed.stdout
    taken = subprocess.run([*args, "--alsa-default"], capture_output=True, text=True, check=False)
    assert 'pcm.!default {\n    type asym\n    capture.pcm "edge_mic"' in taken.stdout


def test_setup_pi_refuses_an_unknown_board_in_one_line() -> None:
    script = str(REPO / "hardware" / "setup-pi.sh")
    done = subprocess.run(
        ["sh", script, "--board", "hat9000", "--print-alsa"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert (
        done.stderr == "setup-pi: unknown board 'hat9000' (respeaker, voice-bonnet, i2s-amp, usb)\n"
    )


SETUP_CONFIG = """
[web]
enabled = true
address = "0.0.0.0"
credential = "page-token"

[[mcp.servers]]
name = "ha"
url = "http://homeassistant.local:8123/api/mcp"
headers = { Authorization = "Bearer credential:ha-token" }

[[mcp.servers]]
name = "notes"
command = "/bin/true"
env = { NOTES_TOKEN = "credential:notes-token", ALSO = "credential:ha-token" }
"""


def setup_pi(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """hardware/setup-pi.sh under a root prefix: files only, with this venv's edge-agent."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(
        ["sh", str(REPO / "hardware" / "setup-pi.sh"), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, **env},
        check=False,
    )


def test_setup_pi_loads_every_credential_the_config_names(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        missing("systemd-analyze missing")
    config = tmp_path / "mine.toml"
    config.write_text(SETUP_CONFIG)
    root = tmp_path / "root"
    root.mkdir()
    secrets = {"HA_TOKEN": "ha", "NOTES_TOKEN": "notes", "PAGE_TOKEN": "p" * 16, "EXTRA_ONE": "x"}
    done = setup_pi(root, "--credential", "extra-one", str(config), GEMINI_API_KEY="g", **secrets)
    assert done.returncode == 0, done.stderr
    assert "pi,metrics,wake,mcp" in done.stdout  # MCP servers need the mcp extra
    units = root / "etc" / "systemd" / "system"
    dropin = units / "edge-agent.service.d" / "credentials.conf"
    names = ["extra-one", "ha-token", "notes-token", "page-token"]
    loaded = sorted(dropin.read_text().splitlines()[1:])
    assert loaded == [f"LoadCredential={name}:/etc/edge-agent/{name}" for name in names]
    for name in names:
        stored = root / "etc" / "edge-agent" / name
        assert stored.stat().st_mode & 0o777 == 0o600
        assert stored.read_text() == secrets[name.upper().replace("-", "_")] + "\n"

    # the unit with its drop-in, as systemd reads them (ExecStart= must exist to verify)
    verify = tmp_path / "verify"
    shutil.copytree(units, verify)
    unit = verify / "edge-agent.service"
    unit.write_text(
        re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={shutil.which('true')}", unit.read_text())
    )
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    with (verify / "edge-agent.service.d" / "credentials.conf").open("a") as broken:
        broken.write("NotAKey=1\n")  # the drop-in is read: this is seen
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert "NotAKey" in checked.stderr


def test_setup_pi_installs_home_assistant_and_names_a_missing_token(tmp_path: Path) -> None:
    usage = subprocess.run(
        ["sh", str(REPO / "hardware" / "setup-pi.sh"), "--help"], capture_output=True, text=True
    )
    assert "home-assistant" in usage.stderr
    root = tmp_path / "root"
    root.mkdir()
    done = setup_pi(root, "home-assistant", GEMINI_API_KEY="g")
    assert done.returncode == 2
    token = root / "etc" / "edge-agent" / "ha-token"
    assert done.stderr == (
        f"setup-pi: credential ha-token: put it in {token} (chmod 600) or set HA_TOKEN, "
        "then run again\n"
    )
    token.write_text("from-a-file\n")
    # again: the config and the key are kept; the profile's MQTT password is asked for next
    done = setup_pi(root, "home-assistant", MQTT_PASSWORD="m")
    assert done.returncode == 0, done.stderr
    assert "pi,metrics,wake,mcp,mqtt" in done.stdout  # MCP servers and MQTT: their extras
    dropin = root / "etc" / "systemd" / "system" / "edge-agent.service.d" / "credentials.conf"
    assert dropin.read_text() == (
        "[Service]\nLoadCredential=ha-token:/etc/edge-agent/ha-token\n"
        "LoadCredential=mqtt-password:/etc/edge-agent/mqtt-password\n"
    )
    assert token.read_text() == "from-a-file\n"


HEADER_PIN = {2: 3, 3: 5, 4: 7, 17: 11, 27: 13, 22: 15, 10: 19, 9: 21, 11: 23, 5: 29, 6: 31}
HEADER_PIN |= {13: 33, 19: 35, 26: 37, 14: 8, 15: 10, 18: 12, 23: 16, 24: 18, 25: 22, 8: 24}
HEADER_PIN |= {7: 26, 12: 32, 16: 36, 20: 38, 21: 40}
GROUND_PINS = {6, 9, 14, 20, 25, 30, 34, 39}
PIN_KEYS = ("button_pin", "led_pin", "rgb_pins", "privacy_led_pin", "ring")


def test_the_wiring_tables_match_the_shipped_profiles() -> None:
    import tomllib

    from edge_agent.config import config_from_dict

    text = (REPO / "hardware" / "wiring.md").read_text()
    boards = re.split(r"^## ", text, flags=re.M)[1:]
    names = [board.splitlines()[0] for board in boards]
    assert names == [
        "ReSpeaker 2-mic HAT",
        "Adafruit Voice Bonnet",
        "I2S microphone + MAX98357A amplifier",
        "USB speakerphone",
    ]
    for board in boards:
        profile_path = REPO / re.search(r"Profile: `(config/[\w-]+\.toml)`", board)[1]  # type: ignore[index]
        profile = tomllib.loads(profile_path.read_text()).get("gpio", {})
        rows = [line.split("|")[1:-1] for line in board.splitlines() if line.startswith("| ")]
        wired: dict[str, Any] = {}
        for part, setting, gpio, pin, wire, resistor in rows[1:]:
            key, value = tomllib.loads(setting.strip().strip("`")).popitem()
            wired[key] = value
            gpios = [int(g) for g in gpio.split(",")]
            assert [HEADER_PIN[g] for g in gpios] == [int(p) for p in pin.split(",")], part
            if key != "ring":
                assert gpios == (value if isinstance(value, list) else [value]), part
            grounds = {int(g) for g in re.findall(r"ground pin (\d+)", wire)}
            assert grounds <= GROUND_PINS, part
            if key in ("led_pin", "privacy_led_pin", "rgb_pins"):
                assert "Ω" in resistor, part  # an LED never goes on a pin without one
            if "*add*" in part:
                assert key not in profile, f"{part}: the profile has it already"
            else:
                assert profile.get(key) == value, f"{profile_path.name}: {key} != {value}"
        assert {key for key in profile if key in PIN_KEYS} <= set(wired), board.splitlines()[0]
        config_from_dict({"gpio": wired})  # every line of a table together is a valid config


def audio_config(tmp_path: Path, audio: str) -> str:
    path = tmp_path / "audio.toml"
    path.write_text(f"[audio]\n{audio}")
    return str(path)


def test_audio_on_alsa_file_pcms_hears_the_speech_and_plays_it_back(
    alsa_files: tuple[Path, Path], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    mic_raw, speaker_wav = alsa_files
    voice = speech("testing one two three, can you hear me", lead_s=0.3, gap_s=1.0)
    mic_raw.write_bytes(soxr.resample(voice, 16000, 48000).astype("<i2").tobytes())
    config = audio_config(
        tmp_path, 'input_device = "mic"\noutput_device = "speaker"\ninput_rate = 48000\n'
    )
    done = run_cli("test-audio", "--config", config, "--seconds", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "microphone: mic at 48000 Hz" in done.stdout
    assert "1 turn(s): 0.3" in done.stdout  # the gate heard the sentence where it is
    assert done.stdout.splitlines()[-1].startswith("ok:")
    with wave.open(str(speaker_wav)) as wav:
        rate = wav.getframerate()
        played = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64)
    windows = played[: len(played) // (rate // 20) * (rate // 20)].reshape(-1, rate // 20)
    loud_s = np.sum(np.sqrt(np.mean(windows**2, axis=1)) > 300) / 20
    assert 2.5 < loud_s < 6  # the sentence, then the one-second tone; no endless silence after
    end = int(np.nonzero(np.abs(played) > 300)[0][-1])  # an unpaced PCM pads silence after it
    spectrum = np.abs(np.fft.rfft(played[end - rate : end]))
    assert abs(np.argmax(spectrum) - 440) < 5  # the tone comes last (1 s window: 1 Hz bins)


@pytest.mark.parametrize("seconds", ["0", "-2", "61", "nan"])
def test_audio_names_the_seconds_it_takes(seconds: str) -> None:
    done = run_cli("test-audio", "--seconds", seconds)
    assert done.returncode == 2
    expected = f"edge-agent: error: --seconds: more than 0 and at most 60 (got {float(seconds):g})"
    assert done.stderr.splitlines() == [expected]


@pytest.mark.parametrize(
    ("audio", "problem"),
    [
        ('input_device = "mic"\n', "problem: no signal"),  # a muted capture: digital silence
        ('input_device = "mic"\ninput_rate = 768000\n', "refuses the sample rate"),
        ('input_device = "no such card"\n', "no audio input device matches 'no such card'"),
        ('output_device = "no such card"\n', "problem: speaker: no audio output device matches"),
    ],
    ids=["no-signal", "wrong-rate", "no-microphone", "no-speaker"],
)
def test_audio_says_plainly_what_is_wrong(
    alsa_files: tuple[Path, Path], tmp_path: Path, audio: str, problem: str
) -> None:
    alsa_files[0].write_bytes(bytes(48000 * 2))  # the ALSA mic reads one second of zeros
    done = run_cli("test-audio", "--config", audio_config(tmp_path, audio), "--seconds", "0.5")
    assert done.returncode == 2, done.stdout + done.stderr
    assert problem in done.stdout and "Traceback" not in done.stderr


def test_audio_on_wav_files_finds_clipping(
    speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    loud = np.clip(speech("this is far too loud").astype(np.int32) * 30, -32768, 32767)
    mic = write_wav(tmp_path / "loud.wav", loud)
    config = audio_config(
        tmp_path, f'input_device = "file:{mic}"\noutput_device = "file:{tmp_path}/out.wav"\n'
    )
    done = run_cli("test-audio", "--config", config)
    assert done.returncode == 2
    assert "problem: clipping" in done.stdout
    assert (tmp_path / "out.wav").stat().st_size > 24000 * 2  # still played back


def test_simulate_into_a_missing_directory_is_one_line_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "reply.wav"
    done = run_cli("simulate", "--output", str(target))
    assert done.returncode == 2
    assert done.stderr == f"edge-agent: error: --output: no directory {target.parent}\n"


def test_the_benchmark_names_what_it_misses_in_one_line() -> None:
    import importlib.util

    if importlib.util.find_spec("jack") is not None:
        pytest.skip("the [bench] extra is installed: python -m bench would run")
    done = subprocess.run(
        [sys.executable, "-m", "bench"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("python -m bench: error: JACK-Client")
    assert "pip install -e '.[bench]'" in line
