"""The model's voice, 24 kHz mono int16: espeak-ng speaking the answer when it is installed,
else spoken-like syllables (voiced pulses through formants, with pauses)."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import soxr

OUTPUT_RATE = 24000
CHUNK_SECONDS = 0.1  # the service sends small chunks; every frame stays far below 1 MiB
_FORMANTS = ((700.0, 130.0), (1220.0, 70.0), (2600.0, 160.0))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=256)
def speak(text: str) -> bytes | None:
    """espeak-ng's voice for `text` at 24 kHz; None when espeak-ng is missing or fails.

    Blocking (tens of ms): call it from an executor. Answers repeat, so results are cached.
    """
    if not text.strip() or not espeak_available():
        return None
    try:
        done = subprocess.run(
            ["espeak-ng", "--stdout", "-s", "175", "--", text],
            capture_output=True,
            timeout=20,
            check=True,
        )
        return _wav_bytes_as_24k(done.stdout)
    except (OSError, subprocess.SubprocessError, wave.Error, ValueError):
        return None


def _wav_bytes_as_24k(data: bytes) -> bytes:
    # espeak-ng --stdout leaves the RIFF sizes unset (0xFFFFFFFF); the wave module copes
    # with the fmt chunk, and the samples are everything after the data chunk's header
    start = data.index(b"data") + 8
    with wave.open(io.BytesIO(data[:start])) as wav:
        rate = wav.getframerate()
    samples = np.frombuffer(data[start : start + (len(data) - start) // 2 * 2], "<i2")
    resampled = soxr.resample(samples, rate, OUTPUT_RATE) if rate != OUTPUT_RATE else samples
    return np.asarray(resampled, dtype="<i2").tobytes()


def synthesize_speech(seconds: float, seed: int = 0, rate: int = OUTPUT_RATE) -> bytes:
    """Syllables of ~180 ms (glottal pulses through three formants), short gaps between words."""
    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    out = np.zeros(total, dtype=np.float64)
    position = 0
    while position < total:
        length = int(rate * rng.uniform(0.14, 0.22))
        syllable = _syllable(length, rate, rng)
        end = min(total, position + length)
        out[position:end] = syllable[: end - position]
        position = end + int(rate * (0.25 if rng.random() < 0.2 else 0.04))
    peak = float(np.max(np.abs(out))) or 1.0
    return (out / peak * 9000).astype("<i2").tobytes()


def _syllable(length: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / rate
    f0 = rng.uniform(105, 150) * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    shift = rng.uniform(0.85, 1.2)
    signal = np.zeros(length)
    for harmonic in range(1, 30):
        frequency = f0 * harmonic
        gain = sum(
            1.0 / (1.0 + ((frequency - centre * shift) / width) ** 2) for centre, width in _FORMANTS
        )
        signal += gain * np.sin(harmonic * phase) / harmonic**0.5
    envelope = np.sin(np.pi * np.arange(length) / length) ** 0.6
    return signal * envelope


def read_wav_as_24k(path: Path) -> bytes:
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: 16-bit PCM WAV expected")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, channels)
    mono = samples.mean(axis=1).astype(np.int16) if channels > 1 else samples[:, 0]
    if rate != OUTPUT_RATE:
        mono = soxr.resample(mono, rate, OUTPUT_RATE)
    return np.asarray(mono, dtype="<i2").tobytes()


def chunks(pcm: bytes, rate: int = OUTPUT_RATE) -> list[bytes]:
    size = int(rate * CHUNK_SECONDS) * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
