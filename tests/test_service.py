"""The agent as a systemd service: sd_notify over a real socket, signals, the unit, logging,
metrics."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.logs import configure_logging
from edge_agent.service import Notifier, Watchdog
from tests.conftest import REPO, missing, run_cli, write_wav


def read_until(sock: socket.socket, wanted: str, seen: list[str], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message:
            return message
    raise AssertionError(f"{wanted} never came: {seen}")


UNREACHABLE = "https://127.0.0.1:9"


def start_daemon(tmp_path: Path, config_text: str, **env: str) -> subprocess.Popen[str]:
    silence = write_wav(tmp_path / "mic.wav", np.zeros(16000 * 60, np.int16))
    if "[live]" not in config_text:  # no test reaches the internet: a closed local port
        config_text = f'[live]\nendpoint = "{UNREACHABLE}"\n' + config_text
    config = tmp_path / "config.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{silence}"\noutput_device = "file:{tmp_path}/o.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n' + config_text
    )
    full_env = {
        **os.environ,
        "GEMINI_API_KEY": "k",
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "400000",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        env=full_env,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ready_status_watchdog_then_stopping_on_sigterm(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    daemon = start_daemon(tmp_path, "")
    seen: list[str] = []
    try:
        # the start-up check found no service: the state says so from the start
        assert read_until(notify_socket, "READY=1", seen) == "READY=1\nSTATUS=offline"
        for _ in range(3):
            read_until(notify_socket, "WATCHDOG=1", seen)
        daemon.send_signal(signal.SIGTERM)
        read_until(notify_socket, "STOPPING=1", seen)
        assert daemon.wait() == 0  # the suite's timeout is the only limit
    finally:
        daemon.kill()
        _, errors = daemon.communicate()
    assert "Traceback" not in errors


def test_ready_does_not_wait_for_the_network(tmp_path: Path, notify_socket: socket.socket) -> None:
    unreachable = '[live]\nendpoint = "https://127.0.0.1:9"\nmax_backoff_s = 0.5\n'
    daemon = start_daemon(tmp_path, unreachable + '[conversation]\nstart = "always"\n')
    seen: list[str] = []
    try:
        read_until(notify_socket, "READY=1", seen)
        read_until(notify_socket, "STATUS=offline", seen)  # retrying; still alive and fed
        read_until(notify_socket, "WATCHDOG=1", seen)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0


def test_sighup_reloads_and_a_bad_reload_keeps_the_running_config(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    daemon = start_daemon(tmp_path, "")
    seen: list[str] = []
    config = tmp_path / "config.toml"
    try:
        read_until(notify_socket, "READY=1", seen)
        config.write_text(config.read_text() + "[vad]\naggressiveness = 3\n")
        daemon.send_signal(signal.SIGHUP)
        read_until(notify_socket, "RELOADING=1", seen)
        read_until(notify_socket, "READY=1", seen)
        config.write_text(config.read_text() + "[vad]\nagressiveness = 1\n")  # broken
        daemon.send_signal(signal.SIGHUP)
        refused_at = len(seen)
        for _ in range(3):
            read_until(notify_socket, "WATCHDOG=1", seen)
        assert daemon.poll() is None  # still running, on the old config, untouched
        assert not any("RELOADING" in message for message in seen[refused_at:])
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        _, errors = daemon.communicate()
    assert "configuration reloaded" in errors and "reload refused" in errors


async def test_the_watchdog_stops_when_the_loop_is_blocked_or_a_callback_dies(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    sent: list[float] = []

    class StampingNotifier(Notifier):
        def notify(self, *lines: str) -> bool:
            sent.append(time.monotonic())
            return super().notify(*lines)

    notifier = StampingNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    alive = {"speaker": True}
    watchdog = asyncio.create_task(
        Watchdog(notifier, {"speaker": lambda: alive["speaker"]}, interval_s=0.05).run()
    )
    await asyncio.sleep(0.3)
    blocked_at = time.monotonic()
    time.sleep(0.6)  # the event loop is stuck
    await asyncio.sleep(0.3)
    alive["speaker"] = False  # the speaker thread stopped moving audio
    died_at = time.monotonic()
    await asyncio.sleep(0.3)
    watchdog.cancel()
    assert notify_socket.recv(64) == b"WATCHDOG=1"  # real datagrams
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert max(gaps) >= 0.55  # nothing while the loop was blocked
    assert any(
        a <= blocked_at + 0.01 and b >= blocked_at + 0.6 for a, b in itertools.pairwise(sent)
    )
    assert all(stamp <= died_at + 0.06 for stamp in sent)  # none once a callback is dead


def test_notify_without_a_socket_is_a_no_op() -> None:
    assert Notifier({}).notify("READY=1") is False
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_s == 30.0


def test_logging_json_and_no_timestamps_under_journald(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    configure_logging("json", "info")
    logging.getLogger("edge_agent.test").info("turn %d", 3, extra={"first_audio_ms": 512.0})
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry == {
        "level": "info",
        "logger": "edge_agent.test",
        "msg": "turn 3",
        "first_audio_ms": 512.0,
    }
    configure_logging("text", "warning")
    logging.getLogger("edge_agent.test").warning("offline")
    assert capsys.readouterr().err.strip() == "WARNING edge_agent.test: offline"
    monkeypatch.delenv("JOURNAL_STREAM")
    configure_logging("text", "info")
    logging.getLogger("edge_agent.test").info("x")
    assert capsys.readouterr().err[:2] == "20"  # a timestamp outside journald
    configure_logging("text", "warning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_metrics_endpoint(tmp_path: Path) -> None:
    from edge_agent.assembly import assemble
    from edge_agent.audio.playback import Speaker
    from edge_agent.config import Config
    from edge_agent.credentials import Credential
    from edge_agent.events import BadServerMessage, Disconnected, TurnLost, Usage
    from edge_agent.metrics import start_metrics

    speaker = Speaker(24000)
    parts = assemble(Config(), speaker, time.monotonic, lambda: Credential("k", "t"), tmp_path)
    port = free_port()
    service = Config().service
    metrics = start_metrics(parts.agent, parts.conversation.budget, port, service.metrics_address)
    assert metrics is not None
    assert metrics.server.server_address[0] == "127.0.0.1"  # not every interface by default
    parts.agent.on_live_event(Usage(100, 20, 120, {"AUDIO": 110, "TEXT": 10}))
    parts.agent.on_live_event(Disconnected("1011 Internal error occurred."))
    parts.agent.on_live_event(BadServerMessage("AttributeError"))
    parts.agent.on_live_event(TurnLost("offline", "not sent within 12 s"))
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    )
    metrics.close()
    assert 'edge_agent_tokens_total{modality="audio"} 110.0' in body
    assert 'edge_agent_reconnects_total{cause="1011 Internal error occurred."} 1.0' in body
    assert "edge_agent_tokens_today 120.0" in body
    assert 'edge_agent_turns_lost_total{cause="offline"} 1.0' in body
    assert "edge_agent_bad_server_messages_total 1.0" in body
    assert 'edge_agent_state{edge_agent_state="idle"} 1.0' in body
    assert "edge_agent_turn_first_audio_seconds_bucket" in body


def test_the_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        missing("systemd-analyze missing")
    unit = tmp_path / "edge-agent.service"
    text = (REPO / "systemd" / "edge-agent.service").read_text()
    unit.write_text(
        "\n".join(
            f"ExecStart={shutil.which('true')}" if line.startswith("ExecStart=") else line
            for line in text.splitlines()
        )
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--threshold=20",
            str(REPO / "systemd" / "edge-agent.service"),
        ],
        capture_output=True,
        text=True,
    )
    assert security.returncode == 0, security.stdout[-400:]
    score = float(
        security.stdout.split("Overall exposure level for edge-agent.service:")[1].split()[0]
    )
    assert score <= 2.0
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "RestartPreventExitStatus=2",
        "LoadCredential=gemini-api-key:",
        "StateDirectory=edge-agent",
        "DeviceAllow=char-gpiochip rw",
        "network-online.target time-sync.target",
        "DeviceAllow=char-dma_heap rw",  # picamera2's buffers (/dev/dma_heap/* is a directory)
        "ProcSubset=pid",  # device_status and gpiozero cope: see tests/test_field.py
    ):
        assert needed in text
    assert "DeviceAllow=/dev/dma_heap " not in text  # a directory allows nothing
    if "@resources" in text.split("SystemCallFilter=~", 1)[1].splitlines()[0]:
        assert "RestrictRealtime=yes" in text  # sched_setscheduler is filtered anyway


def test_the_shell_scripts_pass_shellcheck() -> None:
    if not shutil.which("shellcheck"):
        missing("shellcheck missing")
    scripts = [REPO / "hardware" / "setup-pi.sh", REPO / "hardware" / "bootstrap.sh"]
    done = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_one_turn_run_logs_both_sides_and_keeps_its_state_private(
    tmp_path: Path, speech: Any
) -> None:
    """The per-turn log line, no state noise at info, and state files 0600 in a 0700 directory
    created by the agent itself (no systemd StateDirectory=, a umask of 022)."""
    mic = write_wav(tmp_path / "mic.wav", speech("what time is it", lead_s=0.3, gap_s=8.0))
    state = tmp_path / "var" / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp_path}/o.wav"\n'
        f'[service]\nstate_dir = "{state}"\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--emulator", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert daemon.stderr is not None
    lines: list[str] = []
    try:
        for line in daemon.stderr:  # the WAV ends in ~10 s; the turn is logged before that
            lines.append(line)
            if " turn 1:" in line:
                break
        for _ in range(250):  # the resumption handle follows turnComplete
            if (state / "resumption.json").exists() and (state / "tokens.json").exists():
                break
            time.sleep(0.02)
    finally:
        daemon.send_signal(signal.SIGTERM)
        lines += daemon.communicate(timeout=15)[1].splitlines()
    turns = [line for line in lines if " turn 1:" in line]
    assert len(turns) == 1, lines
    assert 'user "(' in turns[0] and 'agent "' in turns[0]  # the emulator's transcripts
    assert not [line for line in lines if "state:" in line]
    assert state.stat().st_mode & 0o777 == 0o700
    assert {"resumption.json", "tokens.json"} <= {f.name for f in state.iterdir()}
    for saved in state.iterdir():
        assert saved.stat().st_mode & 0o777 == 0o600, saved


@pytest.mark.parametrize(
    ("config_text", "env", "error"),
    [
        (  # the devices are open when the privacy LED is found missing
            "[gpio]\nprivacy_led_pin = 26\nrequired = true\n",
            {"GPIOZERO_PIN_FACTORY": "nowhere"},
            "privacy LED on GPIO26 unavailable",
        ),
        (
            "[gpio]\nbutton_pin = 17\nrequired = true\n",
            {"GPIOZERO_PIN_FACTORY": "nowhere"},
            "button on GPIO17 unavailable",
        ),
        (
            '[conversation]\nstart = "wake_word"\n[wake_word]\nmodels = ["okay_google"]\n',
            {},
            "okay_google",
        ),
        ('[web]\nenabled = true\naddress = "0.0.0.0"\n', {}, "[web] address"),
        ("", {"GEMINI_API_KEY": ""}, "no Gemini API key"),
        ("", {"SPEAKER": "/nowhere/o.wav"}, "audio device: [Errno 2]"),
        ("", {"MIC": "/nowhere/mic.wav"}, "microphone: input WAV /nowhere/mic.wav not found"),
    ],
)
def test_every_exit_2_of_run_ends_with_its_one_line(
    tmp_path: Path, config_text: str, env: dict[str, str], error: str
) -> None:
    """With a WAV microphone and a WAV speaker: nothing follows the one line (no Wave_write
    complaining at exit about a file closed under it, no traceback)."""
    env = dict(env)
    mic = env.pop("MIC", str(write_wav(tmp_path / "mic.wav", np.zeros(16000, np.int16))))
    speaker = env.pop("SPEAKER", f"{tmp_path}/o.wav")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{speaker}"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n[live]\nendpoint = "{UNREACHABLE}"\n'
        + config_text
    )
    done = run_cli("run", "--config", str(config), env={"GEMINI_API_KEY": "k", **env})
    assert done.returncode == 2, done.stderr
    *_, last = done.stderr.rstrip("\n").splitlines()
    assert last.startswith("edge-agent: error: ") and error in last, done.stderr
    assert done.stderr.count("edge-agent: error:") == 1, done.stderr


def test_ctrl_c_ends_run_with_130_and_sigterm_with_0(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        daemon = start_daemon(tmp_path, "")
        try:
            read_until(notify_socket, "READY=1", [])
            daemon.send_signal(signum)
            read_until(notify_socket, "STOPPING=1", [])
            assert daemon.wait(15) == code, signum
        finally:
            daemon.kill()
            _, errors = daemon.communicate()
        assert "Traceback" not in errors and "KeyboardInterrupt" not in errors
