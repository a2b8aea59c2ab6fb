"""What `edge-agent run` has imported when it says READY: nothing READY does not need."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.conftest import write_wav

# Packages `run` must not have imported at READY with the default configuration (no camera,
# wake word, web page, MCP or emulator). One name a line.
NOT_AT_READY = (
    "jsonschema",  # at the first tool call
    "simplejpeg",  # only with a camera
    "cv2",
    "trustme",
    "cryptography",
    "pymicro_wakeword",
    "mcp",
    "gpiozero",  # only with a GPIO part configured
    "numpy",  # with a camera, the wake word, or a device that needs its rate converted
    "soxr",
    "edge_agent.camera",
    "edge_agent.web",
    "edge_agent.mqtt",  # only with [mqtt] enabled; aiomqtt and paho after READY
    "aiomqtt",
    "paho",
    "edge_agent.emulator",
    "aiohttp",  # google.genai imports it when installed; both load after READY
    "google.genai",
    "websockets",
)
# cli.py builds the `emulator` command's arguments from edge_agent.emulator.cli (argparse and
# asyncio only, ~1 ms); the server and its dependencies stay out.
ALLOWED = {"edge_agent.emulator", "edge_agent.emulator.cli"}

# Runs the real CLI in a fresh interpreter and writes sys.modules when the daemon says READY
# (observed at Notifier.ready, so imports a worker starts right after READY do not count), again
# once the SDK has loaded after READY, and at exit.
OBSERVER = """
import atexit, runpy, sys
import edge_agent.service as service
import edge_agent.live.session as session
ready, load_sdk, listing = service.Notifier.ready, session.load_sdk, sys.argv[1]
def write(path):
    with open(path, "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
def observed(self, status):
    write(listing)
    ready(self, status)
async def observed_load(config):
    await load_sdk(config)
    write(listing + ".sdk")
service.Notifier.ready = observed
session.load_sdk = observed_load
atexit.register(write, listing + ".end")
sys.argv = ["edge-agent", *sys.argv[2:]]
runpy.run_module("edge_agent", run_name="__main__")
"""


def run_observed(
    tmp_path: Path,
    notify_socket: socket.socket,
    mic: np.ndarray | None = None,
    wait_for: str = "",
    extra: str = "",
) -> tuple[set[str], set[str], set[str]]:
    """The modules `run` has imported at READY, once the SDK has loaded, and at exit (after
    the log says wait_for, if given); `extra` is added to the config."""
    mic_wav = write_wav(
        tmp_path / "mic.wav", np.zeros(16000 * 30, np.int16) if mic is None else mic
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[live]\nendpoint = "https://127.0.0.1:9"\n'
        f'[audio]\ninput_device = "file:{mic_wav}"\noutput_device = "file:{tmp_path}/o.wav"\n'
        f'[service]\nstate_dir = "{tmp_path}/state"\n' + extra
    )
    listing = tmp_path / "modules.txt"
    log = tmp_path / "stderr.txt"
    env = {**os.environ, "GEMINI_API_KEY": "k", "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    command = [sys.executable, "-c", OBSERVER, str(listing), "run", "--config", str(config)]
    with log.open("w") as errors:
        daemon = subprocess.Popen(command, env=env, stderr=errors, text=True)
        try:
            deadline = time.monotonic() + 30
            while b"READY=1" not in notify_socket.recv(4096):
                assert time.monotonic() < deadline, "no READY"
            while not (tmp_path / "modules.txt.sdk").exists() or wait_for not in log.read_text():
                assert time.monotonic() < deadline, f"the SDK never loaded or no {wait_for!r}"
                time.sleep(0.05)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(15)
        finally:
            daemon.kill()
            daemon.wait()
    assert "Traceback" not in log.read_text(), log.read_text()

    def modules(suffix: str) -> set[str]:
        return set(Path(f"{listing}{suffix}").read_text().split())

    return modules(""), modules(".sdk"), modules(".end")


def test_run_imports_nothing_at_ready_that_ready_does_not_need(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    at_ready, with_sdk, at_exit = run_observed(tmp_path, notify_socket)
    assert "edge_agent.daemon" in at_ready  # the observer saw the real daemon
    present = {
        module
        for name in NOT_AT_READY
        for module in at_ready - ALLOWED
        if module == name or module.startswith(name + ".")
    }
    assert not present, f"imported before READY: {sorted(present)}"
    # google-genai imports aiohttp whenever it is installed (it is, for the emulator and the
    # page) but a Live session never uses it: 6 MB and 40 modules stay out without the page
    assert "google.genai.live" in with_sdk
    assert not {m for m in with_sdk if m.split(".")[0] == "aiohttp"}
    # [mqtt] is off: nothing of it, nor its client, ever loads
    mqtt = {m for m in at_exit if m.split(".")[0] in ("aiomqtt", "paho") or ".mqtt" in m}
    assert not mqtt, sorted(mqtt)


def test_run_loads_nothing_of_the_timers_when_they_are_off(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    *_, at_exit = run_observed(tmp_path, notify_socket, extra="[timers]\nenabled = false\n")
    assert "edge_agent.daemon" in at_exit
    assert not {m for m in at_exit if m.startswith("edge_agent.timers")}


def test_a_spoken_turn_through_run_loads_neither_numpy_nor_soxr(
    tmp_path: Path, notify_socket: socket.socket, speech: Callable[..., np.ndarray]
) -> None:
    """At the model's rates, the speech gate (its pitch check too), the echo guard, the Speaker
    and the chimes run on bytes: numpy's 15 MB stay out of the process."""
    mic = speech("what is the weather like today", lead_s=1.0, gap_s=3.0)
    *_, at_exit = run_observed(tmp_path, notify_socket, mic, "conversation 1 opened")
    assert "edge_agent.audio.pitch" in at_exit  # a turn opened: the pitch check ran
    assert not {m.split(".")[0] for m in at_exit} & {"numpy", "soxr"}


# Builds the agent's genai.Client as a connection does, in a fresh interpreter.
CLIENT = """
import asyncio, sys
from edge_agent.config import Config
from edge_agent.credentials import Credential
from edge_agent.live import wire
config = Config.model_validate({"live": {"endpoint": "https://127.0.0.1:9"}})  # never the internet
client = wire._client(config, Credential("k", "test"))
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
async def ask():
    try:
        await client.aio.models.get(model="gemini-x")
    except RuntimeError as exc:
        print(exc)
asyncio.run(ask())
"""


def test_the_live_client_builds_no_http_stack_it_would_never_use() -> None:
    """genai.Client makes an HTTP client (sync and async) that a Live session never uses; built
    as the SDK would, the first imports httpx2's connection stack (5 MB of a Pi Zero's RSS)."""
    run = subprocess.run([sys.executable, "-c", CLIENT], capture_output=True, text=True, timeout=60)
    packages, refusal = run.stdout.splitlines()
    assert "google" in packages.split()
    assert not {"httpcore2", "httpcore", "h11", "truststore"} & set(packages.split())
    assert refusal == "edge-agent's Live client makes no HTTP requests (/v1beta/models/gemini-x)"
