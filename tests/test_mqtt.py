"""Home Assistant over MQTT: `edge-agent run --emulator` against a real Mosquitto (started here
on a free loopback port, password required, no persistence), its topics read and its commands
sent by a second client as Home Assistant would. Waits are on the messages themselves; the
deadlines only bound a test that would otherwise hang."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
import trustme

from edge_agent.cli import main
from edge_agent.config import WebConfig
from edge_agent.config_sections import MqttConfig
from edge_agent.mqtt.discovery import Topics, entity_config, page_url, safe_name
from edge_agent.mqtt.entities import ENTITIES, STATE_LIMIT, Refused, Sources
from edge_agent.timers.schedule import Schedule
from tests.conftest import write_wav
from tests.test_footprint import run_observed
from tests.test_service import free_port

MOSQUITTO = Path("/usr/sbin/mosquitto")
USER, PASSWORD = "edge", "Tr0ub4dor-mqtt"
NODE = "testpi"
BASE = f"edge-agent/{NODE}"
DEADLINE_S = 60.0
ALWAYS = {"state", "reachable", "mute", "volume", "tokens_today"}
TIMERS = {"announce", "next_timer"}  # where [timers] is on (the default)
TIMERS_OFF = "[timers]\nenabled = false\n"
REMOTE = {"start_conversation", "end_conversation", "ask"}
TRANSCRIPTS = {"last_question", "last_answer"}
COMPONENT = {entity.key: entity.component for entity in ENTITIES}
COMMANDS = {f"{BASE}/{entity.key}/set" for entity in ENTITIES}


def until(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def config_topic(key: str) -> str:
    return f"homeassistant/{COMPONENT[key]}/{NODE}/{key}/config"


class Broker:
    """Debian's mosquitto on 127.0.0.1:port with a password file and no persistence."""

    def __init__(self, folder: Path, port: int, tls: bool = False) -> None:
        if not MOSQUITTO.exists() or not shutil.which("mosquitto_passwd"):
            pytest.skip("apt mosquitto missing")
        self.port = port
        self.log = folder / "mosquitto.log"
        passwords = folder / "passwd"
        subprocess.run(
            ["mosquitto_passwd", "-c", "-b", str(passwords), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            "persistence false\n"
            + ("user root\n" if os.geteuid() == 0 else "")  # else it cannot read tmp_path
        )
        self.ca = folder / "ca.pem"
        if tls:  # a certificate for 127.0.0.1 from a CA of the test's own
            authority = trustme.CA()
            authority.cert_pem.write_to_path(str(self.ca))
            issued = authority.issue_cert("127.0.0.1")
            issued.cert_chain_pems[0].write_to_path(str(folder / "broker.pem"))
            issued.private_key_pem.write_to_path(str(folder / "broker.key"))
            with self.conf.open("a") as conf:
                conf.write(
                    f"cafile {self.ca}\ncertfile {folder}/broker.pem\nkeyfile {folder}/broker.key\n"
                )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stderr=log)
        until(self._listening, "mosquitto listens")

    def _listening(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    retain: bool


class HomeAssistant:
    """The other client: subscribes to discovery and the agent's topics, publishes commands.
    Reconnects by itself after a broker restart."""

    def __init__(self, port: int, name: str = "home-assistant", ca: Path | None = None) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.markers = 0
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name)
        self.client.username_pw_set(USER, PASSWORD)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, _: Any, __: Any, code: Any, ___: Any) -> None:
        if code == 0:
            client.subscribe([("homeassistant/#", 1), (f"{BASE}/#", 1), ("test/#", 1)])

    def _on_message(self, client: paho.Client, _: Any, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.markers += message.topic == "test/subscribed"
            self.messages.append(
                Message(message.topic, message.payload.decode(errors="replace"), message.retain)
            )

    def wait_subscribed(self) -> None:
        """After this, every message published anywhere reaches this client."""
        seen = self.markers
        until(lambda: self._publish_marker(seen), "subscribed")

    def _publish_marker(self, seen: int) -> bool:
        if self.client.is_connected():
            self.client.publish("test/subscribed", "1")
        time.sleep(0.2)
        return self.markers > seen

    def find(self, topic: str, check: Callable[[str], bool], since: int = 0) -> Message | None:
        with self.lock:
            return next(
                (m for m in self.messages[since:] if m.topic == topic and check(m.payload)), None
            )

    def wait(self, topic: str, check: Callable[[str], bool] = bool, since: int = 0) -> Message:
        return until(lambda: self.find(topic, check, since), f"{topic} as expected")

    def mark(self) -> int:
        with self.lock:
            return len(self.messages)

    def state(self, topic: str) -> str | None:
        with self.lock:
            found = [m.payload for m in self.messages if m.topic == topic]
        return found[-1] if found else None

    def wait_state(self, key: str, value: str) -> None:
        until(lambda: self.state(f"{BASE}/{key}") == value, f"{key} = {value!r}")

    def send(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int) -> dict[str, str]:
    """What a client subscribing now is given: every retained message, as Home Assistant gets
    them when it starts (they arrive before the marker published after the subscription)."""
    ha = HomeAssistant(port, "late-subscriber")
    try:
        ha.wait_subscribed()
        return {m.topic: m.payload for m in ha.messages if m.retain}
    finally:
        ha.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path, free_port())
    running.start()
    yield running
    running.stop()


