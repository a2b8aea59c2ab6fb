"""Latency figures from what the bench recorded: wire messages (times taken in the emulator) and
the sound card's cycles (times taken in bench-io, see jackio.py).

Microphone audio on the wire is located in the played signal by normalised cross-correlation,
so no client needs a hook: the cycle that delivered each sample of a chunk tells when it left
the device, and the chunk's arrival when it was on the wire. Every millisecond of audio counts
once, so a client sending large chunks pays for holding its oldest samples.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np

Wire = list[tuple[float, int, str, dict[str, Any]]]  # (time, connection, "in"/"out", message)
DEVICE_RATE = 48000
WIRE_RATE = 16000
SEARCH_S = 2.0  # a chunk is looked for in the audio delivered this long before it arrived
BURST_S = 0.25  # longer chunks are a local gate's turn opening: audio held until speech is sure
MIN_MATCH = 0.9  # normalised correlation needed to place a chunk


@dataclass(frozen=True)
class Speech:
    """The microphone signal at 16 kHz and where each question's speech ends (16 kHz samples)."""

    samples: np.ndarray
    speech_ends: list[int]


class MicTimeline:
    """When each 48 kHz sample of the microphone signal left the device."""

    def __init__(self, cycles: list[tuple[float, int]]) -> None:
        self.times = [t for t, _ in cycles]
        self.firsts = [first for _, first in cycles]

    def delivered_at(self, sample48: int) -> float | None:
        index = bisect_right(self.firsts, sample48) - 1
        return self.times[index] if index >= 0 else None

    def delivered_by(self, at: float) -> int:
        """How many 48 kHz samples had left the device at time `at`."""
        index = bisect_right(self.times, at) - 1
        if index < 0:
            return 0
        if index + 1 < len(self.firsts):
            return self.firsts[index + 1]
        period = self.firsts[index] - self.firsts[index - 1] if index else 0
        return self.firsts[index] + period


def wire_audio(message: dict[str, Any]) -> np.ndarray | None:
    realtime = message.get("realtimeInput", {})
    blobs = [realtime.get("audio"), *realtime.get("mediaChunks", [])]
    for blob in blobs:
        if blob and str(blob.get("mimeType", "")).startswith("audio/pcm"):
            return np.frombuffer(blob["data"], "<i2")
    return None


def place_chunk(chunk: np.ndarray, reference: np.ndarray, start: int, end: int) -> int | None:
    """The 16 kHz offset of `chunk` in reference[start:end], or None without a clear match."""
    start = max(0, start)
    window = reference[start:end].astype(np.float64)
    pattern = chunk.astype(np.float64)
    n = len(pattern)
    if len(window) < n or not np.any(pattern):
        return None
    size = 1 << int(np.ceil(np.log2(len(window) + n)))
    dot = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(pattern, size)), size)
    dot = dot[: len(window) - n + 1]
    energy = np.convolve(window * window, np.ones(n), "valid")
    score = dot / np.sqrt(np.maximum(energy, 1e-9) * float(pattern @ pattern))
    best = int(np.argmax(score))
    return start + best if score[best] >= MIN_MATCH else None


def mic_to_wire(
    wire: Wire, mic: MicTimeline, speech: Speech
) -> tuple[list[float], list[tuple[float, int]]]:
    """Per millisecond of microphone audio with sound: leaving the device -> on the wire (turn
    openings of a local gate left out: see BURST_S). Also where every chunk ends, for
    eos_latency."""
    latencies: list[float] = []
    placed: list[tuple[float, int, int, int]] = []  # (time, connection, end16, length)
    for at, connection, direction, message in wire:
        chunk = wire_audio(message) if direction == "in" else None
        if chunk is None:
            continue
        end = mic.delivered_by(at) // 3
        offset = place_chunk(chunk, speech.samples, end - int(SEARCH_S * WIRE_RATE), end)
        if offset is None:
            placed.append((at, connection, -1, len(chunk)))
            continue
        newest = offset + len(chunk)
        if len(chunk) <= BURST_S * WIRE_RATE:
            for sample in range(newest - 1, offset - 1, -WIRE_RATE // 1000):
                left = mic.delivered_at(sample * 3)
                if left is not None:
                    latencies.append((at - left) * 1000)
        placed.append((at, connection, newest, len(chunk)))
    return latencies, continuous_ends(placed)


def continuous_ends(placed: list[tuple[float, int, int, int]]) -> list[tuple[float, int]]:
    """(wire time, 16 kHz end) for every audio chunk: chunks that could not be placed (silence)
    continue the last placed chunk on the same connection, as a continuous stream does."""
    ends: list[tuple[float, int]] = []
    last: dict[int, int] = {}
    for at, connection, end, length in placed:
        if end < 0 and connection in last:
            end = last[connection] + length
        if end >= 0:
            last[connection] = end
            ends.append((at, end))
    return ends


def eos_latency(
    wire: Wire,
    ends: list[tuple[float, int]],
    mic: MicTimeline,
    speech: Speech,
    hangover_ms: float,
) -> list[float]:
    """End of speech -> the client's turn end, the hangover excluded.

    A client that ends turns itself sends activityEnd (or audioStreamEnd). For one that leaves it
    to the service, the turn end is the moment the wire has carried the hangover's worth of
    audio after the speech: the service cannot decide earlier."""
    turn_ends = [
        at
        for at, _, direction, message in wire
        if direction == "in"
        and (
            "activityEnd" in message.get("realtimeInput", {})
            or "audioStreamEnd" in message.get("realtimeInput", {})
        )
    ]
    hangover_16 = int(hangover_ms * WIRE_RATE / 1000)
    latencies: list[float] = []
    for speech_end in speech.speech_ends:
        spoken = mic.delivered_at(speech_end * 3 - 1)
        if spoken is None:
            continue
        if turn_ends:
            decided = next((at for at in turn_ends if at > spoken), None)
        else:
            decided = next((at for at, end in ends if end >= speech_end + hangover_16), None)
        if decided is not None and decided - spoken < 5.0:
            latencies.append((decided - spoken) * 1000 - hangover_ms)
    return latencies


def wire_to_device(wire: Wire, loud_cycles: list[float]) -> dict[str, list[float]]:
    """First model audio on the wire -> the first cycle the device plays with sound;
    `interrupted` on the wire -> the last cycle with sound after it."""
    to_device: list[float] = []
    barge_in: list[float] = []
    answering = False
    for at, _, direction, message in wire:
        content = message.get("serverContent", {}) if direction == "out" else {}
        if "modelTurn" in content and not answering:
            answering = True
            played = next((t for t in loud_cycles if t >= at), None)
            if played is not None and played - at < 2.0:
                to_device.append((played - at) * 1000)
        if content.get("interrupted"):
            later = [t for t in loud_cycles if at <= t < at + 2.0]
            barge_in.append(((later[-1] - at) if later else 0.0) * 1000)
        if content.get("turnComplete") or content.get("interrupted"):
            answering = False
    return {"audio_to_device_ms": to_device, "barge_in_ms": barge_in}
