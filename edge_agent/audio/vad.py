"""SpeechGate: webrtcvad with a noise floor, a voicing check, pre-roll, minimum speech length,
an adaptive hangover and turns continued past their maximum length.

Feed 16 kHz mono frames; it returns what to send: a turn start (with the pre-roll, so onsets are
never cut), the turn's audio, and a turn end. Times are input-timeline seconds (frames counted).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
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
    audio_start_s: float  # where the pre-roll begins
    continued: bool = False  # the previous turn reached max_turn_s; the speech goes on
    resumed: bool = False  # speech again within continuation_ms of the last turn's end


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
WARMUP_QUIET_FRAMES = 8  # ... from frames webrtcvad does not take for speech, once this many
WARMUP_QUIET_UNDER = 31.6  # in a row have been heard 15 dB under the speech heard (not a pause
# inside a word; someone may be talking from the first frame)
WARMUP_MAX_MS = 4000  # or from the quietest part once this long has passed without (a TV on)
STEADY_SPREAD = 4.0  # a fan or a hum: 80 % of its frames within 6 dB
ONSET_MARGIN = 2.5  # a turn reaches back over frames 4 dB over the room (a word's soft start)
ONSET_GAP_FRAMES = 5  # ... across gaps this short (between words)
ONSET_REACH_MS = 1000  # ... at most this far before the frames that opened it
FLOOR_RISE_DB_S = 5.0  # then it follows the room's median level up and down at this pace,
FLOOR_FALL_DB_S = 5.0
FLOOR_RISE_IN_TURN_DB_S = 1.0  # the speaker's own voice moves it slowly (a monologue is not the
LOUD_RUN_MS = 2000  # room), unless loud this long without a dip (no one speaker: a TV came on)
SYLLABLE_GAP_MS = 180  # a candidate's voiced frames may be this far apart (soft syllables)
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
        self._settled = False  # the room's level is known (start-up is over)
        self._warmup: list[tuple[bytes, float, bool, bool]] = []  # frame, power, heard, suppressed
        seconds = self.frame_ms / 1000
        self._floor_up = 10 ** (FLOOR_RISE_DB_S * seconds / 10)
        self._warmup_frames = WARMUP_MS // self.frame_ms
        self._warmup_max_frames = WARMUP_MAX_MS // self.frame_ms
        self._onset_reach = ONSET_REACH_MS // self.frame_ms
        self._floor_up_in_turn = 10 ** (FLOOR_RISE_IN_TURN_DB_S * seconds / 10)
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
        self._candidate_echo = False  # it began while the echo guard held the mic ...
        self._released_at: int | None = None  # ... which let go at this frame
        self._last_echo = -1  # the last frame the echo guard held
        self._candidate_gap = 0  # unvoiced frames since the candidate's last voiced one
        self._min_frames = max(1, config.min_speech_ms // self.frame_ms)
        self._max_candidate = self._min_frames + int(1000 / self.frame_ms)
        self._syllable_gap = max(2, SYLLABLE_GAP_MS // self.frame_ms)  # inside a candidate
        long, short = config.hangover_ms, config.hangover_short_ms
        if hangover_ms is not None:
            long = short = hangover_ms
        self._hangover_frames = max(1, long // self.frame_ms)
        self._short_hangover_frames = max(1, short // self.frame_ms)
        self._short_phrase_frames = config.short_phrase_ms // self.frame_ms
        self._max_frames = int(config.max_turn_s * 1000 / self.frame_ms)
        self._continuation_frames = config.continuation_ms // self.frame_ms
        self._resume_until: int | None = None  # speech starting before this frame resumes a turn
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
    def holding(self) -> bool:
        """Frames are held that may still open a turn (start-up, a candidate)."""
        return bool(self._warmup) or bool(self._candidate)

    @property
    def noise_floor_dbfs(self) -> float:
        return 10 * math.log10(max(self._floor, 1e-3) / 32768**2)

    def _seconds(self, frames: int) -> float:
        return frames * self.frame_ms / 1000

    def _voiced(self, frame: bytes, power: float) -> bool:
        """Loud enough over the room's level (and the absolute minimum) and speech to webrtcvad;
        every frame then moves the room's level (in a turn, see _follow_in_turn)."""
        loud = power > self._min_power and power > self._floor * self._margin
        voiced = loud and bool(self._vad.is_speech(self._for_vad(frame), MODEL_INPUT_RATE))
        if self._in_turn:
            self._follow_in_turn(power)
        else:
            up, down = self._floor_up, self._floor_down
            self._floor = max(1.0, self._floor * (up if power > self._floor else down))
        return voiced

    def _follow_in_turn(self, power: float) -> None:
        """The speaker's own voice moves the room's level slowly (a monologue is not the room),
        unless it stays loud for LOUD_RUN_MS without a dip (no one speaker: a TV came on)."""
        loud = power > self._floor * self._margin
        self._loud_run = self._loud_run + 1 if loud else 0
        slow = loud and self._loud_run < self._loud_run_frames
        up = self._floor_up_in_turn if slow else self._floor_up
        self._floor = max(1.0, self._floor * (up if power > self._floor else self._floor_down))

    def _warm_up(self, frame: bytes, power: float, suppressed: bool) -> list[GateEvent]:
        """Start-up: the frames are kept until the room's level is known: the median of a run
        of room-like frames (_quiet_run: someone may be talking as the agent starts), or after
        WARMUP_MAX_MS without one, of the quietest part (_quietest: a fan, a TV already on).
        Then they are judged against it, as if it had been known from the first: speech heard
        meanwhile opens its turn now, from its first frame."""
        heard = bool(self._vad.is_speech(frame, MODEL_INPUT_RATE))
        self._warmup.append((frame, power, heard, suppressed))
        count = len(self._warmup)
        if count < self._warmup_frames:
            return []
        quiet = self._quiet_run()
        if len(quiet) < WARMUP_QUIET_FRAMES and count < self._warmup_max_frames:
            return []
        room = quiet if len(quiet) >= WARMUP_QUIET_FRAMES else self._quietest()
        self._floor = max(1.0, _median(room))
        self._settled = True
        kept, self._warmup = self._warmup, []
        events: list[GateEvent] = []
        for index, (old, old_power, _, old_suppressed) in enumerate(kept):
            events += self._judge(old, old_power, old_suppressed, index)
        return events

    def _quiet_run(self) -> list[float]:
        """The powers of the longest run of start-up frames that sound like a room: webrtcvad
        does not take them for speech, and they are well under the speech heard (not a pause
        inside a word). A room is quiet for a while; a TV's babble only for a moment."""
        speech = [p for _, p, h, _ in self._warmup if h]
        ceiling = _median(speech) / WARMUP_QUIET_UNDER if speech else math.inf
        longest, start = (0, 0), 0
        for index, (_, power, heard, _) in enumerate(self._warmup):
            if heard or power >= ceiling:
                start = index + 1
            elif index + 1 - start > longest[1] - longest[0]:
                longest = (start, index + 1)
        return [p for _, p, _, _ in self._warmup[longest[0] : longest[1]]]

    def _quietest(self) -> list[float]:
        """A steady sound all along (a fan, a hum): its quietest WARMUP_MS, which no one spoke
        over. A sound that comes and goes (a TV already on): all of it, as it will go on."""
        powers = [p for _, p, _, _ in self._warmup]
        span = self._warmup_frames
        starts = range(0, len(powers) - span + 1, span // 2)
        windows: list[list[float]] = [powers[i : i + span] for i in starts]
        quietest = min(windows, key=_median)
        quietest.sort()
        steady = quietest[len(quietest) * 9 // 10] < STEADY_SPREAD * quietest[len(quietest) // 10]
        return quietest if steady else powers

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
        """`suppressed` (the echo guard's verdict): the frame may not open a turn; it may still
        begin one that opens when the guard lets go (a person talking over a chime or answer)."""
        index = self._frames_seen
        self._frames_seen += 1
        power = pcm.power(frame)
        if not self._settled:
            return self._warm_up(frame, power, suppressed)
        return self._judge(frame, power, suppressed, index)

    def _judge(self, frame: bytes, power: float, suppressed: bool, index: int) -> list[GateEvent]:
        if suppressed:
            self._last_echo = index
        if (
            power <= self._min_power or power <= self._floor * self._margin
        ) and self._quiet_outside(frame, power):
            return []
        voiced = self._voiced(frame, power)
        if self._in_turn:
            return self._inside(frame, voiced, index)
        events = self._outside(frame, voiced, suppressed, index)
        self._last_frame = frame
        return events

    def _quiet_outside(self, frame: bytes, power: float) -> bool:
        """The usual frame, a quiet room between turns, in short (what _voiced and _outside do
        with it): the room's level moves, the frame joins the pre-roll. False: not that case."""
        if self._in_turn or self._candidate:
            return False
        self._floor = max(
            1.0, self._floor * (self._floor_up if power > self._floor else self._floor_down)
        )
        self._preroll.append(frame)
        self._last_frame = frame
        return True

    def _outside(
        self, frame: bytes, voiced: bool, suppressed: bool, index: int
    ) -> list[GateEvent]:
        if not self._candidate and not voiced:
            self._preroll.append(frame)
            return []
        if not self._candidate:
            self._candidate_start = index
            self._candidate_echo, self._released_at = suppressed, None
        elif self._candidate_echo and not suppressed and self._released_at is None:
            self._released_at = index
        self._candidate.append(frame)
        self._candidate_voiced += voiced
        self._candidate_gap = 0 if voiced else self._candidate_gap + 1
        if voiced and self._candidate_pitched < PITCHED_FRAMES:
            self._unchecked.append((self._last_frame, frame))
        if self._candidate_voiced >= self._min_frames:
            self._check_pitch()
        confirmed = self._candidate_pitched >= PITCHED_FRAMES
        if confirmed and self._candidate_voiced >= self._min_frames and not suppressed:
            return [self._open(index)]
        too_long = len(self._candidate) > self._max_candidate
        if too_long or self._candidate_gap > self._syllable_gap:  # a click, a cough: no turn
            if self._candidate_voiced >= self._min_frames and not self._candidate_echo:
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

    def _open(self, index: int) -> TurnStart:
        """The pre-roll reaches back over the word's soft start, and to a speech-like burst just
        before ("so ... what is"); a candidate begun under the echo guard starts where the
        guard let go (the person's voice rose over the echo), not in the echo before it."""
        onset = self._candidate_start if self._candidate else index + 1
        began = onset  # where the speech began (before any reach-back)
        if self._candidate_echo and self._released_at is not None:
            first = began = self._released_at
        else:
            first = max(onset - self._soft_start(), min(onset, self._last_echo + 1))
            if self._near_miss is not None and onset - self._near_miss < len(self._preroll):
                first = min(first, self._near_miss)
        heard = [*self._preroll, *self._candidate]
        oldest = onset - len(self._preroll)  # the frame number of heard[0]
        audio_from = max(oldest, first - self._preroll_frames)
        audio = b"".join(heard[audio_from - oldest :])
        resumed = self._resume_until is not None and began <= self._resume_until
        start = TurnStart(audio, self._seconds(first), self._seconds(audio_from), resumed=resumed)
        self._near_miss = self._resume_until = None
        self._turn_frames = len(self._candidate)
        self._preroll.clear()
        self._drop_candidate()
        self._in_turn, self._silent_frames = True, 0
        self._loud_run = 0
        return start

    def _soft_start(self) -> int:
        """Frames just before the candidate that are a little over the room's level: in steady
        noise a word's first frames are not yet far enough over it to count as speech."""
        threshold = self._floor * ONSET_MARGIN
        frames, reach, gap = list(self._preroll), 0, 0
        for back, frame in enumerate(reversed(frames[-self._onset_reach :]), 1):
            if pcm.power(frame) > threshold:
                reach, gap = back, 0
            else:
                gap += 1
                if gap > ONSET_GAP_FRAMES:
                    break
        return reach

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
        return TurnStart(b"", self._seconds(frame), self._seconds(frame), continued=True)

    def _close(self, end_frame: int, reason: str) -> TurnEnd:
        self._in_turn = False
        self._silent_frames = 0
        if reason == "silence":
            self._resume_until = end_frame + self._continuation_frames
        return TurnEnd(self._seconds(end_frame), reason)

    def forget(self) -> None:
        """Drops what was heard outside a turn (a wake word): no later turn reaches back to it."""
        self._preroll.clear()
        self._drop_candidate()
        self._near_miss = self._resume_until = None

    def force_end(self) -> TurnEnd | None:
        """Ends a turn now (the button took over, the conversation closed)."""
        if not self._in_turn:
            return None
        return self._close(self._frames_seen - self._silent_frames, "forced")



def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
