"""Shared fixtures: the emulator with the real SDK, espeak-ng speech, quiet audio libraries."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

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
        pytest.skip("espeak-ng missing")
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


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path