def start_agent(
    tmp_path: Path, port: int, mqtt: str = "", password: str = PASSWORD, level: str = "info"
) -> tuple[subprocess.Popen[str], Path]:
    mic = write_wav(tmp_path / "mic.wav", np.zeros(16000, np.int16))  # silence after it, too
    config = tmp_path / "config.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp_path}/out.wav"\n'
        "[conversation]\nchimes = false\nidle_timeout_s = 120\n"
        f'[service]\nstate_dir = "{tmp_path}/state"\nlog_level = "{level}"\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nusername = "{USER}"\n'
        f'password = "credential:mqtt-password"\nnode_id = "{NODE}"\nkeepalive_s = 10\n' + mqtt
    )
    log = tmp_path / "agent.log"
    env = {**os.environ, "MQTT_PASSWORD": password}
    command = [sys.executable, "-m", "edge_agent", "run", "--emulator", "--config", str(config)]
    with log.open("w") as errors:
        daemon = subprocess.Popen(command, stderr=errors, text=True, env=env)
    return daemon, log


def stop_agent(daemon: subprocess.Popen[str], log: Path) -> str:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        assert daemon.wait(15) in (0, -signal.SIGKILL)
    finally:
        daemon.kill()
        daemon.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert PASSWORD not in text
    return text


