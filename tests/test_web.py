"""The local page and event stream: the daemon on the emulator driven through real headless
Chromium and a real WebSocket client; the credential, Origin and Host rules over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from edge_agent.agent import TurnRecord
from edge_agent.assembly import assemble
from edge_agent.audio.capture import WavMicrophone
from edge_agent.audio.playback import Speaker, WavOutput
from edge_agent.config import WebConfig
from edge_agent.credentials import Credential
from edge_agent.errors import UserError
from edge_agent.web.auth import required_token
from edge_agent.web.server import start_web
from tests.conftest import missing, read_log, run_cli, write_wav
from tests.test_service import free_port
from tests.test_simulate import against, loud_spans

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
LEAD_S = 10.0  # silence before the spoken turn: the page and the stream connect meanwhile
QUESTION = "What is the weather like today?"
SUMMARY_FIELDS = set(TurnRecord(1, start_s=0.0).summary())  # as in `simulate --json`


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what or check}")


class Recorder(threading.Thread):
    """Every message of /events, from an aiohttp client on its own loop."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.messages: list[dict[str, Any]] = []
        self.connected = threading.Event()

    def run(self) -> None:
        asyncio.run(self._listen())

    async def _listen(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            self.connected.set()
            async for message in ws:
                self.messages.append(json.loads(message.data))


@dataclass
class Running:
    url: str
    daemon: subprocess.Popen[str]
    output: Path
    recorder: Recorder
    driver: Any
    states: list[str] = field(default_factory=list)


def browser(size: str = "800,480") -> Any:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing("apt chromium chromium-driver missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager contacts nothing
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp(prefix='edge-agent-chromium-')}",
        f"--window-size={size}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    width, height = map(int, size.split(","))
    driver.execute_cdp_cmd(  # the viewport itself, not the window, at the kiosk's size
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, speech: Callable[..., np.ndarray]
) -> Iterator[Running]:
    """`edge-agent run --emulator` with a WAV microphone (one spoken question after LEAD_S),
    a WAV speaker and the page on; a browser and an event-stream client connected."""
    tmp = tmp_path_factory.mktemp("web")
    mic = write_wav(tmp / "mic.wav", speech("what is the time", lead_s=LEAD_S, gap_s=60))
    port = free_port()
    config = tmp / "config.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp}/out.wav"\n'
        f'[conversation]\nchimes = false\nidle_timeout_s = 120\n'
        f'[service]\nstate_dir = "{tmp}/state"\n'
        f"[web]\nenabled = true\nport = {port}\n"
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--emulator", "--config", str(config)],
        stderr=open(tmp / "daemon.log", "w"),  # noqa: SIM115 (closed with the process)
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    driver = None
    try:
        driver = browser()
        wait_for(lambda: _answers(url), 20, "the page is served")
        recorder = Recorder(url.replace("http", "ws") + "/events")
        recorder.start()
        assert recorder.connected.wait(10)
        driver.get(url + "/")
        driver.execute_script(  # every state the page shows, in order
            "window.seen = [];"
            "new MutationObserver(() => window.seen.push(document.getElementById('state')"
            ".textContent)).observe(document.getElementById('state'), {childList: true});"
        )
        yield Running(url, daemon, tmp / "out.wav", recorder, driver)
    finally:
        if driver is not None:
            driver.quit()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        log = (tmp / "daemon.log").read_text()
        assert "Traceback" not in log, log[-3000:]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/state", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_event_stream_shows_a_spoken_turn_in_order(running: Running) -> None:
    messages = running.recorder.messages
    wait_for(lambda: any(m["type"] == "turn" for m in messages), 40, "turn 1's summary")
    assert messages[0]["type"] == "snapshot" and messages[0]["state"] == "idle"

    def first(**fields: Any) -> int:
        return next(
            i for i, m in enumerate(messages) if all(m.get(k) == v for k, v in fields.items())
        )

    listening = first(type="state", state="listening")
    thinking = first(type="state", state="thinking")
    speaking = first(type="state", state="speaking")
    heard = first(type="transcript", role="user", turn=1)
    said = first(type="transcript", role="agent", turn=1)
    summary_at = first(type="turn", turn=1)
    assert listening < thinking < heard < summary_at
    assert thinking < speaking < summary_at and thinking < said < summary_at
    summary = messages[summary_at]
    assert set(summary) >= SUMMARY_FIELDS
    assert summary["output_transcript"] == "This is the emulator's answer number 1."
    assert summary["input_transcript"].endswith("s of speech)")
    assert messages[summary_at + 1]["type"] == "tokens" and messages[summary_at + 1]["today"] > 0
    assert any(m == {"type": "connection", "status": "online", "cause": ""} for m in messages)
    assert any(m["type"] == "conversation" and m["open"] for m in messages)


def test_the_page_shows_the_turn_answers_a_typed_question_and_mutes(
    running: Running, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = running.driver

    def text(element_id: str) -> str:
        return str(driver.find_element(By.ID, element_id).text)

    wait_for(lambda: "answer number 1" in text("agent"), 40, "the spoken turn's answer")
    assert text("user").endswith("s of speech)")
    seen = driver.execute_script("return window.seen")
    assert "listening" in seen and "speaking" in seen[seen.index("listening") :], seen
    wait_for(lambda: text("state") == "idle", 20, "idle after the answer")

    played_before = (running.output.stat().st_size - 44) // 2  # the WAV grows in real time
    driver.find_element(By.ID, "text").send_keys(QUESTION)
    driver.find_element(By.ID, "send").click()
    wait_for(lambda: text("user") == QUESTION, 10, "the typed question captioned")
    wait_for(lambda: "answer number 2" in text("agent"), 30, "the typed question's answer")
    driver.save_screenshot(os.environ.get("EDGE_AGENT_SCREENSHOT", str(tmp_path / "page.png")))
    wait_for(lambda: QUESTION in text("history"), 20, "the typed turn in the history")
    wait_for(lambda: text("state") == "idle", 30, "idle after the typed answer")
    samples = np.frombuffer(running.output.read_bytes()[44:], "<i2")[played_before:]
    spoken = sum(end - start for start, end in loud_spans(samples))
    assert spoken >= 1.0, loud_spans(samples)  # the emulator's ~1.5 s answer was played

    driver.find_element(By.ID, "mute").click()
    wait_for(lambda: text("state") == "muted", 10, "the muted state")
    assert driver.find_element(By.ID, "mute").get_attribute("aria-pressed") == "true"
    state = json.loads(urllib.request.urlopen(running.url + "/api/state").read())
    assert state["muted"] is True


TOKEN = "0123456789abcdef0123"


def test_without_the_token_a_non_loopback_bind_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[web]\nenabled = true\naddress = "0.0.0.0"\n')
    done = run_cli("run", "--emulator", "--config", str(config), env={"WEB_TOKEN": ""})
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if "[web]" in line] == [
        "edge-agent: error: [web] address 0.0.0.0 is not loopback and has no token: put a "
        "random token (e.g. `openssl rand -hex 16`) in the systemd credential web-token or "
        'WEB_TOKEN, or set [web] address = "127.0.0.1"'
    ]
    off = WebConfig(enabled=True, address="0.0.0.0")
    with pytest.raises(UserError, match="shorter than 16 characters"):
        required_token(off, {"WEB_TOKEN": "abc"})
    (tmp_path / "web-token").write_text(TOKEN + "\n")
    found = {"CREDENTIALS_DIRECTORY": str(tmp_path), "WEB_TOKEN": "0" * 20}
    assert required_token(off, found) == TOKEN  # the credential first
    assert required_token(WebConfig(enabled=True), {}) is None  # loopback needs none


async def serve(
    tmp_path: Path, address: str, token: str | None, config: Any = None
) -> tuple[Any, Any, str]:
    from edge_agent.config import Config

    parts = assemble(
        config or Config(), Speaker(24000), time.monotonic, lambda: Credential("k", "t"), tmp_path
    )
    port = free_port()
    face = await start_web(
        WebConfig(enabled=True, address=address, port=port), token, parts.agent, parts.volume
    )
    return face, parts, f"http://127.0.0.1:{port}"


async def test_off_loopback_every_request_needs_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    face, parts, url = await serve(tmp_path, "0.0.0.0", TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies for an IP address, as browsers do
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            for path in ("/", "/app.js", "/api/state", "/events", "/nothing"):
                async with http.get(url + path) as response:
                    assert response.status == 401, path
            caplog.clear()
            async with http.post(url + "/api/mute", json={"muted": True}) as response:
                assert response.status == 401
            assert len(caplog.records) == 1  # one line per refused request
            assert parts.agent.muted is False
            async with http.get(url + "/api/state", headers=bearer) as response:
                assert response.status == 200 and (await response.json())["type"] == "snapshot"
            async with http.get(url + "/login", params={"token": "wrong" * 4}) as response:
                assert response.status == 403
            async with http.get(url + "/login", params={"token": TOKEN}) as response:
                assert response.status == 200 and response.url.path == "/"  # redirected
            async with http.ws_connect(url + "/events") as ws:  # the cookie is enough now
                assert (await ws.receive_json())["type"] == "snapshot"
                async with http.post(url + "/api/volume", json={"percent": 30}) as response:
                    assert await response.json() == {"percent": 30}
                assert await ws.receive_json() == {"type": "volume", "percent": 30}
            assert parts.volume.percent == 30 and parts.agent.speaker.volume == pytest.approx(0.3)
    finally:
        await face.close()


async def test_commands_refuse_other_sites_other_hosts_and_bad_bodies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    face, parts, url = await serve(tmp_path, "127.0.0.1", None)
    host = url.removeprefix("http://")
    try:
        async with aiohttp.ClientSession() as http:
            evil = {"Origin": "http://evil.example"}
            async with http.post(url + "/api/mute", json={"muted": True}, headers=evil) as r:
                assert r.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(url + "/events", headers=evil)
            rebound = {"Host": f"evil.example:{host.split(':')[1]}"}
            async with http.get(url + "/api/state", headers=rebound) as response:
                assert response.status == 421  # a DNS name pointed at 127.0.0.1
            async with http.post(url + "/api/text", data="hi") as response:
                assert response.status == 415
            for body in (b"{", b"[]", b'{"text": ""}', b'{"text": 5}'):
                async with http.post(
                    url + "/api/text", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    assert response.status == 400, body
            for path in ("/static/", "/../../etc/passwd", "/edge_agent/web/server.py"):
                async with http.get(url + path) as response:
                    assert response.status == 404 and "import" not in await response.text()
            async with http.post(
                url + "/api/text", data=b"x" * 100_000, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413
            assert parts.agent.muted is False and parts.agent.ledger.count == 0
            same = {"Origin": url}
            async with http.post(url + "/api/mute", json={"muted": True}, headers=same) as r:
                assert r.status == 200 and await r.json() == {"muted": True}
            assert parts.agent.muted is True
        caplog.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", int(host.split(":")[1]))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
        await writer.drain()
        assert b" 400 Bad Request" in await reader.read(100)
        writer.close()
        [line] = [r for r in caplog.records if r.name.startswith("edge_agent.web")]
        assert line.levelname == "WARNING" and line.exc_info is None
        assert "Content-Length" in line.msg
        async with aiohttp.ClientSession() as http, http.get(url + "/api/state") as response:
            assert response.status == 200  # still serving
    finally:
        await face.close()


async def test_a_typed_question_is_sent_bracketed_by_activity_start_and_end(
    tmp_path: Path, start_emulator: Callable[..., Any]
) -> None:
    """What the agent sends for the page's text box, read from the emulator's log."""
    emulator = await start_emulator()
    config = against(emulator, conversation={"idle_timeout_s": 60})
    speaker = Speaker(24000, jitter_ms=60)
    parts = assemble(config, speaker, time.monotonic, lambda: Credential("k", "t"), tmp_path)
    silence = write_wav(tmp_path / "mic.wav", np.zeros(16000, np.int16))
    mic, output = WavMicrophone(silence, 30), WavOutput(tmp_path / "out.wav")
    mic.start(parts.agent.on_mic_frame)
    output.start(speaker)
    port = free_port()
    face = await start_web(WebConfig(enabled=True, port=port), None, parts.agent, parts.volume)
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/events")
            async with http.post(
                f"http://127.0.0.1:{port}/api/text", json={"text": QUESTION}
            ) as response:
                assert await response.json() == {"sent": True, "turn": 1}
            async with asyncio.timeout(30):
                while (message := await ws.receive_json())["type"] != "turn":
                    pass
            assert message["input_transcript"] == QUESTION
            await ws.close()
    finally:
        await face.close()
        await parts.link.shutdown()
        await mic.close()
        output.close()
    sent = [
        next(iter(e["msg"]["realtimeInput"]))
        for e in read_log(emulator)
        if e["dir"] == "in" and "realtimeInput" in e["msg"]
    ]
    assert sent[sent.index("text") - 1 : sent.index("text") + 2] == [
        "activityStart",
        "text",
        "activityEnd",
    ]


PROBE = """
import asyncio, logging, sys
from edge_agent.config import load_config
from edge_agent.daemon import run_daemon

async def main():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    class StopAt(logging.Handler):  # the line sys.argv[2]: what was to happen has happened
        def emit(self, record):
            if sys.argv[2] in record.getMessage():
                loop.call_soon_threadsafe(stop.set)

    logging.basicConfig(level=logging.INFO)
    logging.getLogger().addHandler(StopAt())
    await run_daemon(load_config(sys.argv[1]).config, False, stop)

asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith("edge_agent.web") or m == "aiohttp.web"))
"""


def probe_daemon(tmp_path: Path, web: str, stop_at: str) -> subprocess.CompletedProcess[str]:
    """Runs the daemon in-process until it logs `stop_at`; prints the web modules it imported."""
    silence = write_wav(tmp_path / "mic.wav", np.zeros(16000, np.int16))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[live]\nendpoint = "https://127.0.0.1:9"\n'  # nothing leaves the machine
        f'[audio]\ninput_device = "file:{silence}"\noutput_device = "file:{tmp_path}/o.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n[web]\n{web}\n'
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config), stop_at],
        capture_output=True,
        text=True,
        env={**os.environ, "GEMINI_API_KEY": "k"},
    )
    assert done.returncode == 0, done.stderr[-2000:]  # with or without its page
    return done


def imported(done: subprocess.CompletedProcess[str]) -> set[str]:
    return set(json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')))


def test_the_web_package_is_imported_only_when_enabled(tmp_path: Path) -> None:
    # the SDK loads after READY, after the page would have started
    assert imported(probe_daemon(tmp_path, "enabled = false", "google-genai loaded")) == set()


def test_enabled_it_is_imported_and_a_port_in_use_is_one_log_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = probe_daemon(tmp_path, f"enabled = true\nport = {port}", "web page not started")
    assert {"edge_agent.web", "edge_agent.web.server", "aiohttp.web"} <= imported(done)
    refused = [line for line in done.stderr.splitlines() if "web page not started" in line]
    assert len(refused) == 1 and "address already in use" in refused[0]


async def test_a_volume_out_of_range_is_refused_with_the_range(tmp_path: Path) -> None:
    face, parts, url = await serve(tmp_path, "127.0.0.1", None)
    try:
        async with aiohttp.ClientSession() as http:
            for percent in (150, -1, 100.6):
                async with http.post(url + "/api/volume", json={"percent": percent}) as response:
                    assert response.status == 400, percent
                    error = (await response.json())["error"]
                    assert error == f"percent must be 0..100 (got {percent})", error
            body = b'{"percent": NaN}'
            headers = {"Content-Type": "application/json"}
            async with http.post(url + "/api/volume", data=body, headers=headers) as response:
                assert response.status == 400
            async with http.post(url + "/api/volume", json={"percent": 100}) as response:
                assert await response.json() == {"percent": 100}
        assert parts.volume.percent == 100
    finally:
        await face.close()
