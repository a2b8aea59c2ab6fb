"""Wake word: microWakeWord models (pymicro-wakeword), a capability above the Agent.

Imported only with [conversation] start = "wake_word". The driver hands every 16 kHz mic frame
to WakeWord.on_frame after the Agent has taken it; a detection calls agent.wake("wake word").
The agent's own voice must not wake it: with echo = "aec" the detector hears the cancelled
signal; otherwise a detection while the speaker plays counts only if the same model did not
fire on the speaker's outgoing audio (a second detector on the playback reference) within
ECHO_WINDOW_S.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.audio.playback import Speaker
from edge_agent.audio.resample import MODEL_INPUT_RATE, Resampler
from edge_agent.config import Config, WakeWordConfig
from edge_agent.errors import UserError
from edge_agent.events import AgentEvent, ConversationChanged

log = logging.getLogger(__name__)

WAKE_SOURCE = "wake word"
ECHO_WINDOW_S = 0.3  # the same model on the speaker's audio this close: the agent's own voice
SILENCE_CLOSE_S = 6.0  # a conversation called up but not spoken to closes after this long
REFERENCE_LIMIT_S = 1.0  # speaker audio kept for the loop at most (a stalled loop drops it)
INSTALL_HINT = "pip install 'edge-agent[wake]' (pymicro-wakeword>=2.5,<3)"


@dataclass(frozen=True)
class WakeModel:
    name: str  # as configured
    wake_word: str  # as the model's JSON says it
    tflite: Path
    cutoff: float
    window: int


def load_models(config: WakeWordConfig) -> list[WakeModel]:
    """Resolves built-in names and custom .json paths; anything wrong is a UserError."""
    builtin_dir = _package_dir() / "models"
    models = []
    for name in config.models:
        path = Path(name).expanduser() if name.endswith(".json") else builtin_dir / f"{name}.json"
        if not path.is_file():
            builtins = sorted(p.stem for p in builtin_dir.glob("*.json"))
            raise UserError(
                f"[wake_word] models: {name!r} is neither a built-in model "
                f"({', '.join(builtins)}) nor a microWakeWord .json file"
            )
        models.append(_read_model(name, path, config))
    return models


def _package_dir() -> Path:
    try:
        import pymicro_wakeword
    except ImportError:
        raise UserError(f'[conversation] start = "wake_word" needs {INSTALL_HINT}') from None
    return Path(pymicro_wakeword.__file__).parent


def _read_model(name: str, path: Path, config: WakeWordConfig) -> WakeModel:
    try:
        data = json.loads(path.read_text("utf-8"))
        micro = data["micro"]
        tflite = path.parent / str(data["model"])
        cutoff = config.probability_cutoff or float(micro["probability_cutoff"])
        window = config.sliding_window or int(micro["sliding_window_size"])
        wake_word = str(data.get("wake_word", name))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"[wake_word] models: {path}: not a microWakeWord model ({exc})") from None
    try:
        with tflite.open("rb") as model_file:
            is_tflite = model_file.read(8)[4:8] == b"TFL3"  # the flatbuffer's identifier
    except OSError:
        is_tflite = False
    if not is_tflite:
        raise UserError(f"[wake_word] models: {path}: {tflite} is missing or not a .tflite model")
    if not 0.0 < cutoff < 1.0 or window < 1:
        raise UserError(f"[wake_word] models: {path}: bad probability_cutoff or window size")
    return WakeModel(name, wake_word, tflite, cutoff, window)


def _tflite_library() -> Path:
    found = next(iter((_package_dir() / "lib").glob("*tensorflowlite_c.*")), None)
    if found is None:  # pymicro-wakeword 1.x has no bundled TFLite
        raise UserError(f"pymicro-wakeword without its TFLite library: {INSTALL_HINT}")
    return found


def check_models(config: WakeWordConfig) -> None:
    """Everything load_models and the detector would refuse, without starting one."""
    library = _tflite_library()
    for model in load_models(config):
        _check_loadable(library, model.tflite)


def _check_loadable(library: Path, tflite: Path) -> None:
    """pymicro-wakeword goes on with a model TFLite refused, and crashes: ask TFLite first."""
    from pymicro_wakeword.wakeword import TfLiteWakeWord

    lib = TfLiteWakeWord(library).lib
    loaded = lib.TfLiteModelCreateFromFile(str(tflite.resolve()).encode())
    if not loaded:
        raise UserError(f"[wake_word] models: {tflite} is not a valid TFLite model")
    lib.TfLiteModelDelete(loaded)


class Detector:
    """One signal (the mic or the speaker): one feature frontend, a streaming model per word."""

    def __init__(self, models: list[WakeModel]) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

        library = _tflite_library()
        for model in models:
            _check_loadable(library, model.tflite)
        self.features = MicroWakeWordFeatures()
        self.models = [
            MicroWakeWord(
                model.name,
                wake_word=model.wake_word,
                tflite_model=model.tflite,
                probability_cutoff=model.cutoff,
                sliding_window_size=model.window,
                trained_languages=[],
                libtensorflowlite_c_path=library,
            )
            for model in models
        ]

    def feed(self, pcm16k: bytes) -> list[int]:
        """The indices of the models that fire on this audio (each 30 ms step may fire)."""
        fired: list[int] = []
        for features in self.features.process_streaming(pcm16k):
            for index, model in enumerate(self.models):
                if model.process_streaming(features) and index not in fired:
                    fired.append(index)
        return fired


class SpeakerTap:
    """The speaker's outgoing mix, handed from the audio thread to the loop at 16 kHz."""

    def __init__(self, speaker: Speaker) -> None:
        self._to_16k = Resampler(speaker.device_rate, MODEL_INPUT_RATE)
        self._limit = int(speaker.device_rate * REFERENCE_LIMIT_S)
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._size = 0  # samples
        previous = speaker.reference_sink

        def sink(mix: bytes) -> None:
            if previous is not None:
                previous(mix)
            self._push(mix)

        speaker.reference_sink = sink

    def _push(self, mix: bytes) -> None:  # the audio thread: a lock, no more
        with self._lock:
            self._chunks.append(mix)
            self._size += len(mix) // 2
            while self._size > self._limit:
                self._size -= len(self._chunks.pop(0)) // 2

    def take(self, wanted: bool) -> bytes | None:
        """Everything played since the last call at 16 kHz, if wanted (else it is dropped)."""
        with self._lock:
            chunks, self._chunks, self._size = self._chunks, [], 0
        if not chunks or not wanted:
            return None
        return self._to_16k.process(b"".join(chunks))