def test_discovery_commands_transcripts_reload_and_offline_on_sigterm(
    tmp_path: Path, broker: Broker
) -> None:
    ha = HomeAssistant(broker.port)
    ha.wait_subscribed()
    # a retained command left on the broker (by a careless tool) must not mute the agent
    ha.send(f"{BASE}/mute/set", "ON", retain=True)
    everything = "publish_transcripts = true\nremote_conversation = true\n"
    daemon, log = start_agent(tmp_path, broker.port, everything)
    try:
        ha.wait(f"{BASE}/availability", lambda p: p == "online")
        configs = {}
        for key in ALWAYS | REMOTE | TRANSCRIPTS | TIMERS:
            configs[key] = json.loads(ha.wait(config_topic(key)).payload)
        assert len({c["unique_id"] for c in configs.values()}) == len(configs)
        devices = [c["device"] for c in configs.values()]
        assert all(d == devices[0] for d in devices)
        assert devices[0]["identifiers"] == [f"edge_agent_{NODE}"]
        assert devices[0]["name"] == NODE and devices[0]["model"] and devices[0]["sw_version"]
        assert "configuration_url" not in devices[0]  # the page is off
        assert configs["mute"]["command_topic"] == f"{BASE}/mute/set"
        assert configs["volume"]["min"] == 0 and configs["volume"]["max"] == 100
        assert all(c["availability_topic"] == f"{BASE}/availability" for c in configs.values())
        for key, value in (("state", "idle"), ("mute", "OFF"), ("volume", "100")):
            ha.wait_state(key, value)
        ha.wait_state("reachable", "ON")
        ha.wait_state("tokens_today", "0")

        since = ha.mark()  # Home Assistant restarted: it asks for everything again
        ha.send("homeassistant/status", "online")
        for key in ALWAYS | REMOTE | TRANSCRIPTS:
            ha.wait(config_topic(key), since=since)
        ha.wait(f"{BASE}/state", lambda p: p == "idle", since)
        ha.wait(f"{BASE}/availability", lambda p: p == "online", since)
        quiet_from = ha.mark()

        ha.send(f"{BASE}/mute/set", "", retain=True)  # the retained command is gone
        ha.send(f"{BASE}/volume/set", "40")
        ha.wait_state("volume", "40")
        assert ha.state(f"{BASE}/mute") == "OFF"  # the retained "ON" came first, and was ignored
        ha.send(f"{BASE}/mute/set", "ON")
        ha.wait_state("state", "muted")
        ha.wait_state("mute", "ON")
        ha.send(f"{BASE}/mute/set", "OFF")
        ha.wait_state("state", "idle")

        ha.send(f"{BASE}/start_conversation/set", "PRESS")
        ha.wait_state("state", "listening")
        ha.send(f"{BASE}/mute/set", "ON")  # in a conversation the state stays "listening"
        ha.wait_state("mute", "ON")
        assert ha.state(f"{BASE}/state") == "listening"
        ha.send(f"{BASE}/mute/set", "OFF")
        ha.wait_state("mute", "OFF")
        ha.send(f"{BASE}/end_conversation/set", "PRESS")
        ha.wait_state("state", "idle")

        question = "What time is it? " + "Tell me slowly, please. " * 12
        assert len(question) > STATE_LIMIT
        ha.send(f"{BASE}/ask/set", question)
        asked = ha.wait(f"{BASE}/last_question")
        assert asked.payload == question.strip()[:STATE_LIMIT] and asked.retain is False
        topic = f"{BASE}/last_question/attributes"
        attributes = json.loads(ha.wait(topic, lambda p: json.loads(p)["turn"] > 0).payload)
        assert attributes["text"] == question.strip()
        assert "time" in ha.wait(f"{BASE}/last_answer").payload  # the emulator ran get_time
        ha.wait(f"{BASE}/tokens_today", lambda p: int(p) > 0)
        ha.wait_state("state", "idle")

        # retained states go out on change only: never the same payload twice in a row
        changes = ha.messages[quiet_from:]
        for topic in {m.topic for m in changes if m.topic.startswith(BASE)} - COMMANDS:
            payloads = [m.payload for m in changes if m.topic == topic]
            assert all(a != b for a, b in itertools.pairwise(payloads)), topic

        # switched off in the config: removed from Home Assistant, and the transcripts with them
        config = tmp_path / "config.toml"
        config.write_text(config.read_text().replace(everything, "") + TIMERS_OFF)
        since = ha.mark()
        daemon.send_signal(signal.SIGHUP)
        for key in REMOTE | TRANSCRIPTS | TIMERS:
            ha.wait(config_topic(key), lambda p: p == "", since)
        ha.wait(f"{BASE}/last_answer", lambda p: p == "", since)
        ha.wait(f"{BASE}/next_timer", lambda p: p == "", since)
        ha.wait(f"{BASE}/availability", lambda p: p == "online", since)
        kept = retained(broker.port)
        assert not {config_topic(key) for key in REMOTE | TRANSCRIPTS | TIMERS} & set(kept)
        assert {config_topic(key) for key in ALWAYS} <= set(kept)
        assert f"{BASE}/last_question" not in kept
        assert kept[f"{BASE}/volume"] == "100"  # a reload starts the volume afresh

        since = ha.mark()
        daemon.send_signal(signal.SIGTERM)
        ha.wait(f"{BASE}/availability", lambda p: p == "offline", since)
        assert daemon.wait(15) == 0
        assert retained(broker.port)[f"{BASE}/availability"] == "offline"
    finally:
        text = stop_agent(daemon, log)
        ha.close()
    assert text.count("mqtt: connected to") == 2  # at start and after the reload


