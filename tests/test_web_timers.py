"""Timers on the page: the events, GET/POST /api/timers, POST /api/announce, the metric and
`edge-agent announce`, against the real aiohttp server on an assembled Agent, and the daemon
(`run --emulator`) driven through headless Chromium and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from edge_agent.assembly import Assembly, assemble
from edge_agent.audio.playback import Speaker
from edge_agent.config import Config, WebConfig
from edge_agent.credentials import Credential
from edge_agent.metrics import Metrics
from edge_agent.web.server import WebFace, start_web
from tests.conftest import run_cli, write_wav
from tests.test_service import free_port
from tests.test_web import TOKEN, Recorder, _answers, browser, wait_for


class Clock:
    """The Agent's and the schedule's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def serve(
    tmp_path: Path, config: Config | None = None, token: str | None = None
) -> tuple[WebFace, Assembly, Clock, str]:
    clock = Clock()
    parts = assemble(
        config or Config(), Speaker(24000), clock, lambda: Credential("k", "t"), tmp_path
    )
    port = free_port()
    address = "127.0.0.1" if token is None else "0.0.0.0"
    web = WebConfig(enabled=True, address=address, port=port)
    face = await start_web(web, token, parts.agent, parts.volume, parts.timers)
    return face, parts, clock, f"http://127.0.0.1:{port}"


JSON = {"Content-Type": "application/json"}


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url, data=data, headers=JSON) as response:
        return response.status, await response.json()


async def test_timers_on_the_stream_the_list_and_the_stop(tmp_path: Path) -> None:
    face, parts, clock, url = await serve(tmp_path)
    timers = parts.timers
    assert timers is not None
    pasta = timers.schedule.add_timer(600, "pasta")
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url + "/events") as ws:
            snapshot = await ws.receive_json()
            [listed] = snapshot["timers"]
            assert listed["label"] == "pasta" and listed["kind"] == "timer"
            assert listed["seconds_left"] == 600 and listed["ringing"] is False
            async with http.get(url + "/api/timers") as response:
                assert await response.json() == {"timers": snapshot["timers"]}

            timers.schedule.add_timer(2, "eggs")
            message = await ws.receive_json()
            assert message["type"] == "timer_set" and message["timer"]["label"] == "eggs"
            assert message["timer"]["seconds_left"] == 2
            clock.now += 2
            timers.tick()  # what the mic frames do every 0.1 s
            message = await ws.receive_json()
            assert message["type"] == "timer_ringing" and message["timer"]["label"] == "eggs"
            async with http.get(url + "/api/timers") as response:
                ringing, running = (await response.json())["timers"]
            assert (ringing["label"], ringing["ringing"]) == ("eggs", True)
            assert (running["label"], running["seconds_left"]) == ("pasta", 598)

            assert await post(http, url + "/api/timers", {"action": "stop"}) == (
                200,
                {"stopped": True},
            )
            message = await ws.receive_json()
            assert message["type"] == "timer_stopped" and message["timer"]["label"] == "eggs"
            assert timers.ringing == []
            assert await post(http, url + "/api/timers", {"action": "stop"}) == (
                200,
                {"stopped": False},
            )
            timers.schedule.cancel("pasta")
            message = await ws.receive_json()
            assert message == {"type": "timer_cancelled", "timer": message["timer"]}
            assert message["timer"]["id"] == pasta.id
    finally:
        await face.close()


