"""Short generated earcons (no audio files): listening, done, error, offline, announce."""

from __future__ import annotations

import math
from array import array
from functools import cache

AMPLITUDE = 0.22 * 32767
# each chime: (frequency Hz, seconds) notes, played back to back
CHIMES: dict[str, tuple[tuple[float, float], ...]] = {
    "listening": ((660.0, 0.07), (880.0, 0.09)),
    "done": ((880.0, 0.07), (660.0, 0.09)),
    "error": ((220.0, 0.12), (0.0, 0.05), (220.0, 0.12)),
    "offline": ((784.0, 0.08), (587.0, 0.08), (392.0, 0.14)),
    "announce": ((523.0, 0.1), (659.0, 0.1), (784.0, 0.16)),
}


@cache
def chime(name: str, rate: int) -> bytes:
    """The chime as 16-bit mono PCM at rate."""
    return b"".join(_note(frequency, seconds, rate) for frequency, seconds in CHIMES[name])


def _note(frequency: float, seconds: float, rate: int) -> bytes:
    count = int(seconds * rate)
    if frequency == 0.0:
        return bytes(2 * count)
    step, sin = 2 * math.pi * frequency / rate, math.sin
    ramp = [min(1.0, min(i / rate, seconds - i / rate) / 0.01) for i in range(count)]  # no clicks
    tone = [sin(step * i) + 0.3 * sin(2 * step * i) for i in range(count)]
    samples = [int(t * f * AMPLITUDE / 1.3) for t, f in zip(tone, ramp, strict=True)]
    return array("h", samples).tobytes()