def test_announcements_and_the_next_timer(tmp_path: Path, broker: Broker) -> None:
    ha = HomeAssistant(broker.port)
    ha.wait_subscribed()
    announce = f"{BASE}/announce/set"
    ha.send(announce, "An old retained announcement", retain=True)  # must never be read out
    everything = "publish_transcripts = true\nremote_conversation = true\n"
    daemon, log = start_agent(tmp_path, broker.port, everything)
    try:
        ha.wait(f"{BASE}/availability", lambda p: p == "online")
        notify = json.loads(ha.wait(config_topic("announce")).payload)
        assert config_topic("announce") == f"homeassistant/notify/{NODE}/announce/config"
        assert notify["command_topic"] == announce and "state_topic" not in notify
        assert notify["device"]["identifiers"] == [f"edge_agent_{NODE}"]
        sensor = json.loads(ha.wait(config_topic("next_timer")).payload)
        assert sensor["device_class"] == "timestamp"
        assert sensor["state_topic"] == f"{BASE}/next_timer"
        assert sensor["json_attributes_topic"] == f"{BASE}/next_timer/attributes"
        ha.wait_state("next_timer", "None")  # Home Assistant's "unknown"
        none = json.loads(ha.wait(f"{BASE}/next_timer/attributes").payload)
        assert none["count"] == 0 and none["label"] is None and none["seconds_left"] is None

        # what Home Assistant's notify.send_message publishes: the text, not retained
        ha.send(announce, "", retain=True)  # the retained one deleted (an empty message)
        ha.send(announce, "The washing machine is done.")
        ha.wait(f"{BASE}/last_answer", lambda p: p == "The washing machine is done.")
        ha.wait_state("state", "idle")

        since = ha.mark()
        for bad in ("   ", "x" * 1001, b"\xff\xfe washing"):  # each one log line, nothing else
            ha.send(announce, bad)
        until(lambda: len(refusals(log, "announce")) == 4, "four refusals")

        # a timer set by a typed question, then cancelled: the sensor follows each
        ha.send(f"{BASE}/ask/set", "Set a timer for 300 seconds")
        due = ha.wait(f"{BASE}/next_timer", lambda p: p != "None", since).payload
        left = (datetime.fromisoformat(due) - datetime.now().astimezone()).total_seconds()
        assert 290 < left <= 301, due  # an aware timestamp, as Home Assistant needs
        attributes_topic = f"{BASE}/next_timer/attributes"  # published just after the state
        counted = ha.wait(attributes_topic, lambda p: json.loads(p)["count"] == 1, since).payload
        attributes = json.loads(counted)
        assert attributes["kind"] == "timer"
        assert 290 < attributes["seconds_left"] <= 300 and attributes["label"]
        ha.wait_state("state", "idle")
        ha.send(f"{BASE}/ask/set", "Cancel the timer")
        ha.wait_state("next_timer", "None")
        ha.wait_state("state", "idle")

        # one that rings: gone from the sensor when it falls due
        since = ha.mark()
        ha.send(f"{BASE}/ask/set", "Set a timer for 3 seconds")
        ha.wait(f"{BASE}/next_timer", lambda p: p != "None", since)
        ha.wait(f"{BASE}/next_timer", lambda p: p == "None", since)
        rang_now = ha.wait(attributes_topic, lambda p: json.loads(p)["ringing"] == 1, since)
        rang = json.loads(rang_now.payload)
        assert rang["count"] == 0 and rang["label"] is None
        until(lambda: "ringing" in log.read_text(), "the timer rang", 10)
    finally:
        text = stop_agent(daemon, log)
        ha.close()
    answers = [m.payload for m in ha.messages if m.topic == f"{BASE}/last_answer" and m.payload]
    assert sum("washing" in answer for answer in answers) == 1, answers
    assert not any("retained" in answer for answer in answers), answers
    refused = refusals(log, "announce")  # the deleted retained one, blank, too long, not UTF-8
    assert len(refused) == 4, refused
    assert all("1..1000 characters" in line for line in refused[:3]), refused
    assert "not UTF-8" in refused[3]
    assert text.count('agent "The washing machine is done."') == 1  # the one announcement


def refusals(log: Path, key: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if f"mqtt: {key} ignored" in line]


