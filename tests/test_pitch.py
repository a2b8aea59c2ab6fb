"""The speech gate's pitch check without numpy: the same cepstrum numpy computed before."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge_agent.audio import pitch
from edge_agent.audio.pitch import CEPSTRAL_PEAK, FFT_SIZE, _fft, _rfft, pitched

FRAME = 480


def numpy_pitched(previous: np.ndarray, samples: np.ndarray) -> bool:
    """The check as it was written with numpy (vad.py before the pure-Python one)."""
    if len(previous) == len(samples):
        samples = np.concatenate([previous, samples])
    spectrum = np.fft.rfft(samples * np.hanning(len(samples)), FFT_SIZE)
    power = spectrum.real * spectrum.real + spectrum.imag * spectrum.imag + 1.0
    cepstrum = np.fft.irfft(np.log(power))
    low, high = 16000 // 400, min(16000 // 50, len(samples) * 2 // 3)
    return bool(np.max(cepstrum[low:high]) > CEPSTRAL_PEAK)


def test_the_list_fft_is_numpys() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=512) + 1j * rng.normal(size=512)
    assert np.allclose(_fft(list(values)), np.fft.fft(values))
    real = list(rng.normal(size=FFT_SIZE))
    assert np.allclose(_rfft(real), np.fft.rfft(real))
    assert np.allclose(_rfft(real, 40, 320), np.fft.rfft(real)[40:320])


@pytest.mark.parametrize("transforms", ["fftw", "lists"])
def test_voiced_speech_has_a_pitch_peak_and_noise_has_none(
    speech: Callable[..., np.ndarray], transforms: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFTW (libfftw3f, single precision) where the system has it, else Python lists: the
    numpy code's verdicts either way."""
    if transforms == "lists":
        monkeypatch.setattr(pitch, "_fftw", lambda: None)
    else:
        assert pitch._fftw() is not None, "libfftw3f missing (apt: libfftw3-single3)"
    voice = speech("how warm will it be tomorrow morning", lead_s=0.0, gap_s=0.0)
    noise = np.random.default_rng(1).normal(0, 2000, len(voice)).clip(-32768, 32767)
    for audio, least, most in ((voice, 0.3, 1.0), (noise.astype(np.int16), 0.0, 0.0)):
        frames = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME, FRAME)]
        loud = [i for i in range(1, len(frames)) if np.abs(frames[i]).max() > 3000]
        verdicts = [pitched(frames[i - 1].tobytes(), frames[i].tobytes()) for i in loud]
        assert verdicts == [numpy_pitched(frames[i - 1], frames[i]) for i in loud]
        assert least <= sum(verdicts) / len(verdicts) <= most
    first = voice[:FRAME]  # the first frame of all: no previous one
    assert pitched(b"", first.tobytes()) == numpy_pitched(np.zeros(0, np.int16), first)
