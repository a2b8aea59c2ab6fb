"""Tools from MCP servers: real servers built with the mcp package (one over stdio, one shaped like
Home Assistant's over Streamable HTTP with a bearer token), the real client, the emulator."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import signal
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.config import config_from_dict
from edge_agent.emulator.scenario import Scenario, ToolCallStep, Turn
from edge_agent.events import Connected, FunctionCall
from edge_agent.simulate import SimulateOptions, simulate
from edge_agent.tools.mcp_source import McpTools
from edge_agent.tools.registry import Tool
from edge_agent.tools.runner import ToolContext, ToolRunner
from tests.conftest import REPO, missing, run_cli, until, write_wav
from tests.test_service import read_until, start_daemon
from tests.test_simulate import against
from tests.test_tools import tool_responses

if importlib.util.find_spec("mcp") is None:
    missing("the mcp extra missing (pip install -e '.[mcp]')")
from tests.mcp_servers.home_assistant import Home, Served, serve, serve_sse

STDIO_SERVER = Path(__file__).parent / "mcp_servers" / "stdio_server.py"
TOKEN = "long-lived-token-for-tests"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def home_assistant() -> Iterator[tuple[Home, str]]:
    """The Home Assistant-shaped server on 127.0.0.1, and its /api/mcp URL."""
    home = Home()
    port = free_port()
    served = serve(home, TOKEN, port)
    yield home, f"http://127.0.0.1:{port}/api/mcp"
    served.stop()


@pytest.fixture
def ha_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The token as a systemd credential (the daemon reads $CREDENTIALS_DIRECTORY/ha-token)."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ha-token").write_text(TOKEN + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.tools import mcp

    monkeypatch.setattr(mcp, "RETRY_FIRST_S", 0.2)


def stdio_server(tmp_path: Path, **options: Any) -> dict[str, Any]:
    return {
        "name": "files",
        "command": sys.executable,
        "args": [str(STDIO_SERVER)],
        "env": {"CALLS_LOG": str(tmp_path / "calls.jsonl")},
        **options,
    }


def ha_server(url: str, **options: Any) -> dict[str, Any]:
    return {
        "name": "ha",
        "url": url,
        "headers": {"Authorization": "Bearer credential:ha-token"},
        **options,
    }


def server_calls(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Runner:
    """The ToolRunner the agent uses, fed by real MCP servers; answers collected by call id."""

    def __init__(self, servers: list[dict[str, Any]], state_dir: Path, fixed: Any = ()) -> None:
        config = config_from_dict({"mcp": {"servers": servers}})
        self.source = McpTools(config.mcp.servers, state_dir)
        self.answers: dict[str, dict[str, Any]] = {}
        self.runner = ToolRunner(
            list(fixed),
            ToolContext(end_conversation=lambda: None),
            lambda call_id, name, response, scheduling: self.answers.update({call_id: response}),
            timeout_s=10,
            sources=[self.source],
        )

    async def __aenter__(self) -> Runner:
        self.source.start()
        async with asyncio.timeout(30):
            await self.source.settled()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.source.close()

    def declared(self) -> list[str]:
        return [d["name"] for d in self.runner.declarations()]

    async def call(self, call_id: str, tool: str, **args: Any) -> dict[str, Any]:
        self.runner.start(FunctionCall(call_id, tool, args))
        async with asyncio.timeout(30):
            while call_id not in self.answers:
                await asyncio.sleep(0.02)
        return self.answers[call_id]

    async def until_declared(self, name: str) -> None:
        async with asyncio.timeout(30):
            while name not in self.declared():
                await asyncio.sleep(0.05)


async def run_scenario(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    turns: list[Turn],
    config: dict[str, Any],
) -> Any:
    questions = [f"question number {i + 1}" for i in range(len(turns))]
    wav_in = write_wav(tmp_path / "in.wav", speech(*questions, gap_s=3.0))
    emulator = await start_emulator(scenario=Scenario(turns=turns))
    summary = await simulate(against(emulator, **config), SimulateOptions(input=wav_in))
    assert len(summary["turns"]) == len(turns)
    return emulator


async def test_the_model_calls_a_stdio_servers_tool(
    start_emulator: Callable[..., Any], tmp_path: Path, speech: Callable[..., np.ndarray]
) -> None:
    step = ToolCallStep(name="files_add", args={"a": 2, "b": 3})
    server = stdio_server(tmp_path, prefix="files_", tools=["add", "where"])
    emulator = await run_scenario(
        start_emulator,
        tmp_path,
        speech,
        [Turn(tool_call=step, transcript="Five.")],
        {"mcp": {"servers": [server]}, "conversation": {"idle_timeout_s": 60}},
    )
    declared = emulator.parsed_setups[0]["tools"][0]["functionDeclarations"]
    by_name = {d["name"]: d for d in declared}
    assert {"files_add", "files_where", "get_time"} <= set(by_name)
    assert "files_slow" not in by_name  # not on the allowlist
    schema = by_name["files_add"]["parametersJsonSchema"]
    assert schema["required"] == ["a", "b"] and schema["properties"]["a"]["type"] == "integer"
    [(_, response)] = tool_responses(emulator)
    assert response["id"] == "function-call-1" and response["name"] == "files_add"
    assert response["response"] == {"output": {"structured": {"result": 5}}}
    assert server_calls(tmp_path) == [{"tool": "add", "args": {"a": 2, "b": 3}}]


async def test_home_assistant_profile_end_to_end(
    start_emulator: Callable[..., Any],
    tmp_path: Path,
    speech: Callable[..., np.ndarray],
    home_assistant: tuple[Home, str],
    ha_token: None,
) -> None:
    home, url = home_assistant
    home.calls.clear()
    profile = tomllib.loads((REPO / "config" / "home-assistant.toml").read_text())
    profile["mcp"]["servers"][0]["url"] = url
    turns = [
        Turn(tool_call=ToolCallStep(name="GetLiveContext")),
        Turn(tool_call=ToolCallStep(name="HassTurnOff", args={"name": "Kitchen Light"})),
        Turn(
            tool_call=ToolCallStep(
                name="HassLightSet",
                args={"area": "Living Room", "domain": ["light"], "brightness": 40},
            )
        ),
        Turn(tool_call=ToolCallStep(name="SlowScene", args={"marker": str(tmp_path / "m")})),
    ]
    emulator = await run_scenario(
        start_emulator, tmp_path, speech, turns, {**profile, "conversation": {"idle_timeout_s": 60}}
    )
    declared = emulator.parsed_setups[0]["tools"][0]["functionDeclarations"]
    names = [d["name"] for d in declared]
    assert names[-4:] == ["HassTurnOn", "HassTurnOff", "HassLightSet", "GetLiveContext"]
    light_set = next(d for d in declared if d["name"] == "HassLightSet")
    assert light_set["parametersJsonSchema"]["properties"]["brightness"]["maximum"] == 100
    assert home.calls == [
        ("GetLiveContext", {}),
        ("HassTurnOff", {"name": "Kitchen Light"}),
        ("HassLightSet", {"area": "Living Room", "domain": ["light"], "brightness": 40}),
    ]  # SlowScene is not on the profile's allowlist: it never reached the server
    assert home.entities["light.kitchen"]["state"] == "off"
    assert home.entities["light.living_room"] == {
        "name": "Living Room Lamp",
        "area": "Living Room",
        "state": "on",
        "brightness": 40,
    }
    responses = [r for _, r in tool_responses(emulator)]
    assert [r["id"] for r in responses] == [f"function-call-{i}" for i in range(1, 5)]
    context = json.loads(responses[0]["response"]["output"]["text"])
    assert "- names: Kitchen Light" in context["result"]
    turned_off = json.loads(responses[1]["response"]["output"]["text"])
    assert turned_off["data"]["success"][0]["id"] == "light.kitchen"
    assert "no tool named 'SlowScene'" in responses[3]["response"]["error"]


async def test_stdio_arguments_results_timeouts_cancellation_and_a_crash(
    tmp_path: Path,
    fast_retries: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("FILES_TOKEN", "token-from-the-environment")
    server = stdio_server(tmp_path, timeout_s=3, tools=["where", "add", "big", "fail"])
    server["tools"] += ["slow", "crash", "login"]
    server["env"]["API_TOKEN"] = "credential:files-token"
    async with Runner([server], tmp_path / "state") as tools:
        assert set(tools.declared()) == set(server["tools"])
        where = (await tools.call("w", "where"))["output"]["structured"]
        home = str(tmp_path / "state" / "mcp" / "files")
        assert where == {"cwd": home, "home": home, "api_token": "token-from-the-environment"}
        bad = await tools.call("b", "add", a="two", b=3)
        assert "bad arguments" in bad["error"]
        assert [c["tool"] for c in server_calls(tmp_path)] == ["where"]  # it never left
        big = (await tools.call("g", "big", size=100_000))["output"]
        assert len(big["text"]) == 16000 and "truncated: the result had" in big["note"]
        assert "the light bulb is broken" in (await tools.call("f", "fail"))["error"]
        await tools.call("s", "login", user="ann", password="hunter2")
        assert "ann" in caplog.text and "hunter2" not in caplog.text

        timed, cancelled = tmp_path / "timed", tmp_path / "cancelled"
        timing_out = asyncio.create_task(tools.call("t", "slow", marker=str(timed)))
        tools.runner.start(FunctionCall("c", "slow", {"marker": str(cancelled)}))
        # both run on the server
        await until(lambda: [c["tool"] for c in server_calls(tmp_path)].count("slow") == 2)
        tools.runner.cancel(("c",))  # what a toolCallCancellation does
        assert "did not finish within 3 s" in (await timing_out)["error"]
        await until(  # the server's handlers were cancelled
            lambda: all(m.exists() and m.read_text() == "cancelled" for m in (timed, cancelled))
        )
        assert "c" not in tools.answers

        crashed = await tools.call("x", "crash")
        assert "closed the connection" in crashed["error"]
        async with asyncio.timeout(30):  # restarted with backoff
            while "MCP server files is back: 7 tools" not in caplog.text:
                await asyncio.sleep(0.05)
        went_down = [r for r in caplog.records if "went down" in r.getMessage()]
        assert len(went_down) == 1 and "left out" in went_down[0].getMessage()
        assert (await tools.call("a", "add", a=1, b=2))["output"]["structured"] == {"result": 3}


async def test_a_wrong_token_is_one_clear_line(
    home_assistant: tuple[Home, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = home_assistant
    monkeypatch.setenv("HA_TOKEN", "not-the-token")
    async with Runner([ha_server(url)], tmp_path) as tools:
        assert tools.declared() == []
        answer = await tools.call("1", "HassTurnOn", name="Fan")
        assert "no tool named" in answer["error"]  # the agent keeps answering
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "MCP server ha is unreachable (HTTP 401: the server refused the credentials" in line
    assert "ha-token" in line and "not-the-token" not in caplog.text


async def test_a_server_down_at_start_is_added_when_it_comes_up(
    tmp_path: Path, ha_token: None, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    home = Home()
    served: Served | None = None
    try:
        async with Runner([ha_server(f"http://127.0.0.1:{port}/api/mcp")], tmp_path) as tools:
            assert tools.declared() == []
            await asyncio.sleep(0.6)  # a few retries: still one line
            down = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(down) == 1 and "MCP server ha is unreachable (cannot reach" in down[0]
            served = await asyncio.to_thread(serve, home, TOKEN, port)
            await tools.until_declared("HassTurnOn")
            answer = await tools.call("1", "HassTurnOn", name="Fan")
            assert answer["output"]["text"]
            assert home.entities["fan.bedroom"]["state"] == "on"
            assert "MCP server ha is back: 5 tools" in caplog.text
            await asyncio.to_thread(served.stop)  # it dies later
            served = None
            assert "MCP server ha" in (await tools.call("2", "HassTurnOff", name="Fan"))["error"]
            async with asyncio.timeout(10):
                while "HassTurnOn" in tools.declared():
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)  # retries fail quietly
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        server_lines = [line for line in lines if line.startswith("MCP server ha")]
        assert len(server_lines) == 2 and "MCP server ha went down" in server_lines[1]
    finally:
        if served is not None:
            served.stop()


async def test_older_home_assistant_over_sse_a_name_clash_and_non_blocking(
    tmp_path: Path, ha_token: None, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    home = Home()
    served = await asyncio.to_thread(serve_sse, home, TOKEN, port)
    built_in = Tool("GetLiveContext", "A built-in with the same name.", lambda: "built-in")
    try:
        url = f"http://127.0.0.1:{port}/mcp_server/sse"
        server = ha_server(url, tools=["HassTurnOn", "GetLiveContext"], non_blocking=True)
        async with Runner([server], tmp_path, fixed=[built_in]) as tools:
            declared = tools.runner.declarations()
            assert [d["name"] for d in declared] == ["GetLiveContext", "HassTurnOn"]
            assert "behavior" not in declared[0] and declared[1]["behavior"] == "NON_BLOCKING"
            assert tools.declared() and caplog.text.count("left out: a built-in already") == 1
            assert (await tools.call("0", "GetLiveContext"))["output"] == "built-in"
            answer = await tools.call("1", "HassTurnOn", area="Bedroom")
            assert "fan.bedroom" in answer["output"]["text"]
        assert home.calls == [("HassTurnOn", {"area": "Bedroom"})]
        wrong = ha_server(url, headers={"Authorization": "Bearer wrong"})
        async with Runner([wrong], tmp_path) as tools:
            [client] = tools.source.clients
            assert tools.declared() == [] and "refused the credentials" in client._said
    finally:
        served.stop()


async def test_check_reports_a_missing_credential_and_lists_tools_online(
    tmp_path: Path, home_assistant: tuple[Home, str], start_emulator: Callable[..., Any]
) -> None:
    _, url = home_assistant
    emulator = await start_emulator()  # what `check --online` asks about the key and model
    profile = (REPO / "config" / "home-assistant.toml").read_text()
    service = f'endpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
    config = tmp_path / "ha.toml"
    profile = profile.replace("http://homeassistant.local:8123/api/mcp", url)
    config.write_text(profile.replace("[live]\n", "[live]\n" + service))
    offline = await asyncio.to_thread(run_cli, "check", "--config", str(config))
    assert offline.returncode == 0
    assert "#   credential ha-token not found" in offline.stdout and "HA_TOKEN" in offline.stdout
    keys = {"HA_TOKEN": TOKEN, "GEMINI_API_KEY": "k"}
    online = await asyncio.to_thread(
        run_cli, "check", "--online", "--config", str(config), env=keys
    )
    assert online.returncode == 0, online.stderr
    assert "#   credential ha-token: set, not shown" in online.stdout
    tools = "HassTurnOn, HassTurnOff, HassLightSet, GetLiveContext"
    assert f"# mcp ha: 4 tools: {tools}" in online.stdout
    assert TOKEN not in online.stdout + online.stderr
    bad = config.read_text().replace('name = "ha"', 'name = "ha"\ncommand = "x"')
    config.write_text(bad)
    refused = await asyncio.to_thread(run_cli, "check", "--config", str(config))
    assert refused.returncode == 2
    assert "[mcp] servers.0: set either command" in refused.stderr


def imported_modules(stderr: str) -> set[str]:
    """The modules `python -X importtime` reported."""
    lines = [line.split("|") for line in stderr.splitlines() if line.startswith("import time:")]
    return {parts[-1].strip() for parts in lines if len(parts) == 3}


MCP_MODULES = ("mcp", "mcp_types", "edge_agent.tools.mcp", "edge_agent.tools.mcp_source")


@pytest.mark.parametrize("configured", [False, True], ids=["without", "with"])
def test_run_imports_mcp_only_when_configured_and_after_ready(
    tmp_path: Path, configured: bool
) -> None:
    """(httpx2 is not counted: google-genai imports it too.)"""
    servers = ""
    if configured:
        servers = (
            f'[[mcp.servers]]\nname = "files"\ncommand = "{sys.executable}"\n'
            f'args = ["{STDIO_SERVER}"]\nenv = {{ CALLS_LOG = "{tmp_path}/calls.jsonl" }}\n'
        )
    notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_socket.bind(str(tmp_path / "notify.sock"))  # what test_service's fixture does
    notify_socket.settimeout(10)
    daemon = start_daemon(tmp_path, servers, PYTHONPROFILEIMPORTTIME="1")
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(daemon.stderr or []), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        read_until(notify_socket, "READY=1", seen)
        read_until(notify_socket, "WATCHDOG=1", seen)
        deadline = time.monotonic() + 30
        while configured and time.monotonic() < deadline:
            if any("MCP server files: 7 tools" in line for line in errors):
                break
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        reader.join(5)
        notify_socket.close()
    text = "".join(errors)
    imported = {m for m in imported_modules(text) if m in MCP_MODULES or m.startswith("mcp.")}
    if not configured:
        assert imported == set()
        return
    assert "mcp" in imported  # (a module loaded by importlib.import_module is not listed)
    assert "mcp imported in" in text and "MCP server files: 7 tools" in text
    assert (tmp_path / "state" / "mcp" / "files").is_dir()  # its HOME and working directory


async def test_the_session_asks_for_declarations_before_each_connect(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.test_live_session import live_config, running

    emulator = await start_emulator()
    offered = [{"name": "first", "description": "x", "parameters_json_schema": {}}]
    async with running(live_config(emulator, tmp_path)) as (session, recorder, _):
        session.declarations = lambda: list(offered)
        await recorder.wait_for(Connected)
        offered.append({"name": "later", "description": "y", "parameters_json_schema": {}})
        for connection in list(emulator.connections.values()):
            connection.drop()  # the next connection is a new session for the service
        await recorder.wait_for(Connected, count=2)
    declared = [
        [d["name"] for d in setup["tools"][0]["functionDeclarations"]]
        for setup in emulator.parsed_setups
    ]
    assert declared == [["first"], ["first", "later"]]


async def test_without_the_mcp_package_one_error_line_and_no_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_agent.tools import mcp_source

    monkeypatch.setattr(mcp_source, "CLIENT_MODULE", "edge_agent.tools.not_installed")
    async with Runner([stdio_server(tmp_path)], tmp_path) as tools:
        assert tools.declared() == []
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "pip install 'edge-agent[mcp]'" in line
