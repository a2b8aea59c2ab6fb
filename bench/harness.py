"""Runs one client against the emulator on JACK-paced ALSA PCMs and measures it from outside.

Wire times come from the emulator (in this process); device times from bench-io, a JACK client
in its own process that plays the microphone and hears the speaker; CPU and memory from /proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.figures import (
    MicTimeline,
    Speech,
    Wire,
    eos_latency,
    mic_to_wire,
    wire_to_device,
)
from edge_agent.config import VadConfig
from edge_agent.emulator.listener import DetectorSettings
from edge_agent.emulator.scenario import Scenario, Turn
from edge_agent.emulator.server import Emulator, EmulatorOptions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
JACK_PERIOD = 256  # 5.3 ms at 48 kHz; 128 makes PortAudio's ALSA probe fail
# Silence that ends a turn: edge-agent's [vad] hangover_ms; the service's default for clients
# that leave turn detection to the service.
HANGOVER_MS = {
    "edge-agent": float(VadConfig().hangover_ms),
    "baseline": float(DetectorSettings().silence_ms),
    "pipecat": float(DetectorSettings().silence_ms),
}


class TimedEmulator(Emulator):
    """Keeps (monotonic time, connection, direction, message) for everything on the wire."""

    def __init__(self, options: EmulatorOptions) -> None:
        super().__init__(options)
        self.wire: Wire = []

    async def send(self, number: int, ws: Any, message: dict[str, Any]) -> None:
        self.wire.append((time.monotonic(), number, "out", message))
        await super().send(number, ws, message)

    def log_in(self, number: int, message: dict[str, Any]) -> None:
        self.wire.append((time.monotonic(), number, "in", message))
        super().log_in(number, message)


class SoundCard:
    """bench-io (jackio.py) in its own process: plays the microphone signal, hears the speaker."""

    def __init__(self, jack_server: str, signal48: Path, work: Path) -> None:
        self.result = work / "sound.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.jackio", jack_server, str(signal48), str(self.result)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "READY":
            raise RuntimeError("bench-io did not start (its error is above)")

    def command(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def finish(self) -> dict[str, Any]:
        self.command("stop")
        self.process.wait(10)
        result: dict[str, Any] = json.loads(self.result.read_text())
        return result


@dataclass
class RunResult:
    figures: dict[str, list[float]] = field(default_factory=dict)
    cpu_s_per_min: float = 0.0
    rss_mb: float = 0.0
    startup_s: float = 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class JackServer:
    def __init__(self) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> JackServer:
        env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
        self.process = subprocess.Popen(
            [
                "jackd",
                "-n",
                self.name,
                "--no-realtime",
                "-d",
                "dummy",
                "-r",
                "48000",
                "-p",
                str(JACK_PERIOD),
                "-C",
                "1",
                "-P",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        subprocess.run(
            ["jack_wait", "-w", "-t", "10"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**env, "JACK_DEFAULT_SERVER": self.name},
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


def tone_wav(folder: Path) -> Path:
    """A steady 2 s answer: every period carries sound, so silence can only mean a flush."""
    t = np.arange(48000) / 24000
    tone = (6000 * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t))).astype("<i2")
    path = folder / "answer.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(tone.tobytes())
    return path


def scenario(turns: int, answer: Path) -> Scenario:
    """2 s answers; every other one is cut by the service after 0.8 s (barge-in)."""
    return Scenario(
        turns=[
            Turn(wav=str(answer), interrupt_after_s=0.8 if i % 2 else None) for i in range(turns)
        ]
    )


async def run_client(
    name: str,
    speech: Speech,
    signal48: Path,
    duration_s: float,
    turns: int,
    camera: Path | None,
    jack: JackServer,
    period_ms: int,
) -> RunResult:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    options = EmulatorOptions(cert_dir=work, scenario=scenario(turns, tone_wav(work)))
    emulator = TimedEmulator(options)
    await emulator.start()
    env = {
        **os.environ,
        "ALSA_CONFIG_PATH": str(HERE / "asound.conf"),
        "JACK_DEFAULT_SERVER": jack.name,
        "GEMINI_API_KEY": "bench",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    notify = work / "notify.sock"
    ready_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready_socket.bind(str(notify))
    ready_socket.setblocking(False)
    command = client_command(name, emulator, work, camera, period_ms)
    card = SoundCard(jack.name, signal48, work)
    spawned = time.monotonic()
    with (work / "client.log").open("w") as log:  # kept for a look when a client misbehaves
        process = subprocess.Popen(
            command,
            env={**env, "NOTIFY_SOCKET": str(notify)},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    ready_at = await wait_ready(process, ready_socket, name)
    await asyncio.sleep(1.0)  # connected and idle before the first question
    card.command("play")
    cpu_start, wall_start = cpu_seconds(process.pid), time.monotonic()
    await asyncio.sleep(duration_s)
    cpu = cpu_seconds(process.pid) - cpu_start
    wall = time.monotonic() - wall_start
    rss = peak_rss_mb(process.pid)
    process.terminate()
    process.wait(15)
    sound = card.finish()
    await emulator.stop()
    ready_socket.close()
    result = RunResult(cpu_s_per_min=cpu / wall * 60, rss_mb=rss, startup_s=ready_at - spawned)
    mic = MicTimeline([(t, first) for t, first in sound["mic_cycles"]])
    to_wire, chunk_ends = mic_to_wire(emulator.wire, mic, speech)
    hangover_ms = HANGOVER_MS[name]
    result.figures = {
        "mic_to_wire_ms": to_wire,
        "eos_to_activity_end_ms": eos_latency(emulator.wire, chunk_ends, mic, speech, hangover_ms),
        **wire_to_device(emulator.wire, sound["loud_cycles"]),
    }
    return result


def client_command(
    name: str, emulator: Emulator, work: Path, camera: Path | None, period_ms: int
) -> list[str]:
    if name == "baseline":
        command = [sys.executable, "-m", "bench.baseline", emulator.url, str(emulator.cert_path)]
        return command + (["--camera", str(camera)] if camera else [])
    if name == "pipecat":
        script = str(HERE / "pipecat_client.py")
        return [os.environ["PIPECAT_PYTHON"], script, emulator.url, str(emulator.cert_path)]
    config = work / "edge-agent.toml"
    camera_section = (
        (f'[camera]\nsource = "opencv"\ndevice = "{camera}"\nfps = 1.0\nsend = "in_conversation"\n')
        if camera
        else ""
    )
    config.write_text(
        f'[live]\nendpoint = "{emulator.url}"\nca_file = "{emulator.cert_path}"\n'
        '[conversation]\nstart = "always"\nchimes = false\n'
        '[audio]\ninput_rate = 16000\noutput_rate = 24000\necho = "none"\n'
        f"period_ms = {period_ms}\n"
        f'[service]\nstate_dir = "{work}/state"\nlog_level = "warning"\n' + camera_section
    )
    return [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]


async def wait_ready(process: subprocess.Popen[str], notify: socket.socket, name: str) -> float:
    assert process.stdout is not None
    if name != "edge-agent":
        line = await asyncio.to_thread(process.stdout.readline)
        if line.strip() != "READY":
            raise RuntimeError(f"{name} did not start: {line!r}")
        return time.monotonic()
    for _ in range(3000):
        try:
            if b"READY=1" in notify.recv(4096):
                return time.monotonic()
        except BlockingIOError:
            await asyncio.sleep(0.002)
    raise RuntimeError("edge-agent never reported READY")