async def test_bad_bodies_are_400_with_a_reason_and_the_server_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    face, parts, _, url = await serve(tmp_path)
    timers = parts.timers
    assert timers is not None
    try:
        async with aiohttp.ClientSession() as http:
            for body in (
                {"action": "start"},
                {"action": ["stop"]},
                {},
                [],
                "stop",
                b"{",
                b"[" * 5000,  # nested beyond the parser's recursion limit
                b"\xff\xfe",
            ):
                status, answer = await post(http, url + "/api/timers", body)
                assert status == 400, body
                assert answer["error"] in (
                    'expected {"action": "stop"}',
                    "the body is not JSON",
                    "the body must be a JSON object",
                ), answer
            for body in (
                {},
                {"text": ""},
                {"text": "  \n\t "},
                {"text": 5},
                {"text": None},
                {"text": "x" * 1001},
                {"text": ["hello"]},
            ):
                status, answer = await post(http, url + "/api/announce", body)
                assert status == 400, body
                assert answer == {"error": 'expected {"text": "..."} of 1..1000 characters'}
            for chime in ("yes", 1, None):
                status, answer = await post(
                    http, url + "/api/announce", {"text": "hi", "chime": chime}
                )
                assert (status, answer) == (400, {"error": '"chime" must be true or false'})
            async with http.post(url + "/api/announce", data="hi") as response:
                assert response.status == 415
            big = b'{"text": "' + b"x" * 100_000 + b'"}'
            async with http.post(url + "/api/announce", data=big, headers=JSON) as response:
                assert response.status == 413
            evil = {**JSON, "Origin": "http://evil.example"}
            async with http.post(
                url + "/api/announce", data=b'{"text": "hi"}', headers=evil
            ) as response:
                assert response.status == 403
            assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
            assert await post(http, url + "/api/announce", {"text": "x" * 1000}) == (
                200,
                {"queued": True},
            )
            assert await post(
                http, url + "/api/announce", {"text": "Dinner\nis ready", "chime": False}
            ) == (200, {"queued": True})
            async with http.get(url + "/api/state") as response:
                assert response.status == 200  # still serving
    finally:
        await face.close()


async def test_an_announcement_refused_is_409_with_the_reason(tmp_path: Path) -> None:
    config = Config.model_validate({"conversation": {"max_tokens_per_day": 10}})
    face, parts, _, url = await serve(tmp_path, config)
    parts.conversation.budget.add(10)
    try:
        async with aiohttp.ClientSession() as http:
            reason = "the daily token budget is spent"
            async with http.ws_connect(url + "/events") as ws:
                await ws.receive_json()  # the snapshot
                assert await post(http, url + "/api/announce", {"text": "Dinner is ready"}) == (
                    409,
                    {"queued": False, "reason": reason, "error": reason},
                )
                shown = await ws.receive_json()  # the page shows it, with its chime
            assert shown == {
                "type": "error",
                "cause": "announcement",
                "message": f"not spoken ({reason}): Dinner is ready",
            }
            assert any(parts.agent.speaker.pull(2400))  # the announce chime
    finally:
        await face.close()


async def test_with_timers_off_the_api_says_so(tmp_path: Path) -> None:
    config = Config.model_validate({"timers": {"enabled": False}})
    face, parts, _, url = await serve(tmp_path, config)
    assert parts.timers is None
    off = {"error": "timers are off: [timers] enabled = false in the config"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/api/timers") as response:
                assert (response.status, await response.json()) == (404, off)
            assert await post(http, url + "/api/timers", {"action": "stop"}) == (404, off)
            assert await post(http, url + "/api/announce", {"text": "hi"}) == (404, off)
            async with http.get(url + "/api/state") as response:
                assert (await response.json())["timers"] == []
    finally:
        await face.close()


async def test_off_loopback_the_timer_api_needs_the_token(tmp_path: Path) -> None:
    face, _, _, url = await serve(tmp_path, token=TOKEN)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/api/timers") as response:
                assert response.status == 401
            commands = (("/api/timers", {"action": "stop"}), ("/api/announce", {"text": "x"}))
            for path, body in commands:
                status, _ = await post(http, url + path, body)
                assert status == 401, path
            bearer = {**JSON, "Authorization": f"Bearer {TOKEN}"}
            async with http.post(
                url + "/api/announce", data=b'{"text": "hello"}', headers=bearer
            ) as response:
                assert await response.json() == {"queued": True}
    finally:
        await face.close()


def test_the_metric_counts_what_is_set_and_rings(tmp_path: Path) -> None:
    clock = Clock()
    parts = assemble(Config(), Speaker(24000), clock, lambda: Credential("k", "t"), tmp_path)
    timers = parts.timers
    assert timers is not None
    metrics = Metrics(parts.agent, parts.conversation.budget, timers)

    def active() -> float | None:
        return metrics.registry.get_sample_value("edge_agent_timers_active")

    assert active() == 0
    timers.schedule.add_timer(1, "eggs")
    timers.schedule.add_alarm("07:30", days=["monday"])
    timers.schedule.add_reminder("call Ann", in_seconds=60)
    assert active() == 3
    clock.now += 1
    timers.tick()
    assert [e.label for e in timers.ringing] == ["eggs"] and active() == 3  # ringing counts
    timers.stop("test")
    assert active() == 2
    off = assemble(
        Config.model_validate({"timers": {"enabled": False}}),
        Speaker(24000),
        clock,
        lambda: Credential("k", "t"),
        tmp_path / "off",
    )
    assert (
        Metrics(off.agent, off.conversation.budget, off.timers).registry.get_sample_value(
            "edge_agent_timers_active"
        )
        == 0
    )


# ---- the daemon: `run --emulator` with file devices, the page, metrics ----------------------


@dataclass
class Daemon:
    url: str
    config: Path
    log: Path
    metrics: str
    recorder: Recorder


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("web-timers")
    mic = write_wav(tmp / "mic.wav", np.zeros(16000, np.int16))  # then silence, paced
    port, metrics_port = free_port(), free_port()
    config = tmp / "config.toml"
    config.write_text(
        f'[audio]\ninput_device = "file:{mic}"\noutput_device = "file:{tmp}/out.wav"\n'
        f"[conversation]\nchimes = false\nidle_timeout_s = 120\n"
        f'[service]\nstate_dir = "{tmp}/state"\nmetrics_port = {metrics_port}\n'
        f"[web]\nenabled = true\nport = {port}\n"
    )
    log = tmp / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--emulator", "--config", str(config)],
        stderr=open(log, "w"),  # noqa: SIM115 (closed with the process)
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 20, "the page is served")
        recorder = Recorder(url.replace("http", "ws") + "/events")
        recorder.start()
        assert recorder.connected.wait(10)
        yield Daemon(url, config, log, f"http://127.0.0.1:{metrics_port}/metrics", recorder)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def metric(daemon: Daemon, name: str) -> float:
    text = urllib.request.urlopen(daemon.metrics, timeout=5).read().decode()
    [value] = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