def test_broker_down_at_start_restarted_then_the_agent_killed(tmp_path: Path) -> None:
    broker = Broker(tmp_path, free_port())
    daemon, log = start_agent(tmp_path, broker.port, level="debug")
    ha = HomeAssistant(broker.port)
    try:
        until(lambda: "still unreachable" in log.read_text(), "a second attempt")
        broker.start()
        ha.wait(f"{BASE}/availability", lambda p: p == "online")
        ha.wait(config_topic("state"))
        assert daemon.poll() is None

        broker.stop()  # no persistence: the retained discovery goes with it
        until(lambda: "lost the" in log.read_text(), "the agent notices")
        since = ha.mark()
        broker.start()
        for key in ALWAYS:
            ha.wait(config_topic(key), since=since)
        ha.wait(f"{BASE}/availability", lambda p: p == "online", since)
        ha.wait(f"{BASE}/state", lambda p: p == "idle", since)

        since = ha.mark()
        daemon.kill()  # no goodbye: the broker publishes the last will
        ha.wait(f"{BASE}/availability", lambda p: p == "offline", since)
        assert retained(broker.port)[f"{BASE}/availability"] == "offline"
    finally:
        text = stop_agent(daemon, log)
        ha.close()
        broker.stop()
    warnings = [line for line in text.splitlines() if "WARNING" in line and "mqtt" in line]
    assert len(warnings) == 2, warnings  # one per outage: down at start, then the restart
    assert "cannot reach the MQTT broker" in warnings[0] and "Connection refused" in warnings[0]
    assert "lost the MQTT broker" in warnings[1] and "the connection closed" in warnings[1]


def test_a_refused_login_is_one_line_and_the_agent_runs_on(tmp_path: Path, broker: Broker) -> None:
    wrong = "not-the-Password-42"
    daemon, log = start_agent(tmp_path, broker.port, password=wrong, level="debug")
    try:
        line = until(
            lambda: next((x for x in log.read_text().splitlines() if "refused the" in x), None),
            "the refusal is logged",
        )
        assert "MQTT" in line and "Not authorized" in line and USER in line
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0  # it ran on, and stops as it should
    finally:
        text = stop_agent(daemon, log)
    assert [x for x in text.splitlines() if "refused the" in x] == [line]
    assert wrong not in text and "stopping" in text


def test_tls_to_a_broker_with_a_certificate_of_its_own(tmp_path: Path) -> None:
    broker = Broker(tmp_path, free_port(), tls=True)
    broker.start()
    ha = HomeAssistant(broker.port, ca=broker.ca)
    tls = f'tls = true\nca_file = "{broker.ca}"\n'
    daemon, log = start_agent(tmp_path, broker.port, tls)
    try:
        ha.wait(f"{BASE}/availability", lambda p: p == "online")
        ha.send(f"{BASE}/volume/set", "25")
        ha.wait_state("volume", "25")
    finally:
        stop_agent(daemon, log)
        ha.close()
        broker.stop()


def run_cli_hiding(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter where `module` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from edge_agent.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("edge-agent: error:")]


def test_enabled_without_aiomqtt_or_its_password_is_exit_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[live]\nendpoint = "https://127.0.0.1:9"\n'
        '[mqtt]\nenabled = true\nusername = "ha"\npassword = "credential:mqtt-password"\n'
    )
    missing = run_cli_hiding(
        "aiomqtt", "run", "--config", str(config), GEMINI_API_KEY="k", MQTT_PASSWORD=PASSWORD
    )
    assert missing.returncode == 2
    assert errors(missing.stderr) == [
        "edge-agent: error: [mqtt] enabled = true needs aiomqtt: pip install 'edge-agent[mqtt]'"
    ]
    no_password = run_cli_hiding("-", "run", "--config", str(config), GEMINI_API_KEY="k")
    assert no_password.returncode == 2
    [line] = errors(no_password.stderr)
    assert "[mqtt] password: credential mqtt-password not found" in line and "MQTT_PASSWORD" in line


def test_check_says_where_it_connects_and_whether_the_password_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[mqtt]\nenabled = true\nhost = "broker.lan"\ntls = true\nnode_id = "hall"\n'
        'username = "ha"\npassword = "credential:mqtt-password"\n'
    )
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "# mqtt: broker.lan:8883 (tls) as hall, discovery under homeassistant/" in out
    assert "#   credential mqtt-password not found" in out and "MQTT_PASSWORD" in out
    monkeypatch.setenv("MQTT_PASSWORD", PASSWORD)
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "#   credential mqtt-password: set, not shown" in out and PASSWORD not in out