class WakeWord:
    def __init__(self, config: Config, agent: Agent, speaker: Speaker) -> None:
        self.agent = agent
        self.speaker = speaker
        self.models = load_models(config.wake_word)
        self.mic = Detector(self.models)
        self.aec = config.audio.echo == "aec"
        # with aec the detector hears the cancelled signal; otherwise it checks the speaker's
        self.reference = None if self.aec else Detector(self.models)
        self.tap = None if self.aec else SpeakerTap(speaker)
        self.refractory_s = config.wake_word.refractory_s
        self.echo_tail_s = config.audio.echo_tail_ms / 1000
        self.frame_s = config.vad.frame_ms / 1000
        self.now = 0.0  # the mic timeline: frames seen
        self._heard_at = -1e9  # the last mic detection taken (or refused as an echo)
        self._speaker_fired: dict[int, float] = {}  # model index -> when it fired on the speaker
        self._pending: tuple[int, float] | None = None  # a detection awaiting the echo verdict
        self._called_at: float | None = None  # a conversation opened, no turn yet
        self._turns_when_called = 0
        agent.listeners.append(self._on_event)
        names = ", ".join(f"{m.name} (cutoff {m.cutoff:g}, window {m.window})" for m in self.models)
        log.info("listening for the wake word: %s", names)

    def wrap(self, on_mic_frame: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def on_frame(frame: bytes) -> None:
            on_mic_frame(frame)
            self.on_frame(frame)

        return on_frame

    def on_frame(self, frame: bytes) -> None:
        """After the Agent has taken the frame (so a wake starts with the next one)."""
        self.now += self.frame_s
        self._close_if_silent()
        muted = self.agent.muted
        playing = not muted and self._speaker_playing()
        if self.tap is not None and self.reference is not None:
            played = self.tap.take(playing or self._pending is not None)
            for index in self.reference.feed(played) if played else ():
                self._speaker_fired[index] = self.now
        if muted:
            self._pending = None
            return
        signal = self.agent.echo.cancelled if self.aec else frame
        for index in self.mic.feed(signal):
            self._heard(index, playing)
        self._settle_pending()

    def _heard(self, index: int, playing: bool) -> None:
        if self.now - self._heard_at < self.refractory_s or self._pending is not None:
            return
        if playing and not self.aec:
            self._pending = (index, self.now)
        else:
            self._wake(index)

    def _settle_pending(self) -> None:
        if self._pending is None:
            return
        index, heard_at = self._pending
        fired = self._speaker_fired.get(index, -1e9)
        if abs(fired - heard_at) <= ECHO_WINDOW_S:
            self._pending, self._heard_at = None, heard_at
            log.info("wake word %r in the agent's own voice: ignored", self.models[index].name)
        elif self.now - heard_at >= ECHO_WINDOW_S:
            self._pending = None
            self._wake(index)

    def _wake(self, index: int) -> None:
        self._heard_at = self.now
        log.info("wake word: %s at %.2f s", self.models[index].wake_word, self.now)
        self.agent.wake(WAKE_SOURCE)

    def _speaker_playing(self) -> bool:
        speaker = self.speaker
        return speaker.speaking or speaker.quiet_ms() < self.echo_tail_s * 1000

    def _on_event(self, event: AgentEvent) -> None:
        """A conversation the wake word (or a press) opened must hear speech soon."""
        if isinstance(event, ConversationChanged):
            called = event.open and event.reason in (WAKE_SOURCE, "button")
            self._called_at = self.now if called else None
            self._turns_when_called = self.agent.ledger.count

    def _close_if_silent(self) -> None:
        if self._called_at is None:
            return
        agent = self.agent
        if agent.ledger.count != self._turns_when_called or not agent.conversation.listening:
            self._called_at = None
        elif self.now - self._called_at >= SILENCE_CLOSE_S and not agent.busy:
            self._called_at = None
            agent.close_conversation(f"nothing said within {SILENCE_CLOSE_S:g} s of the call")