def seconds(row: str) -> int:
    """ "10 minute timer\n9:58" -> 598."""
    minutes, second = row.split()[-1].split(":")
    return int(minutes) * 60 + int(second)


def test_the_page_shows_a_running_timer_and_stops_a_ringing_one(daemon: Daemon) -> None:
    """Timers set by typed questions (the emulator calls set_timer), shown counting down,
    one rings and the page's Stop button stops it."""
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        driver.get(daemon.url + "/")

        def ask(question: str) -> None:
            driver.find_element(By.ID, "text").send_keys(question)
            driver.find_element(By.ID, "send").click()

        def rows(which: str = "") -> list[str]:  # read at once: the list is redrawn each second
            script = f"return [...document.querySelectorAll('#timer-list li{which}')]"
            return list(driver.execute_script(script + ".map((li) => li.innerText)"))

        assert not driver.find_element(By.ID, "timers").is_displayed()  # none set yet
        ask("Set a timer for 600 seconds")
        [row] = wait_for(rows, 30, "the timer on the page")
        assert row.startswith("10 minute timer") and row.endswith(("10:00", "9:59", "9:58")), row
        started = time.monotonic()
        wait_for(lambda: seconds(rows()[0]) <= seconds(row) - 2, 5, "the page counting down")
        assert time.monotonic() - started > 1.0  # by the clock, not at once
        assert not driver.find_element(By.ID, "stop-ring").is_displayed()
        assert metric(daemon, "edge_agent_timers_active") == 1

        ask("Set a timer for 3 seconds")
        wait_for(lambda: len(rows()) == 2, 30, "the second timer on the page")
        stop = driver.find_element(By.ID, "stop-ring")
        wait_for(stop.is_displayed, 20, "the Stop button while it rings")
        assert rows(".ringing") == ["3 second timer\nringing"], rows()
        assert metric(daemon, "edge_agent_timers_active") == 2
        stop.click()
        wait_for(lambda: not stop.is_displayed(), 10, "the Stop button gone")
        assert len(rows()) == 1 and rows()[0].startswith("10 minute timer")
        assert rows(".ringing") == []
    finally:
        driver.quit()
    listed = json.loads(urllib.request.urlopen(daemon.url + "/api/timers").read())["timers"]
    assert [(t["label"], t["ringing"]) for t in listed] == [("10 minute timer", False)]
    kinds = [
        (m["type"], m["timer"]["label"])
        for m in daemon.recorder.messages
        if m["type"].startswith("timer_")
    ]
    assert kinds == [
        ("timer_set", "10 minute timer"),
        ("timer_set", "3 second timer"),
        ("timer_ringing", "3 second timer"),
        ("timer_stopped", "3 second timer"),
    ]
    assert "3 second timer stopped (web page)" in daemon.log.read_text()
    assert metric(daemon, "edge_agent_timers_active") == 1


