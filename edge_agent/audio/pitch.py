"""Is a frame voiced? A pitch peak (50-400 Hz) in the cepstrum, computed without numpy.

The transforms run in FFTW (libfftw3f through ctypes; Debian's alsa-utils depends on it) and,
where it is missing, in a radix-2 FFT on Python lists, five times slower. The speech gate asks
only about a few frames of a turn's first words.
"""

from __future__ import annotations

import cmath
import ctypes
import logging
import math
from array import array
from functools import cache
from itertools import repeat
from operator import add, mul, sub

log = logging.getLogger(__name__)

RATE = 16000
FFT_SIZE = 1024
BINS = FFT_SIZE // 2 + 1
CEPSTRAL_PEAK = 0.3  # noise stays under it in 99 % of frames, voiced speech often goes over
FFTW_LIBRARY = "libfftw3f.so.3"
FFTW_ESTIMATE = 1 << 6
FFTW_REDFT00 = 3  # the DCT-I: a real, even sequence's DFT


def pitched(previous: bytes, frame: bytes) -> bool:
    """A pitch peak in the cepstrum of this frame and the one before: voiced speech has one,
    noise bursts, coughs and door slams do not."""
    if len(previous) == len(frame):
        frame = previous + frame
    samples = array("h", frame)
    count = min(len(samples), FFT_SIZE)
    windowed = list(map(mul, samples, _hann(count)))
    windowed.extend(repeat(0.0, FFT_SIZE - count))
    low, high = RATE // 400, min(RATE // 50, count * 2 // 3)
    transforms = _fftw()
    if transforms is not None:
        return transforms.cepstral_peak(windowed, low, high) > CEPSTRAL_PEAK
    return _list_cepstral_peak(windowed, low, high) > CEPSTRAL_PEAK


class Fftw:
    """The two transforms of the cepstrum, planned once on buffers of their own."""

    def __init__(self, library: ctypes.CDLL) -> None:
        c_plan = ctypes.c_void_p
        library.fftwf_plan_dft_r2c_1d.restype = c_plan
        library.fftwf_plan_dft_r2c_1d.argtypes = [ctypes.c_int, c_plan, c_plan, ctypes.c_uint]
        library.fftwf_plan_r2r_1d.restype = c_plan
        library.fftwf_plan_r2r_1d.argtypes = [
            ctypes.c_int,
            c_plan,
            c_plan,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        library.fftwf_execute.argtypes = [c_plan]
        library.fftwf_execute.restype = None
        self._execute = library.fftwf_execute
        signal, spectrum = (ctypes.c_float * FFT_SIZE)(), (ctypes.c_float * (2 * BINS))()
        log_magnitude, cepstrum = (ctypes.c_float * BINS)(), (ctypes.c_float * BINS)()
        self._buffers = (signal, spectrum, log_magnitude, cepstrum)  # the plans point into them
        self._forward = library.fftwf_plan_dft_r2c_1d(FFT_SIZE, signal, spectrum, FFTW_ESTIMATE)
        self._inverse = library.fftwf_plan_r2r_1d(
            BINS, log_magnitude, cepstrum, FFTW_REDFT00, FFTW_ESTIMATE
        )
        if not self._forward or not self._inverse:
            raise OSError("FFTW made no plan")
        self._signal, self._spectrum, self._log_magnitude, self._cepstrum = (
            memoryview(buffer).cast("B").cast("f") for buffer in self._buffers
        )

    def cepstral_peak(self, windowed: list[float], low: int, high: int) -> float:
        self._signal[:] = array("f", windowed)
        self._execute(self._forward)
        real, imaginary = self._spectrum[0::2], self._spectrum[1::2]
        # log(re^2 + im^2 + 1) is twice log(hypot(re, im, 1)): one call a bin instead of four
        magnitudes = map(math.hypot, real, imaginary, repeat(1.0))
        self._log_magnitude[:] = array("f", map(math.log, magnitudes))
        self._execute(self._inverse)  # FFT_SIZE times the inverse FFT, for a real even input
        return 2 * max(self._cepstrum[low:high]) / FFT_SIZE


@cache
def _fftw() -> Fftw | None:
    try:
        return Fftw(ctypes.CDLL(FFTW_LIBRARY))
    except (OSError, AttributeError) as exc:
        log.info("pitch check: FFTW not usable (%s); Python lists instead (slower)", exc)
        return None


def _list_cepstral_peak(windowed: list[float], low: int, high: int) -> float:
    log_power = [math.log(c.real * c.real + c.imag * c.imag + 1.0) for c in _rfft(windowed)]
    symmetric = log_power + log_power[-2:0:-1]  # the whole (real, even) log spectrum
    # of a real, even sequence the FFT is real: FFT_SIZE times its inverse FFT, the cepstrum
    return max(c.real for c in _rfft(symmetric, low, high)) / FFT_SIZE


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
    """Stockham radix-2 FFT (power-of-two length): each stage is two passes of map()."""
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
