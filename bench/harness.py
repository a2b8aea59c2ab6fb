"""Runs one client against the emulator on JACK-paced ALSA PCMs and measures it from outside.

Wire times come from the emulator (in this process); device times from polling the speaker WAV
the ALSA file plugin writes as the client writes to the device; CPU and memory from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.emulator.scenario import Scenario, Turn
from edge_agent.emulator.server import Emulator, EmulatorOptions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
JACK_PERIOD = 256  # 5.3 ms at 48 kHz; 128 makes PortAudio's ALSA probe fail


class TimedEmulator(Emulator):
    """Keeps (monotonic time, message) for everything on the wire."""

    def __init__(self, options: EmulatorOptions) -> None:
        super().__init__(options)
        self.wire: list[tuple[float, str, dict[str, Any]]] = []

    async def send(self, number: int, ws: Any, message: dict[str, Any]) -> None:
        self.wire.append((time.monotonic(), "out", message))
        await super().send(number, ws, message)

    def log_in(self, number: int, message: dict[str, Any]) -> None:
        self.wire.append((time.monotonic(), "in", message))
        super().log_in(number, message)


class PlaybackMonitor:
    """A JACK client listening to whatever feeds system:playback_1: the time of every period
    that carries sound, at the device clock (what the speaker really plays)."""

    def __init__(self, server: str) -> None:
        import jack

        self.client = jack.Client("bench-monitor", servername=server, no_start_server=True)
        self.inport = self.client.inports.register("in")
        self.loud_periods: list[float] = []
        self.client.set_process_callback(self._process)
        self._stop = threading.Event()
        self._linker = threading.Thread(target=self._link, daemon=True)

    def _process(self, frames: int) -> None:
        samples = self.inport.get_array()
        if float(np.max(np.abs(samples))) > 0.002:
            self.loud_periods.append(time.monotonic())

    def _link(self) -> None:
        """Clients open their streams late and re-open them: keep listening to all of them."""
        while not self._stop.is_set():
            for port in self.client.get_ports(is_output=True, is_audio=True):
                if port.name.startswith("bench-monitor"):
                    continue
                connections = {p.name for p in self.client.get_all_connections(port)}
                if "system:playback_1" in connections and self.inport.name not in connections:
                    with contextlib.suppress(Exception):
                        self.client.connect(port, self.inport)
            time.sleep(0.05)

    def start(self) -> None:
        self.client.activate()
        self._linker.start()

    def stop(self) -> None:
        self._stop.set()
        self.client.deactivate()
        self.client.close()


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
    mic_raw: Path,
    duration_s: float,
    turns: int,
    camera: Path | None,
    jack: JackServer,
) -> RunResult:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    speaker_wav = work / "speaker.wav"
    options = EmulatorOptions(cert_dir=work, scenario=scenario(turns, tone_wav(work)))
    emulator = TimedEmulator(options)
    await emulator.start()
    env = {
        **os.environ,
        "ALSA_CONFIG_PATH": str(REPO / "tests" / "asound-rt.conf"),
        "MIC_RAW": str(mic_raw),
        "SPK_WAV": str(speaker_wav),
        "JACK_DEFAULT_SERVER": jack.name,
        "GEMINI_API_KEY": "bench",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    notify = work / "notify.sock"
    ready_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready_socket.bind(str(notify))
    ready_socket.setblocking(False)
    command = client_command(name, emulator, work, camera)
    monitor = PlaybackMonitor(jack.name)
    monitor.start()
    spawned = time.monotonic()
    process = subprocess.Popen(
        command,
        env={**env, "NOTIFY_SOCKET": str(notify)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready_at = await wait_ready(process, ready_socket, name)
    cpu_start, wall_start = cpu_seconds(process.pid), time.monotonic()
    await asyncio.sleep(duration_s)
    cpu = cpu_seconds(process.pid) - cpu_start
    wall = time.monotonic() - wall_start
    rss = peak_rss_mb(process.pid)
    process.terminate()
    process.wait(15)
    monitor.stop()
    await emulator.stop()
    ready_socket.close()
    result = RunResult(cpu_s_per_min=cpu / wall * 60, rss_mb=rss, startup_s=ready_at - spawned)
    result.figures = wire_to_device(emulator.wire, monitor.loud_periods)
    return result


def client_command(name: str, emulator: Emulator, work: Path, camera: Path | None) -> list[str]:
    if name == "baseline":
        command = [sys.executable, "-m", "bench.baseline", emulator.url, str(emulator.cert_path)]
        return command + (["--camera", str(camera)] if camera else [])
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
        f'[service]\nstate_dir = "{work}/state"\nlog_level = "warning"\n' + camera_section
    )
    return [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]


async def wait_ready(process: subprocess.Popen[str], notify: socket.socket, name: str) -> float:
    assert process.stdout is not None
    if name == "baseline":
        line = await asyncio.to_thread(process.stdout.readline)
        if line.strip() != "READY":
            raise RuntimeError(f"baseline did not start: {line!r}")
        return time.monotonic()
    for _ in range(3000):
        try:
            if b"READY=1" in notify.recv(4096):
                return time.monotonic()
        except BlockingIOError:
            await asyncio.sleep(0.002)
    raise RuntimeError("edge-agent never reported READY")


def wire_to_device(
    wire: list[tuple[float, str, dict[str, Any]]], loud_writes: list[float]
) -> dict[str, list[float]]:
    """First model audio on the wire -> the first period the device plays with sound;
    `interrupted` on the wire -> the last period with sound after it."""
    to_device: list[float] = []
    barge_in: list[float] = []
    answering = False
    for at, direction, message in wire:
        content = message.get("serverContent", {}) if direction == "out" else {}
        if "modelTurn" in content and not answering:
            answering = True
            written = next((t for t in loud_writes if t >= at), None)
            if written is not None and written - at < 2.0:
                to_device.append((written - at) * 1000)
        if content.get("interrupted"):
            later = [t for t in loud_writes if at <= t < at + 2.0]
            barge_in.append(((later[-1] - at) if later else 0.0) * 1000)
        if content.get("turnComplete") or content.get("interrupted"):
            answering = False
    return {"audio_to_device_ms": to_device, "barge_in_ms": barge_in}
