"""Is a frame voiced? A pitch peak (50-400 Hz) in the cepstrum, computed without numpy.

The speech gate asks only about frames that could open a turn (a few per spoken turn, at most a
few a second in a noisy room), so a radix-2 FFT on Python lists is fast enough: ~1 ms a frame
on the development machine.
"""

from __future__ import annotations

import cmath
import math
from array import array
from functools import cache
from itertools import repeat
from operator import add, mul, sub

RATE = 16000
FFT_SIZE = 1024
CEPSTRAL_PEAK = 0.3  # noise stays under it in 99 % of frames, voiced speech often goes over


def pitched(previous: bytes, frame: bytes) -> bool:
    """A pitch peak in the cepstrum of this frame and the one before: voiced speech has one,
    noise bursts, coughs and door slams do not."""
    if len(previous) == len(frame):
        frame = previous + frame
    samples = array("h", frame)
    count = min(len(samples), FFT_SIZE)
    windowed = list(map(mul, samples, _hann(count)))
    windowed.extend(repeat(0.0, FFT_SIZE - count))
    magnitudes = list(map(abs, _rfft(windowed)))
    log_power = list(map(math.log, map(add, map(mul, magnitudes, magnitudes), repeat(1.0))))
    symmetric = log_power + log_power[-2:0:-1]  # the whole (real, even) log spectrum
    low, high = RATE // 400, min(RATE // 50, count * 2 // 3)
    # of a real, even sequence the FFT is real: FFT_SIZE times its inverse FFT, the cepstrum
    cepstrum = _rfft(symmetric, low, high)
    return max(c.real for c in cepstrum) / FFT_SIZE > CEPSTRAL_PEAK


def _rfft(values: list[float], first: int = 0, last: int = -1) -> list[complex]:
    """Bins first..last-1 (all n/2 + 1 by default) of the FFT of n reals, from one complex FFT
    of n/2 points."""
    half = len(values) // 2
    last = half + 1 if last < 0 else last
    packed = _fft(list(map(complex, values[0::2], values[1::2])))
    packed.append(packed[0])
    mirrored = list(map(complex.conjugate, reversed(packed[half - last + 1 : half - first + 1])))
    ours, turns = packed[first:last], _turns(len(values))[first:last]
    halves = map(mul, map(add, ours, mirrored), repeat(0.5))
    return list(map(add, halves, map(mul, map(sub, ours, mirrored), turns)))


def _fft(values: list[complex]) -> list[complex]:
    """Stockham radix-2 FFT (power-of-two length): each stage is two list comprehensions."""
    size = len(values)
    half = size // 2
    out = [0j] * size
    for stride, blocks, twiddles in _stages(size):
        first, second = values[:half], values[half:]
        sums = list(map(add, first, second))  # map over C functions: no bytecode per element
        turned = list(map(mul, map(sub, first, second), twiddles))
        if stride <= blocks:
            for q in range(stride):
                out[q :: 2 * stride] = sums[q::stride]
                out[q + stride :: 2 * stride] = turned[q::stride]
        else:
            for p in range(blocks):
                at = 2 * p * stride
                out[at : at + stride] = sums[p * stride : (p + 1) * stride]
                out[at + stride : at + 2 * stride] = turned[p * stride : (p + 1) * stride]
        values, out = out, values
    return values


@cache
def _stages(size: int) -> list[tuple[int, int, list[complex]]]:
    """(stride, blocks, a twiddle per element of the second half) for each stage."""
    stages = []
    stride, length = 1, size
    while length > 1:
        blocks = length // 2
        twiddles = [cmath.exp(-2j * math.pi * p / length) for p in range(blocks)]
        stages.append((stride, blocks, [w for w in twiddles for _ in range(stride)]))
        length, stride = blocks, stride * 2
    return stages


@cache
def _turns(size: int) -> list[complex]:
    return [-0.5j * cmath.exp(-2j * math.pi * k / size) for k in range(size // 2 + 1)]


@cache
def _hann(length: int) -> list[float]:
    return [0.5 - 0.5 * math.cos(2 * math.pi * i / (length - 1)) for i in range(length)]