ANNOUNCEMENT = "The laundry is done, please empty the machine"


def test_announce_is_read_aloud_after_the_answer_under_way(daemon: Daemon) -> None:
    """`edge-agent announce` while the daemon answers a question: the answer plays to its
    end, then the announcement is spoken word for word."""
    messages = daemon.recorder.messages
    start = len(messages)
    request = urllib.request.Request(
        daemon.url + "/api/text",
        json.dumps({"text": "What is the weather like today?"}).encode(),
        {"Content-Type": "application/json"},
    )
    question = json.loads(urllib.request.urlopen(request, timeout=5).read())["turn"]
    wait_for(
        lambda: {"type": "state", "state": "speaking", "muted": False} in messages[start:],
        30,
        "the answer playing",
    )
    done = run_cli("announce", ANNOUNCEMENT, "--config", str(daemon.config))
    assert (done.returncode, done.stdout, done.stderr) == (0, "queued\n", "")

    def turns() -> list[dict[str, Any]]:
        return [m for m in messages[start:] if m["type"] == "turn"]

    assert not turns()  # queued while the answer was still playing

    wait_for(lambda: len(turns()) == 2, 40, "the answer's and the announcement's turns")
    answer, announced = turns()
    assert answer["turn"] == question and not answer["interrupted"]
    assert answer["output_transcript"] == f"This is the emulator's answer number {question}."
    assert announced["turn"] == question + 1 and not announced["interrupted"]
    assert announced["output_transcript"].rstrip(".") == ANNOUNCEMENT
    assert announced["input_transcript"] == (
        f'Read this announcement aloud word for word, and say nothing else: "{ANNOUNCEMENT}"'
    )


def test_announce_exit_2_without_a_daemon_or_with_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    port = free_port()
    config.write_text(f"[web]\nenabled = true\nport = {port}\n")
    done = run_cli("announce", "hello", "--config", str(config))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(
        f"edge-agent: error: no daemon answers at http://127.0.0.1:{port}/api/announce ("
    )
    assert len(done.stderr.splitlines()) == 1 and "Connection refused" in done.stderr
    for text in ("", "   ", "x" * 1001):
        done = run_cli("announce", text, "--config", str(config))
        assert (done.returncode, done.stderr) == (
            2,
            "edge-agent: error: the text must have 1..1000 characters\n",
        )
    config.write_text(f"[web]\nenabled = false\nport = {port}\n")
    done = run_cli("announce", "hello", "--config", str(config))
    assert (done.returncode, done.stderr) == (
        2,
        "edge-agent: error: [web] enabled is false: announce goes through the page's API\n",
    )
    config.write_text(f'[web]\nenabled = true\naddress = "0.0.0.0"\nport = {port}\n')
    done = run_cli("announce", "hello", "--config", str(config), env={"WEB_TOKEN": ""})
    assert done.returncode == 2 and "the page's token was not found" in done.stderr


async def announce_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`edge-agent announce` as a subprocess, the server it asks on this test's loop."""
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "edge_agent", "announce", *args, "--config", str(config)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_announce_exit_1_when_refused_and_the_token_off_loopback(tmp_path: Path) -> None:
    limited = Config.model_validate({"conversation": {"max_tokens_per_day": 10}})
    face, parts, _, url = await serve(tmp_path, limited)
    config = tmp_path / "config.toml"
    config.write_text(f"[web]\nenabled = true\nport = {url.rsplit(':', 1)[1]}\n")
    try:
        assert await announce_cli(config, "Dinner is ready", "--no-chime") == (0, "queued\n", "")
        parts.conversation.budget.add(10)
        assert await announce_cli(config, "Dinner is ready") == (
            1,
            "",
            "edge-agent: not queued: the daily token budget is spent\n",
        )
    finally:
        await face.close()
    face, parts, _, url = await serve(tmp_path / "off", token=TOKEN)
    port = url.rsplit(":", 1)[1]
    config.write_text(f'[web]\nenabled = true\naddress = "0.0.0.0"\nport = {port}\n')
    try:
        assert await announce_cli(config, "hi", env={"WEB_TOKEN": TOKEN}) == (0, "queued\n", "")
        code, _, err = await announce_cli(config, "hi", env={"WEB_TOKEN": "wrong" * 4})
        assert code == 2 and err.startswith("edge-agent: error: the daemon refused the ")
        assert "(401): a token is needed" in err
    finally:
        await face.close()
