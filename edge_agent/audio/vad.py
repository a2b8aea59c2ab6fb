"""SpeechGate: webrtcvad with a noise floor, a voicing check, pre-roll, minimum speech length,
an adaptive hangover and turns continued past their maximum length.

Feed 16 kHz mono frames; it returns what to send: a turn start (with the pre-roll, so onsets are
never cut), the turn's audio, and a turn end. Times are input-timeline seconds (frames counted).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import webrtcvad

from edge_agent.audio import pcm
from edge_agent.audio.pitch import pitched
from edge_agent.audio.resample import MODEL_INPUT_RATE
from edge_agent.config import VadConfig


@dataclass(frozen=True)
class TurnStart:
    preroll: bytes  # audio from before the onset through the frame that confirmed speech
    speech_start_s: float
    continued: bool = False  # the previous turn reached max_turn_s; the speech goes on


@dataclass(frozen=True)
class TurnAudio:
    pcm: bytes


@dataclass(frozen=True)
class TurnEnd:
    speech_end_s: float  # end of the last voiced frame: the hangover is not counted
    reason: str  # "silence" | "max_length" (a continued TurnStart follows) | "forced"


GateEvent = TurnStart | TurnAudio | TurnEnd

# The room's level (a frame's power), against which speech is judged:
WARMUP_MS = 600  # learnt at start-up (no turn opens meanwhile; speech heard then is kept) ...
WARMUP_QUIET_FRAMES = 3  # ... from frames webrtcvad does not take for speech, if this many
FLOOR_RISE_DB_S = 5.0  # then it follows the room's median level up and down at this pace,
FLOOR_FALL_DB_S = 5.0
FLOOR_RISE_IN_TURN_DB_S = 1.0  # the speaker's own voice moves it slowly (a monologue is not the
LOUD_RUN_MS = 2000  # room), unless loud this long without a dip (no one speaker: a TV came on)
PITCHED_FRAMES = 2  # voiced frames with a pitch peak (audio/pitch.py) before a turn opens
LOOKBACK_MS = 2000  # a speech-like burst this shortly before a turn opens belongs to it
QUIET_ROOM_DBFS = -55.0  # a quieter noise floor is raised to this level for webrtcvad ...
MAX_VAD_GAIN = 31.6  # ... by at most 30 dB


class SpeechGate:
    """A turn opens on speech that is loud enough over the room's tracked noise floor and sounds
    voiced (a pitch peak in the cepstrum), and closes after a hangover that is longer after a
    short phrase (a thinking pause) than after a long one. A turn reaching max_turn_s is closed
    and continued in the same frame, so no audio is dropped.
    """

    def __init__(self, config: VadConfig, hangover_ms: int | None = None) -> None:
        """`hangover_ms` replaces the adaptive hangover (server_vad: the service's silence)."""
        self.frame_ms = config.frame_ms
        self._vad = webrtcvad.Vad(config.aggressiveness)
        self._min_power = (32768 * 10 ** (config.min_level_dbfs / 20)) ** 2
        self._margin = 10 ** (config.noise_margin_db / 10)
        self._quiet_room_power = (32768 * 10 ** (QUIET_ROOM_DBFS / 20)) ** 2
        self._floor = 1.0  # the room's level (power)
        self._warmup: list[tuple[float, bool]] = []
        seconds = self.frame_ms / 1000
        self._floor_up = 10 ** (FLOOR_RISE_DB_S * seconds / 10)
        self._floor_up_in_turn = 10 ** (FLOOR_RISE_IN_TURN_DB_S * seconds / 10)
        self._warmup_frames = WARMUP_MS // self.frame_ms
        self._loud_run = 0
        self._loud_run_frames = LOUD_RUN_MS // self.frame_ms
        self._floor_down = 10 ** (-FLOOR_FALL_DB_S * seconds / 10)
        self._preroll_frames = max(1, config.preroll_ms // self.frame_ms)
        lookback = max(self._preroll_frames, LOOKBACK_MS // self.frame_ms)
        self._preroll: deque[bytes] = deque(maxlen=lookback)
        self._near_miss: int | None = None  # where the last speech-like burst started
        self._candidate: list[bytes] = []
        self._candidate_voiced = 0
        self._candidate_pitched = 0
        self._unchecked: list[tuple[bytes, bytes]] = []  # voiced (previous, frame) pairs
        self._candidate_power = 0.0  # of its voiced frames, summed
        self._early: tuple[int, float] | None = None  # speech confirmed while warming up
        self._power = 0.0  # the last frame's
        self._candidate_gap = 0  # unvoiced frames since the candidate's last voiced one
        self._min_frames = max(1, config.min_speech_ms // self.frame_ms)
        self._max_candidate = self._min_frames + int(1000 / self.frame_ms)
        long, short = config.hangover_ms, config.hangover_short_ms
        if hangover_ms is not None:
            long = short = hangover_ms
        self._hangover_frames = max(1, long // self.frame_ms)
        self._short_hangover_frames = max(1, short // self.frame_ms)
        self._short_phrase_frames = config.short_phrase_ms // self.frame_ms
        self._max_frames = int(config.max_turn_s * 1000 / self.frame_ms)
        self._frames_seen = 0
        self._last_frame = b""
        self._in_turn = False
        self._turn_frames = 0
        self._silent_frames = 0
        self._candidate_start = 0

    @property
    def in_turn(self) -> bool:
        return self._in_turn

    @property
    def noise_floor_dbfs(self) -> float:
        return 10 * math.log10(max(self._floor, 1e-3) / 32768**2)

    def _seconds(self, frames: int) -> float:
        return frames * self.frame_ms / 1000

    def _voiced(self, frame: bytes, power: float) -> bool:
        """Loud enough over the room's level (and the absolute minimum) and speech to webrtcvad;
        every frame then moves the room's level (the speaker's own voice only slowly)."""
        warming = self._frames_seen <= self._warmup_frames
        loud = power > self._min_power and power > self._floor * self._margin
        asked = loud or warming
        heard = asked and self._vad.is_speech(self._for_vad(frame), MODEL_INPUT_RATE)
        voiced = loud and bool(heard)
        if warming:  # candidates form (no turn opens yet) while the room's level is learnt
            self._warm_up(power, bool(heard))
            return voiced
        up, down = self._floor_up, self._floor_down
        self._loud_run = self._loud_run + 1 if loud else 0
        if self._in_turn and loud and self._loud_run < self._loud_run_frames:
            up = self._floor_up_in_turn  # the speaker's own voice moves the room level slowly;
            # loud without a dip for seconds is no one speaker (a TV came on): it moves it fast
        self._floor = max(1.0, self._floor * (up if power > self._floor else down))
        return voiced

    def _warm_up(self, power: float, speech: bool) -> None:
        """Start-up: the room's level is the median of the frames webrtcvad does not take for
        speech (someone talking as the agent starts), or of all frames (a TV already on)."""
        self._warmup.append((power, speech))
        quiet = [p for p, s in self._warmup if not s]
        heard = quiet if len(quiet) >= WARMUP_QUIET_FRAMES else [p for p, _ in self._warmup]
        self._floor = max(1.0, _median(heard))

    def _for_vad(self, frame: bytes) -> bytes:
        """webrtcvad's models start out tuned for ordinary levels: a quiet room's frames are
        raised so that its floor sits at QUIET_ROOM_DBFS (a far or soft speaker is then heard
        from the first word)."""
        if self._floor >= self._quiet_room_power:
            return frame
        gain = min(MAX_VAD_GAIN, math.sqrt(self._quiet_room_power / self._floor))
        return pcm.scale(frame, gain)

    def is_speech(self, frame: bytes) -> bool:
        """Would this frame count as speech now (the room's level is left as it is)."""
        power = pcm.power(frame)
        if power <= self._min_power or power <= self._floor * self._margin:
            return False
        return bool(self._vad.is_speech(self._for_vad(frame), MODEL_INPUT_RATE))

    def feed(self, frame: bytes, suppressed: bool = False) -> list[GateEvent]:
        """`suppressed` (the echo guard's verdict) keeps the frame from opening a turn."""
        index = self._frames_seen
        self._frames_seen += 1
        power = self._power = pcm.power(frame)
        if (
            power <= self._min_power or power <= self._floor * self._margin
        ) and self._quiet_outside(frame, power):
            return []
        voiced = self._voiced(frame, power) and not suppressed
        if self._in_turn:
            return self._inside(frame, voiced, index)
        events = self._outside(frame, voiced, index)
        self._last_frame = frame
        if self._frames_seen == self._warmup_frames + 1 and not events:
            events = self._after_warmup()
        return events

    def _quiet_outside(self, frame: bytes, power: float) -> bool:
        """The usual frame, a quiet room between turns, in short (what _voiced and _outside do
        with it): the room's level moves, the frame joins the pre-roll. False: not that case."""
        if self._in_turn or self._candidate or self._frames_seen <= self._warmup_frames + 1:
            return False
        self._loud_run = 0
        self._floor = max(
            1.0, self._floor * (self._floor_up if power > self._floor else self._floor_down)
        )
        self._preroll.append(frame)
        self._last_frame = frame
        return True

    def _after_warmup(self) -> list[GateEvent]:
        """Speech heard while the room's level was learnt opens its turn now, if it stands out
        from the room as learnt (the agent started while someone talked; not a TV already on)."""
        early, self._early = self._early, None
        if early is None or early[1] <= self._floor * self._margin:
            return []
        if self._frames_seen - early[0] > len(self._preroll) + len(self._candidate):
            return []
        self._near_miss = early[0]
        return [self._open()]

    def _outside(self, frame: bytes, voiced: bool, index: int) -> list[GateEvent]:
        if not self._candidate and not voiced:
            self._preroll.append(frame)
            return []
        if not self._candidate:
            self._candidate_start = index
        self._candidate.append(frame)
        self._candidate_voiced += voiced
        self._candidate_gap = 0 if voiced else self._candidate_gap + 1
        if voiced and self._candidate_pitched < PITCHED_FRAMES:
            self._unchecked.append((self._last_frame, frame))
        if self._candidate_voiced >= self._min_frames:
            self._check_pitch()
        self._candidate_power += self._power if voiced else 0.0
        settled = self._frames_seen > self._warmup_frames
        confirmed = self._candidate_pitched >= PITCHED_FRAMES
        if confirmed and self._candidate_voiced >= self._min_frames:
            if settled:
                return [self._open()]
            if self._early is None:
                power = self._candidate_power / self._candidate_voiced
                self._early = (self._candidate_start, power)
        too_long = len(self._candidate) > self._max_candidate
        if too_long or self._candidate_gap > max(
            2, self._min_frames // 2
        ):  # a click, a cough: no turn
            if self._candidate_voiced >= self._min_frames:
                self._near_miss = self._candidate_start
            for old in self._candidate:
                self._preroll.append(old)
            self._drop_candidate()
        return []

    def _check_pitch(self) -> None:
        """The candidate's voiced frames get the pitch check (the gate's costliest step) once
        they add up to min_speech_ms, newest first (a word's first frames often have no pitch
        yet), until PITCHED_FRAMES have a peak. Whether that many have one does not depend on
        when or in which order they are checked; a TV's bursts of talk seldom get that far."""
        while self._unchecked and self._candidate_pitched < PITCHED_FRAMES:
            self._candidate_pitched += pitched(*self._unchecked.pop())

    def _drop_candidate(self) -> None:
        self._candidate, self._candidate_voiced, self._candidate_pitched = [], 0, 0
        self._unchecked = []
        self._candidate_power = 0.0

    def _open(self) -> TurnStart:
        """The pre-roll reaches back to a speech-like burst just before ("so ... what is")."""
        onset = self._candidate_start if self._candidate else self._frames_seen
        first = onset
        if self._near_miss is not None and onset - self._near_miss < len(self._preroll):
            first = self._near_miss
        keep = min(len(self._preroll), onset - first + self._preroll_frames)
        audio = b"".join([*list(self._preroll)[len(self._preroll) - keep :], *self._candidate])
        start = TurnStart(audio, self._seconds(first))
        self._near_miss = None
        self._turn_frames = len(self._candidate)
        self._preroll.clear()
        self._drop_candidate()
        self._in_turn, self._silent_frames = True, 0
        return start

    def _inside(self, frame: bytes, voiced: bool, index: int) -> list[GateEvent]:
        self._turn_frames += 1
        self._silent_frames = 0 if voiced else self._silent_frames + 1
        events: list[GateEvent] = [TurnAudio(frame)]
        short = self._turn_frames - self._silent_frames < self._short_phrase_frames
        hangover = self._short_hangover_frames if short else self._hangover_frames
        if self._silent_frames >= hangover:
            end = index + 1 - self._silent_frames
            events.append(self._close(end, "silence"))
        elif self._turn_frames >= self._max_frames:
            events.append(self._close(index + 1, "max_length"))
            events.append(self._continue(index + 1))
        return events

    def _continue(self, frame: int) -> TurnStart:
        """The turn goes on past max_turn_s: a new one starts with the next frame."""
        self._in_turn, self._turn_frames = True, 0
        return TurnStart(b"", self._seconds(frame), continued=True)

    def _close(self, end_frame: int, reason: str) -> TurnEnd:
        self._in_turn = False
        self._silent_frames = 0
        return TurnEnd(self._seconds(end_frame), reason)

    def forget(self) -> None:
        """Drops what was heard outside a turn (a wake word): no later turn reaches back to it."""
        self._preroll.clear()
        self._drop_candidate()
        self._near_miss = self._early = None

    def force_end(self) -> TurnEnd | None:
        """Ends a turn now (the button took over, the conversation closed)."""
        if not self._in_turn:
            return None
        return self._close(self._frames_seen - self._silent_frames, "forced")



def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
