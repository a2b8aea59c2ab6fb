"""What a timer, alarm or reminder rings with: a built-in beep, or the user's own WAV file.

The built-in sound is made with math and array, like the chimes, so the default configuration
never loads numpy; it is higher, longer and repeated where the chimes are one short phrase, so
"time is up" is never taken for "listening" or "done".
"""

from __future__ import annotations

import logging
import math
import struct
import wave
from array import array
from functools import cache
from pathlib import Path

from edge_agent.audio.pcm import to_mono

log = logging.getLogger(__name__)

PEAK = 0.5  # of full scale at volume 1.0: louder than the chimes (0.22), far from clipping
# one cycle: three "di-dit" beeps (two tones each), then a rest; the caller repeats it
BEEP = ((1318.5, 0.07), (1568.0, 0.07))  # E6 then G6
GAP_S, BEEPS, REST_S = 0.11, 3, 0.75
MAX_RING_S = 30
RAMP_S = 0.005  # fade in and out of every tone: no clicks


@cache
def ring_sound(rate: int, volume: float = 1.0) -> bytes:
    """One cycle (1.5 s) of the built-in ring as 16-bit mono PCM at `rate`; volume 0..1."""
    amplitude = PEAK * 32767 * max(0.0, min(1.0, volume))
    beep = b"".join(_tone(frequency, seconds, rate, amplitude) for frequency, seconds in BEEP)
    gap = bytes(2 * int(GAP_S * rate))
    return (beep + gap) * BEEPS + bytes(2 * int(REST_S * rate))


def _tone(frequency: float, seconds: float, rate: int, amplitude: float) -> bytes:
    count = int(seconds * rate)
    step, sin = 2 * math.pi * frequency / rate, math.sin
    overtone = 0.15 if 2 * frequency < rate / 2 else 0.0  # a little brightness, never aliased
    scale = amplitude / (1 + overtone)
    samples = array("h")
    for i in range(count):
        ramp = min(1.0, i / rate / RAMP_S, (count - 1 - i) / rate / RAMP_S)
        samples.append(int(scale * ramp * (sin(step * i) + overtone * sin(2 * step * i))))
    return samples.tobytes()


def load_ring_wav(path: Path, rate: int) -> bytes | None:
    """The user's ring sound as 16-bit mono PCM at `rate`, at most MAX_RING_S seconds; None
    (after one WARNING) when the file cannot be used, and the built-in sound rings instead.

    16-bit PCM, mono or stereo (mixed down), at any rate from 8 to 192 kHz: another rate is
    converted with the device-edge resampler, which loads numpy (once, at start) — a file saved
    at the speaker's rate avoids that.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, wav_rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            if width != 2 or channels not in (1, 2):
                raise ValueError(f"{8 * width}-bit, {channels} channels: use 16-bit mono or stereo")
            if not 8000 <= wav_rate <= 192000:
                raise ValueError(f"a rate of {wav_rate} Hz")
            frames = wav.readframes(MAX_RING_S * wav_rate)
    except (OSError, EOFError, wave.Error, ValueError, struct.error) as exc:
        log.warning("ring sound %s cannot be used, the built-in one rings: %s", path, exc)
        return None
    pcm = to_mono(frames[: len(frames) - len(frames) % (2 * channels)], channels)
    if not pcm:
        log.warning("ring sound %s holds no sound, the built-in one rings", path)
        return None
    if wav_rate != rate:
        from edge_agent.audio.resample import Resampler

        log.info("ring sound %s: converted from %d Hz to %d Hz", path, wav_rate, rate)
        pcm = Resampler(wav_rate, rate).process(pcm, last=True)
    return pcm
