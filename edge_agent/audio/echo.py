"""Echo guard: keeps the model's own voice, coming back through the mic, from opening turns.

half_duplex: while the model's voice plays (and echo_tail_ms after) the mic may not open a
  turn, unless a person is louder than its echo can be (EchoLevel), their level does not
  follow the output's, or the microphone's power over a few frames is well over the echo's
  predicted from the output's (a person as loud as the echo): talking over the answer cuts
  it. Chimes are not guarded (too short and too high to pass for speech).
aec: the same guard, and WebRTC AEC3 (pywebrtc-audio) with the speaker mix as the far end,
  taken where audio really leaves (the playback pull); while a person talks over the answer
  and AEC3 swallows them too, the microphone's own frame is passed on.
none / system: frames pass (headsets, XMOS boards, or PipeWire's echo-cancel upstream).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from edge_agent.audio import pcm
from edge_agent.audio.playback import SampleFifo, Speaker
from edge_agent.audio.resample import MODEL_INPUT_RATE, Resampler

LOUDER_THAN_ECHO = 1.6  # 4 dB over the loudest the echo can be: a person talking over it
MUCH_LOUDER = 3.0  # (10 dB over it counts twice)
BARGE_IN_FRAMES = 3  # loud frames in a row that release the guard
RELEASE_QUIET_FRAMES = 10  # a released guard closes again after this many frames without them
AEC_SWALLOWS = 4.0  # cancelled 12 dB under the microphone while a person talks over the answer
REVERB_DECAY = 0.6  # the echo of older output, per frame past the delay (a room's tail)
PRIOR_COUPLING = 0.6  # echo level / output level believed before a sound has been measured
# (a worst case at any delay: a voice just louder is a person, before any margin is needed)
LEARN_MS = 450  # the echo is measured over the first moments of a sound ...
QUIET_BEFORE_MS = 150  # ... that starts in a quiet room (no one speaking over it)
ECHO_SPREAD = 3.0  # an echo's level follows the output's: half its frames within 10 dB of the
NO_ECHO = 0.05  # loudest (unless there is hardly any echo at all)
NEARLY_AS_TIGHT = 1.25  # a periodic sound fits several delays: the shortest nearly as tight
VOICE_FRAMES = 6  # frames measured before the window can tell a voice from echo ...
VOICE_CORRELATION = 0.3  # ... by the microphone's level not following the output's
MIN_LEARN_LEVEL = 300.0  # output frames quieter than this say little about the coupling
NOISE_RISE = 1.01  # the microphone's quiet level (a minimum follower) rises this much a frame
# The echo's power, predicted frame by frame from the output's (measured with the bound):
SPLITS = (0.0, 0.25, 0.5, 0.75, 1.0)  # a delay between frames: the share of the later frame
RESIDUAL_FRAMES = 6  # the microphone's power over this many frames ...
RESIDUAL_OVER = 1.4  # ... this far over the echo's predicted (1.5 dB): someone else is talking
SPREAD_MARGIN = 1.25  # (or further, where the prediction was this much less tight when measured)
VOICE_OUTLIER = 3.0  # frames measured this far over the prediction held a voice: fitted again


class EchoLevel:
    """How loud the agent's own sound can be in the microphone: the output's level some frames
    earlier (the delay; older output fading as a room's tail does) times the coupling, plus the
    room. Delay and coupling are measured at the start of a sound that begins in a quiet room
    (an answer starts after the person has finished): the delay whose bound is tightest while
    covering every frame heard then. They are kept between sounds (the speaker's and the
    microphone's geometry and the volume). A window in which the microphone did not follow the
    output held a voice, not echo: it is not measured (the guard never takes a person's voice
    for echo), and it lets the guard go at once; frames after someone began to speak over the
    sound are left out, and a sound cut short (a barge-in) is not measured. With the bound the
    echo's power is fitted (gain, delay, the share of each of two frames): the microphone's
    power over RESIDUAL_FRAMES well over the power predicted is a voice beside the echo.
    """

    def __init__(self, frame_ms: int, tail_ms: int) -> None:
        self.lags = tail_ms // frame_ms + 2  # output to microphone: device buffers, the room
        self._outputs: deque[float] = deque([0.0] * self.lags, maxlen=self.lags)  # newest last
        self.coupling = PRIOR_COUPLING
        self.delay: int | None = None  # frames; None: not measured (any delay is possible)
        self.margin = 1.0  # how far over the bound a person must be: a measurement can be off
        self.noise = 0.0  # the microphone's level when nothing plays
        self.voice_heard = False  # the window being measured holds a voice
        self._quiet_run = 0  # frames in a row at the room's level, nothing playing
        self._quiet_before = max(1, QUIET_BEFORE_MS // frame_ms)
        self._learn_frames = max(1, LEARN_MS // frame_ms)
        self._sounding = 0  # frames since the output began to sound (0: silent)
        # frames measured: the microphone's level, the output's that can sound in it at each
        # delay, and the output's levels (newest last)
        self._window: list[tuple[float, list[float], list[float]]] | None = None
        self.power: tuple[float, int, float] | None = None  # the echo's power: gain, delay, split
        self.residual_over = RESIDUAL_OVER  # the least power ratio that tells a voice
        self._recent: deque[tuple[float, float]] = deque(maxlen=RESIDUAL_FRAMES)
        self.over_echo = False  # the microphone's power has lately been well over the echo's

    def update(self, output: float, mic: float) -> float | None:
        """One frame: what left the speaker over it and the microphone's level; returns the
        loudest the echo can be in this frame (None: nothing played lately)."""
        self._outputs.append(output)
        if not any(self._outputs):
            self._idle(mic)
            return None
        outputs = list(self._outputs)
        if not self._sounding and self._quiet_run >= self._quiet_before:
            self._window = []
        self._sounding += 1
        if self._window is not None:
            self._measure(mic, outputs)
        self.over_echo = self._over_echo(mic, outputs)
        reference = max(outputs) if self.delay is None else _reference(outputs, self.delay)
        return self.coupling * reference + 2.0 * self.noise

    def _over_echo(self, mic: float, outputs: list[float]) -> bool:
        """The microphone's power over the last RESIDUAL_FRAMES is well over the echo's
        predicted from the output's (and this frame's too): a voice besides the echo. A voice
        does not follow the output, so it adds to the echo's power where the echo is the loudest
        it can be, and the prediction over a few frames is tighter than a bound on each."""
        if self.power is None:
            return False
        gain, delay, split = self.power
        echo = gain * _predicted(outputs, delay, split) + (2.0 * self.noise) ** 2
        self._recent.append((mic * mic, echo))
        if len(self._recent) < RESIDUAL_FRAMES or mic * mic <= echo:
            return False
        heard = sum(power for power, _ in self._recent)
        expected = sum(echo for _, echo in self._recent)
        return heard > self.residual_over * expected + RESIDUAL_FRAMES * 100.0**2

    def _idle(self, mic: float) -> None:
        self._window = None  # a sound cut short (a barge-in) says little about the echo
        self._sounding = 0
        self.voice_heard = self.over_echo = False
        self._recent.clear()
        self.noise = min(mic, max(self.noise, 1.0) * NOISE_RISE)
        quiet = mic <= 2.0 * self.noise + 100.0
        self._quiet_run = self._quiet_run + 1 if quiet else 0

    def _measure(self, mic: float, outputs: list[float]) -> None:
        assert self._window is not None
        if max(outputs) >= MIN_LEARN_LEVEL:
            references = [_reference(outputs, delay) for delay in range(self.lags - 1)]
            self._window.append((max(0.0, mic - self.noise), references, outputs))
        if len(self._window) >= VOICE_FRAMES and self._voice_in_window():
            self.voice_heard = True
            self._window = None
        elif self._sounding >= self._learn_frames:
            self._finish()

    def _voice_in_window(self) -> bool:
        """Loud in the microphone, and its level does not go with the output's at any delay."""
        assert self._window is not None
        mics = [mic for mic, _, _ in self._window]
        if sum(mics) / len(mics) < 3.0 * self.noise + 300.0:
            return False
        return all(
            _correlation(mics, [refs[delay] for _, refs, _ in self._window]) < VOICE_CORRELATION
            for delay in range(self.lags - 1)
        )

    def _finish(self) -> None:
        window, self._window = self._window, None
        if window is None or len(window) < VOICE_FRAMES:
            return  # too short to say: the echo may not have arrived yet
        heard, window = window, window[: self._before_a_voice(window)]
        if len(window) < VOICE_FRAMES:
            return
        bounds = []
        for delay in range(self.lags - 1):
            ratios = sorted(mic / refs[delay] for mic, refs, _ in window if refs[delay] > 0.0)
            if len(ratios) >= VOICE_FRAMES:
                bounds.append((ratios[-1], delay, ratios[len(ratios) // 2]))
        if not bounds:
            return
        # (a long delay is also judged on fewer frames)
        tightest = min(bound for bound, _, _ in bounds)
        coupling, delay, typical = next(b for b in bounds if b[0] <= NEARLY_AS_TIGHT * tightest)
        if coupling > NO_ECHO and typical < coupling / ECHO_SPREAD:
            return  # the microphone did not follow the output: a voice, not its echo
        self.coupling, self.delay, self.margin = coupling, delay, LOUDER_THAN_ECHO
        self._fit_power(window)
        if self.power is not None:  # the last frames measured count towards the next verdict
            gain, delay, split = self.power
            noise = (2.0 * self.noise) ** 2
            self._recent.extend(
                (mic * mic, gain * _predicted(outputs, delay, split) + noise)
                for mic, _, outputs in heard[-RESIDUAL_FRAMES:]
            )

    def _before_a_voice(self, window: list[tuple[float, list[float], list[float]]]) -> int:
        """How many of the frames measured came before someone spoke over the sound: the echo
        fitted on the first frames, the first of two in a row far over it."""
        frames = [(mic * mic, outputs) for mic, _, outputs in window]
        fits = [
            _fit(frames[:VOICE_FRAMES], delay, split)
            for delay in range(self.lags - 1)
            for split in SPLITS
        ]
        _, gain, delay, split = min(fits)
        run = 0
        for index in range(VOICE_FRAMES, len(frames)):
            power, outputs = frames[index]
            over = power > VOICE_OUTLIER * gain * _predicted(outputs, delay, split) + 100.0**2
            run = run + 1 if over else 0
            if run == 2:
                return index - 1
        return len(frames)

    def _fit_power(self, window: list[tuple[float, list[float], list[float]]]) -> None:
        """The echo's power as gain x the output's at a delay (between two frames: split):
        the fit with the least error; frames far over it held a voice and are left out of a
        second fit. How far over it the measured frames came (RESIDUAL_FRAMES at a time) sets
        how far over it a voice must be."""
        frames = [(mic * mic, outputs) for mic, _, outputs in window]
        for _ in range(3):
            fits = [
                _fit(frames, delay, split) for delay in range(self.lags - 1) for split in SPLITS
            ]
            _, gain, delay, split = min(fits)
            if gain <= 0.0:
                return
            kept = [
                (power, outputs)
                for power, outputs in frames
                if power <= VOICE_OUTLIER * gain * _predicted(outputs, delay, split)
            ]
            if len(kept) == len(frames) or len(kept) < VOICE_FRAMES:
                break
            frames = kept
        heard = [power for power, _ in frames]
        expected = [gain * _predicted(outputs, delay, split) for _, outputs in frames]
        worst = max(
            sum(heard[i : i + RESIDUAL_FRAMES]) / max(sum(expected[i : i + RESIDUAL_FRAMES]), 1.0)
            for i in range(max(1, len(frames) - RESIDUAL_FRAMES + 1))
        )
        self.power = gain, delay, split
        self.residual_over = max(RESIDUAL_OVER, SPREAD_MARGIN * worst)


def _predicted(outputs: list[float], delay: int, split: float) -> float:
    """The output's power that sounds in the microphone now, `delay` frames after it left."""
    later, earlier = outputs[-1 - delay], outputs[-2 - delay]
    return split * later * later + (1.0 - split) * earlier * earlier


def _fit(
    frames: list[tuple[float, list[float]]], delay: int, split: float
) -> tuple[float, float, int, float]:
    """The gain that fits the microphone's powers to the output's at a delay with the least
    absolute error (a weighted median: a voice in a few frames does not pull it), and that
    error as a share of the power heard."""
    pairs = sorted(
        (power / predicted, predicted)
        for power, outputs in frames
        if (predicted := _predicted(outputs, delay, split)) > 0.0
    )
    total = sum(predicted for _, predicted in pairs)
    if total <= 0.0:
        return math.inf, 0.0, delay, split
    weight, index = 0.0, 0
    while weight + pairs[index][1] < total / 2:
        weight += pairs[index][1]
        index += 1
    gain = pairs[index][0]
    error = sum(abs(power - gain * _predicted(outputs, delay, split)) for power, outputs in frames)
    return error / max(sum(power for power, _ in frames), 1.0), gain, delay, split


def _correlation(xs: list[float], ys: list[float]) -> float:
    count = len(xs)
    mean_x, mean_y = sum(xs) / count, sum(ys) / count
    cross = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    spread = sum((x - mean_x) ** 2 for x in xs) * sum((y - mean_y) ** 2 for y in ys)
    return cross / spread**0.5 if spread > 0.0 else 0.0


def _reference(outputs: list[float], delay: int) -> float:
    """The output level that can sound in the microphone now, `delay` frames after it left:
    that frame's and the one before (a delay between frames), older ones fading."""
    newest = len(outputs) - 1 - delay
    reference = max(outputs[newest], outputs[newest - 1])
    fade = REVERB_DECAY
    for index in range(newest - 2, -1, -1):
        reference = max(reference, outputs[index] * fade)
        fade *= REVERB_DECAY
    return reference


@dataclass
class EchoVerdict:
    frame: bytes
    suppressed: bool  # True: this frame may not open a turn


class EchoGuard:
    def __init__(self, mode: str, speaker: Speaker, tail_ms: int, frame_ms: int = 30) -> None:
        self.mode = mode
        self.speaker = speaker
        self.tail_ms = tail_ms
        self.echo = EchoLevel(frame_ms, tail_ms)
        self._loud_frames = 0
        self._quiet_frames = 0
        self._released = False
        self._canceller: Any = None
        self.cancelled = b""  # aec: the last frame after cancellation (the wake word hears it)
        if mode == "aec":
            from pywebrtc_audio import EchoCanceller

            self._canceller = EchoCanceller(sample_rate=MODEL_INPUT_RATE)
            self._reference = SampleFifo()
            self._reference_lock = threading.Lock()
            self._to_16k = Resampler(speaker.device_rate, MODEL_INPUT_RATE)
            speaker.reference_sink = self._take_reference

    def _take_reference(self, mix: bytes) -> None:
        reference = self._to_16k.process(mix)
        with self._reference_lock:
            self._reference.push(reference)
            if self._reference.size > MODEL_INPUT_RATE:  # keep at most 1 s of far end
                self._reference.pop(self._reference.size - MODEL_INPUT_RATE)

    def check(self, frame: bytes) -> EchoVerdict:
        if self.speaker.paused:  # its device rests: nothing has played for a while (idle)
            if self._canceller is not None and self._reference.size:
                with self._reference_lock:  # its last silence must not delay the next far end
                    self._reference.clear()
            self.cancelled = frame
            self._loud_frames, self._released = 0, False
            return EchoVerdict(frame, False)
        if self.mode not in ("half_duplex", "aec"):
            return EchoVerdict(frame, False)
        suppressed = self._suppressed(frame)
        if self._canceller is None:
            return EchoVerdict(frame, suppressed)
        with self._reference_lock:
            far = self._reference.pop(len(frame) // 2)
        if not self.speaker.speaking and self.speaker.quiet_ms() >= self.tail_ms:
            # nothing played for a while: no echo to cancel, and AEC3 left running on a
            # silent far end takes seconds to pass the user's first words through
            self.cancelled = frame
            return EchoVerdict(frame, suppressed)
        cancelled = self._cancel(frame, far)
        if not suppressed and pcm.rms(cancelled) * AEC_SWALLOWS < pcm.rms(frame):
            cancelled = frame  # AEC3 takes a person talking over the answer for echo
        self.cancelled = cancelled
        return EchoVerdict(cancelled, suppressed)

    def _suppressed(self, frame: bytes) -> bool:
        """The frame may not open a turn: the agent's sound may be all there is in it."""
        level = pcm.rms(frame)
        echo = self.echo.update(self.speaker.take_voice_rms(), level)
        if echo is None:
            self._loud_frames, self._released = 0, False
            return False
        if level > self.echo.margin * echo + 100.0 or self.echo.over_echo:
            self._loud_frames += 2 if level > MUCH_LOUDER * echo + 100.0 else 1
            self._quiet_frames = 0
        else:
            self._loud_frames = 0
            self._quiet_frames += 1
        if self._loud_frames >= BARGE_IN_FRAMES or self.echo.voice_heard or self.echo.over_echo:
            self._released = True
        elif self._quiet_frames >= RELEASE_QUIET_FRAMES:
            self._released = False
        return not self._released

    def _cancel(self, near: bytes, far: bytes) -> bytes:
        import numpy as np  # AEC3 takes arrays; aec mode only

        pair = np.frombuffer(near, dtype="<i2"), np.frombuffer(far, dtype="<i2")
        return bytes(self._canceller.process(*pair).tobytes())
