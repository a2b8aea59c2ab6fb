"""Rate conversion at the device edge, on 16-bit mono PCM bytes, with soxr.

numpy and soxr are imported only by a Resampler that converts: a device that runs at the
model's rates never loads them.
"""

from __future__ import annotations

from typing import Any

MODEL_INPUT_RATE = 16000
MODEL_OUTPUT_RATE = 24000


class Resampler:
    """Streaming int16 resampler (soxr output is bursty; callers buffer it)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream: Any = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        import numpy as np

        samples = np.frombuffer(pcm, dtype="<i2")
        return bytes(self._stream.resample_chunk(samples, last=last).tobytes())

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()


class FrameSplitter:
    """Collects PCM and hands out whole frames of frame_samples."""

    def __init__(self, frame_samples: int) -> None:
        self.frame_bytes = 2 * frame_samples
        self._pending = bytearray()

    def push(self, pcm: bytes, out: list[bytes]) -> None:
        """Appends the frames pcm completes onto out."""
        held, size = self._pending, self.frame_bytes
        held.extend(pcm)
        while len(held) >= size:
            out.append(bytes(held[:size]))
            del held[:size]
