"""Short generated earcons (no audio files): listening, done, error, offline."""

from __future__ import annotations

from functools import cache

import numpy as np

AMPLITUDE = 0.22 * 32767
# each chime: (frequency Hz, seconds) notes, played back to back
CHIMES: dict[str, tuple[tuple[float, float], ...]] = {
    "listening": ((660.0, 0.07), (880.0, 0.09)),
    "done": ((880.0, 0.07), (660.0, 0.09)),
    "error": ((220.0, 0.12), (0.0, 0.05), (220.0, 0.12)),
    "offline": ((784.0, 0.08), (587.0, 0.08), (392.0, 0.14)),
}


@cache
def chime(name: str, rate: int) -> np.ndarray:
    notes = [_note(frequency, seconds, rate) for frequency, seconds in CHIMES[name]]
    return np.concatenate(notes)


def _note(frequency: float, seconds: float, rate: int) -> np.ndarray:
    count = int(seconds * rate)
    if frequency == 0.0:
        return np.zeros(count, dtype=np.int16)
    t = np.arange(count) / rate
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # 10 ms ramps: no clicks
    tone = np.sin(2 * np.pi * frequency * t) + 0.3 * np.sin(4 * np.pi * frequency * t)
    return (tone * fade * AMPLITUDE / 1.3).astype(np.int16)
