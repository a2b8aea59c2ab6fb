"""The emulator's model table: REST model lookup, unknown models, and the command line."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.genai import errors

from edge_agent.live.models import KNOWN_MODELS
from tests.conftest import read_log, run_cli, sdk_client

MANUAL = {"response_modalities": ["AUDIO"]}


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_a_known_model_is_described_over_rest(
    start_emulator: Callable[..., Any], version: str
) -> None:
    emulator = await start_emulator()
    model = await sdk_client(emulator, version=version).aio.models.get(model="gemini-3.8-live")
    assert model.name == "models/gemini-3.8-live"
    assert model.display_name == "Gemini 3.8 Live" and model.version == "3.8"
    assert model.input_token_limit == 131072 and model.output_token_limit == 65536
    assert model.supported_actions is not None and "bidiGenerateContent" in model.supported_actions


async def test_rest_refusals_have_the_service_error_shape(
    start_emulator: Callable[..., Any],
) -> None:
    refused = ("gemini-3.1-flash-live-preview",)
    emulator = await start_emulator(api_key="right", reject_models=refused)
    context = ssl.create_default_context(cafile=str(emulator.cert_path))
    base = f"{emulator.url}/v1beta/models"
    async with aiohttp.ClientSession() as http:

        async def get(url: str, **headers: str) -> tuple[int, dict[str, Any]]:
            async with http.get(url, ssl=context, headers=headers) as response:
                return response.status, await response.json()

        status, body = await get(f"{base}/gemini-3.8-live")
        assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
        status, body = await get(f"{base}/gemini-3.8-live?key=wrong")
        assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"] == "API key not valid. Please pass a valid API key."
        assert body["error"]["details"][0] == {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        for name in ("gemini-3.1-flash-live-preview", "gemini-2.0-flash-live-001"):
            status, body = await get(f"{base}/{name}", **{"x-goog-api-key": "right"})
            assert status == 404 and body["error"]["status"] == "NOT_FOUND"
            assert body["error"]["message"].startswith(
                f"models/{name} is not found for API version v1beta, or is not supported for"
            )
        status, body = await get(f"{base}/gemini-3.8-live?key=right")
        assert status == 200 and body["supportedGenerationMethods"][0] == "bidiGenerateContent"
    # the SDK raises its own errors from the same answers
    with pytest.raises(errors.ClientError) as caught:
        await sdk_client(emulator, "wrong").aio.models.get(model="gemini-3.8-live")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    with pytest.raises(errors.ClientError) as caught:
        await sdk_client(emulator, "right").aio.models.get(model="gemini-0-gone")
    assert caught.value.code == 404


async def test_an_unknown_model_is_refused_on_the_live_socket_unless_any_model(
    start_emulator: Callable[..., Any],
) -> None:
    strict = await start_emulator()
    with pytest.raises(errors.APIError) as caught:
        async with sdk_client(strict).aio.live.connect(model="gemini-0-gone", config=MANUAL):
            pass
    assert caught.value.code == 1008
    assert "models/gemini-0-gone is not found for API version v1beta" in str(caught.value)
    for name in KNOWN_MODELS:
        async with sdk_client(strict).aio.live.connect(model=name, config=MANUAL) as session:
            assert session.session_id
    lenient = await start_emulator(any_model=True)
    async with sdk_client(lenient).aio.live.connect(model="my-tuned-live", config=MANUAL) as s:
        assert s.session_id


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_second_emulator_on_a_busy_port_leaves_the_running_ones_certificate(
    tmp_path: Path,
) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "edge_agent", "emulator", "--port", str(port)]
    command += ["--cert-dir", str(tmp_path)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert "listening on" in first.stdout.readline()
        certificate = (tmp_path / "cert.pem").read_bytes()
        second = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        expected = f"edge-agent: error: emulator: cannot listen on 127.0.0.1:{port}: "
        assert lines[0].startswith(expected)
        assert (tmp_path / "cert.pem").read_bytes() == certificate
        # the running emulator is still reachable with the certificate it wrote
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /v1beta/models/gemini-3.8-live?key=k HTTP/1.0\r\n\r\n")
            reply = b"".join(iter(lambda: tls.recv(4096), b""))
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
        assert json.loads(body)["name"] == "models/gemini-3.8-live"
    finally:
        first.terminate()
        first.wait(10)


async def test_check_online_tries_the_setup_and_names_the_key_it_refuses(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    """`check --online` sends the setup the session would send: a refused one (1007 with the
    service's reason) is exit 2 and one line naming the [live] key; a taken one is exit 0."""
    emulator = await start_emulator()
    config = tmp_path / "c.toml"
    live = f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
    config.write_text(live + 'thinking_level = "high"\n')  # 3.8 takes no thinking level
    key = {"GEMINI_API_KEY": "k"}
    online = ("check", "--online", "--config", str(config))
    refused = await asyncio.to_thread(run_cli, *online, env=key)
    assert refused.returncode == 2, refused.stderr
    last = refused.stderr.splitlines()[-1]
    assert last.startswith("edge-agent: error: the service refused the setup")
    assert "thinking" in last and last.endswith("(change [live] thinking_level)")
    assert [line for line in refused.stderr.splitlines() if "error" in line] == [last]
    setups = [e["msg"]["setup"] for e in read_log(emulator) if "setup" in e["msg"]]
    assert setups and setups[-1]["generationConfig"]["thinkingConfig"]["thinkingLevel"] == "HIGH"
    config.write_text(live)
    taken = await asyncio.to_thread(run_cli, *online, env=key)
    assert taken.returncode == 0, taken.stderr
    assert "# setup: taken by gemini-3.8-live" in taken.stdout
    assert len([e for e in read_log(emulator) if "setup" in e["msg"]]) == len(setups) + 1
