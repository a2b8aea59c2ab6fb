"""Format conversion at the device edge: any rate and channel count <-> mono int16 with soxr."""

from __future__ import annotations

import numpy as np
import soxr

MODEL_INPUT_RATE = 16000
MODEL_OUTPUT_RATE = 24000


class Resampler:
    """Streaming int16 resampler (soxr output is bursty; callers buffer it)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
            if in_rate != out_rate
            else None
        )

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype=np.int16)

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()


def to_mono(interleaved: bytes, channels: int) -> np.ndarray:
    samples = np.frombuffer(interleaved, dtype="<i2")
    if channels == 1:
        return samples
    frames = samples[: len(samples) // channels * channels].reshape(-1, channels)
    return np.asarray(frames.mean(axis=1, dtype=np.int32), dtype=np.int16)


def to_channels(mono: np.ndarray, channels: int) -> np.ndarray:
    return mono if channels == 1 else np.repeat(mono, channels)


class FrameSplitter:
    """Collects samples and hands out fixed-size frames."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        count = len(samples) // self.frame_samples
        cut = count * self.frame_samples
        self._pending = samples[cut:].copy()
        return [samples[i : i + self.frame_samples] for i in range(0, cut, self.frame_samples)]
