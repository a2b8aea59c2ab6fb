"""Shared fixtures: the emulator with the real SDK, espeak-ng speech, quiet audio libraries."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest
import soxr
from google import genai
from google.genai import types

from edge_agent.audio.quiet import silence_audio_libraries
from edge_agent.emulator.server import Emulator, EmulatorOptions

silence_audio_libraries()
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
for variable in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "CREDENTIALS_DIRECTORY"):
    os.environ.pop(variable, None)

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """A prerequisite hardware/bootstrap.sh installs is missing: a skip on a workstation, a
    failure in CI (CI=1, CI=true), where a green run must have run every test."""
    if IN_CI:
        pytest.fail(f"{what} (CI is set: a missing prerequisite fails)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def simulate_against(emulator: Any, *args: str) -> list[str]:
    """The command line of `edge-agent simulate` on a running emulator."""
    return [
        sys.executable, "-m", "edge_agent", "simulate",
        "--endpoint", emulator.url, "--ca-file", str(emulator.cert_path), *args,
    ]  # fmt: skip


async def until(condition: Callable[[], bool]) -> None:
    """Waits on the loop for condition(); the suite's timeout is the only limit (speed is
    measured in bench/, never asserted)."""
    while not condition():
        await asyncio.sleep(0.01)


def wait_until(condition: Callable[[], bool]) -> None:
    """until() for a test without a loop."""
    while not condition():
        time.sleep(0.01)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """Where a daemon under test sends its sd_notify datagrams."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(10)
    yield sock
    sock.close()


@pytest.fixture
async def start_emulator(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Emulator] = []

    async def start(**options: Any) -> Emulator:
        options.setdefault("cert_dir", tmp_path / f"emulator{len(started)}")
        options.setdefault("log_path", tmp_path / f"emulator{len(started)}.jsonl")
        emulator = Emulator(EmulatorOptions(**options))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()


def sdk_client(
    emulator: Emulator, api_key: str = "test-key", version: str = "v1beta"
) -> genai.Client:
    context = ssl.create_default_context(cafile=str(emulator.cert_path))
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=emulator.url, api_version=version, async_client_args={"ssl": context}
        ),
    )


def read_log(emulator: Emulator) -> list[dict[str, Any]]:
    import json

    assert emulator.options.log_path is not None
    return [json.loads(line) for line in emulator.options.log_path.read_text().splitlines()]


def _espeak(text: str, path: Path) -> np.ndarray:
    if not shutil.which("espeak-ng"):
        missing("espeak-ng missing")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return np.asarray(soxr.resample(samples, rate, 16000), dtype=np.int16)


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., np.ndarray]:
    """speech("a", "b", gap_s=1.5): 16 kHz int16 utterances separated (and framed) by silence."""
    folder = tmp_path_factory.mktemp("speech")
    cache: dict[str, np.ndarray] = {}

    def make(*utterances: str, gap_s: float = 1.5, lead_s: float = 0.5) -> np.ndarray:
        parts = [np.zeros(int(lead_s * 16000), np.int16)]
        for text in utterances:
            if text not in cache:
                cache[text] = _espeak(text, folder / f"u{len(cache)}.wav")
            parts += [cache[text], np.zeros(int(gap_s * 16000), np.int16)]
        return np.concatenate(parts)

    return make


def samples(pcm: bytes) -> np.ndarray:
    """16-bit PCM (what the Speaker pulls, a chime) as int16 samples."""
    return np.frombuffer(pcm, dtype="<i2")


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


HERE = Path(__file__).resolve().parent


@pytest.fixture
def alsa_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """ALSA PCMs 'mic' (reads $MIC_RAW), 'speaker' (writes $SPK_WAV), 'default'; unpaced."""
    mic_raw, speaker_wav = tmp_path / "mic.raw", tmp_path / "speaker.wav"
    mic_raw.write_bytes(b"")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(HERE / "asound-test.conf"))
    monkeypatch.setenv("MIC_RAW", str(mic_raw))
    monkeypatch.setenv("SPK_WAV", str(speaker_wav))
    return mic_raw, speaker_wav


@pytest.fixture
def jack_clock(alsa_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The same PCMs (mic_rt, spk_rt) paced by a private JACK dummy server (period 256: 128
    makes PortAudio's ALSA probe fail and hides mic_rt/spk_rt)."""
    import uuid

    if not all(shutil.which(program) for program in ("jackd", "jack_wait", "jack_lsp")):
        missing("jackd, jack_wait or jack_lsp missing (jackd2; jack-example-tools from Debian 13)")
    name = f"edge-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_AUDIO_RESERVATION", "1")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(HERE / "asound-rt.conf"))
    process = subprocess.Popen(
        [
            "jackd",
            "-n",
            name,
            "--no-realtime",
            "-d",
            "dummy",
            "-r",
            "48000",
            "-p",
            "256",
            "-C",
            "1",
            "-P",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            ["jack_wait", "-w", "-t", "10"],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "JACK_DEFAULT_SERVER": name},
        )
        yield alsa_files
    finally:
        process.terminate()
        process.wait(10)
