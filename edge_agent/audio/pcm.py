"""16-bit mono PCM as bytes (the host's byte order: little-endian on a Pi): levels, gain,
mixing and channel counts in C, without numpy, which `run` then never loads unless a device
needs its rate converted, the wake word or the camera is on (its import is 15 MB).

audioop is in the standard library up to Python 3.12 (deprecated there) and `audioop-lts`, the
same C code, from 3.13.
"""

from __future__ import annotations

import warnings
from array import array

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

WIDTH = 2
_SCALE_32 = 65536.0  # int16 -> int32 as lin2lin widens


def power(frame: bytes) -> float:
    """Mean square of the samples. audioop.rms truncates to an integer; on the samples widened
    to 32 bits that is 1/65536 of an int16 step, so this is exact for any level."""
    if not frame:
        return 0.0
    level = audioop.rms(audioop.lin2lin(frame, WIDTH, 4), 4) / _SCALE_32
    return level * level


def rms(frame: bytes) -> float:
    """RMS in int16 steps, truncated to a whole step (for levels, not for the noise floor)."""
    return float(audioop.rms(frame, WIDTH)) if frame else 0.0


def peak(frame: bytes) -> int:
    """The largest absolute sample."""
    return int(audioop.max(frame, WIDTH)) if frame else 0


def scale(frame: bytes, gain: float) -> bytes:
    """Samples times gain, saturating at the int16 limits."""
    return audioop.mul(frame, WIDTH, gain)


def mix(first: bytes, second: bytes) -> bytes:
    """Sample-wise sum of two equal-length blocks, saturating."""
    return audioop.add(first, second, WIDTH)


def to_mono(interleaved: bytes, channels: int) -> bytes:
    """The mean of a block's channels."""
    if channels == 1:
        return interleaved
    whole = len(interleaved) - len(interleaved) % (WIDTH * channels)
    if channels == 2:
        return audioop.tomono(interleaved[:whole], WIDTH, 0.5, 0.5)
    samples = array("h", interleaved[:whole])
    mono = audioop.mul(samples[0::channels].tobytes(), WIDTH, 1 / channels)
    for channel in range(1, channels):
        part = audioop.mul(samples[channel::channels].tobytes(), WIDTH, 1 / channels)
        mono = audioop.add(mono, part, WIDTH)
    return mono


def to_channels(mono: bytes, channels: int) -> bytes:
    """The same samples on every channel."""
    if channels == 1:
        return mono
    if channels == 2:
        return audioop.tostereo(mono, WIDTH, 1, 1)
    samples = array("h", mono)
    out = array("h", bytes(len(mono) * channels))
    for channel in range(channels):
        out[channel::channels] = samples
    return out.tobytes()


def silence(count: int) -> bytes:
    return bytes(WIDTH * count)