def test_aiomqtt_loads_only_after_ready_and_only_when_enabled(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    closed = free_port()  # no broker: the agent starts and retries anyway
    mqtt = f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {closed}\n'
    at_ready, _, at_exit = run_observed(tmp_path, notify_socket, extra=mqtt, wait_for="mqtt:")
    assert "edge_agent.mqtt" in at_ready
    assert not {m for m in at_ready if m.split(".")[0] in ("aiomqtt", "paho")}
    assert "aiomqtt" in at_exit


# ---- the payloads, without a broker --------------------------------------------------------


def test_discovery_payloads_carry_ids_device_origin_and_topics() -> None:
    topics = Topics("homeassistant", "kitchen")
    device = {"identifiers": ["edge_agent_kitchen"], "name": "kitchen"}
    by_key = {entity.key: entity for entity in ENTITIES}
    mute = entity_config(by_key["mute"], topics, device)
    assert mute["unique_id"] == "edge_agent_kitchen_mute"
    assert mute["state_topic"] == "edge-agent/kitchen/mute"
    assert mute["command_topic"] == "edge-agent/kitchen/mute/set"
    assert mute["availability_topic"] == "edge-agent/kitchen/availability"
    assert mute["origin"]["name"] == "edge-agent" and mute["device"] is device
    state = entity_config(by_key["state"], topics, device)
    assert "command_topic" not in state and "idle" in state["options"]
    button = entity_config(by_key["start_conversation"], topics, device)
    assert "state_topic" not in button
    assert topics.config(by_key["ask"]) == "homeassistant/text/kitchen/ask/config"
    notify = entity_config(by_key["announce"], topics, device)  # Home Assistant's MQTT notify
    assert topics.config(by_key["announce"]) == "homeassistant/notify/kitchen/announce/config"
    assert notify["command_topic"] == "edge-agent/kitchen/announce/set"
    assert "state_topic" not in notify and "retain" not in notify
    assert safe_name("Kitchen Pi.local") == "kitchen_pi_local" and safe_name("...") == "edge_agent"
    assert MqttConfig(tls=True).broker_port == 8883 and MqttConfig().broker_port == 1883


class RefusingTimers:
    """Timers whose budget is spent: announce says why, and nothing is queued."""

    def __init__(self) -> None:
        self.schedule = Schedule(None)
        self.ringing: list[Any] = []
        self.asked: list[tuple[str, bool]] = []

    def announce(self, text: str, with_chime: bool = True) -> str:
        self.asked.append((text, with_chime))
        return "the daily token budget is spent"


def test_an_announcement_is_trimmed_checked_and_a_refusal_raised() -> None:
    timers = RefusingTimers()
    sources = Sources(None, None, True, timers=timers)  # type: ignore[arg-type]
    assert sources.next_due == "None" and sources.next_timer["count"] == 0
    announce = next(entity for entity in ENTITIES if entity.key == "announce")
    assert announce.command is not None
    with pytest.raises(Refused, match="budget is spent"):
        announce.command(sources, "  Dinner is ready.\n")
    assert timers.asked == [("Dinner is ready.", True)]
    for bad in ("", " \n", "x" * 1001):
        with pytest.raises(Refused, match=r"1\.\.1000 characters"):
            announce.command(sources, bad)
    assert len(timers.asked) == 1


def test_the_page_is_the_configuration_url_only_where_others_reach_it() -> None:
    assert page_url(WebConfig(), "broker", 1883) is None  # off
    assert page_url(WebConfig(enabled=True), "broker", 1883) is None  # loopback
    fixed = WebConfig(enabled=True, address="192.168.1.20", port=8780)
    assert page_url(fixed, "broker", 1883) == "http://192.168.1.20:8780/"
    v6 = WebConfig(enabled=True, address="fd00::20", port=8780)
    assert page_url(v6, "broker", 1883) == "http://[fd00::20]:8780/"
    everywhere = WebConfig(enabled=True, address="0.0.0.0", port=8780)
    # a broker on this device: the address that faces it is loopback, so the host's name
    expected = f"http://{socket.gethostname()}.local:8780/"
    assert page_url(everywhere, "127.0.0.1", 1883) == expected
