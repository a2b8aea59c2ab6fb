"""Turn-taking on real espeak-ng speech and sox noise: the cases of issue 21, and a subset of the
segmentation corpus (bench/corpus.py) scored by bench/segment.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.corpus import Speech as CorpusSpeech
from bench.corpus import active_rms, at_dbfs, babble, sox_noise
from bench.segment import ensure_corpus, evaluate, totals
from edge_agent.audio import pitch, vad
from edge_agent.audio.echo import EchoGuard
from edge_agent.audio.playback import Speaker
from edge_agent.audio.vad import SpeechGate, TurnAudio, TurnEnd, TurnStart
from edge_agent.config import VadConfig
from edge_agent.simulate import SimulateOptions, simulate
from tests.conftest import missing, read_log, write_wav
from tests.test_simulate import against

if not shutil.which("sox"):
    missing("sox missing")
FRAME = 480  # 30 ms at 16 kHz


def run_gate(
    audio: np.ndarray, config: VadConfig | None = None, guard: EchoGuard | None = None
) -> list[tuple[int, Any]]:
    """(frame index, event) for every gate event but TurnAudio."""
    gate = SpeechGate(config or VadConfig())
    events = []
    pcm = np.clip(audio, -32768, 32767).astype(np.int16)
    for index in range(len(pcm) // FRAME):
        frame = pcm[index * FRAME : (index + 1) * FRAME].tobytes()
        suppressed = False
        if guard is not None:
            verdict = guard.check(frame)
            frame, suppressed = verdict.frame, verdict.suppressed
        events += [(index, e) for e in gate.feed(frame, suppressed) if not isinstance(e, TurnAudio)]
    return events


def starts(events: list[tuple[int, Any]]) -> list[tuple[int, TurnStart]]:
    return [(i, e) for i, e in events if isinstance(e, TurnStart)]


def room(samples: int, dbfs: float = -62.0) -> np.ndarray:
    return at_dbfs(sox_noise(samples / 16000, "brownnoise", seed=1), dbfs)


def test_a_thinking_pause_inside_a_sentence_is_one_turn(speech: Callable[..., np.ndarray]) -> None:
    first = speech("I was wondering", gap_s=0.8, lead_s=0.5)
    audio = np.concatenate([first, speech("what the weather will be like", gap_s=2.0, lead_s=0)])
    events = run_gate(audio + room(len(audio)))
    assert len(starts(events)) == 1
    assert [e.reason for _, e in events if isinstance(e, TurnEnd)] == ["silence"]


def test_a_monologue_past_max_turn_s_goes_on_without_losing_a_frame(
    speech: Callable[..., np.ndarray],
) -> None:
    sentences = ["we walked along the ridge until the sun went down behind the peaks"] * 3
    audio = np.concatenate([speech(*sentences, gap_s=0.3, lead_s=2.0), np.zeros(32000, np.int16)])
    audio = (audio + room(len(audio))).astype(np.int16)  # the first 1.5 s teach the room level
    gate = SpeechGate(VadConfig(max_turn_s=3.0))
    sent: list[bytes] = []
    first_frame: int | None = None
    reasons: list[str] = []
    for index in range(len(audio) // FRAME):
        for event in gate.feed(audio[index * FRAME : (index + 1) * FRAME].tobytes()):
            if isinstance(event, TurnStart):
                assert first_frame is None or event.continued  # no second, separate turn
                if first_frame is None:
                    first_frame = index + 1 - len(event.preroll) // (2 * FRAME)
                sent.append(event.preroll)
            elif isinstance(event, TurnAudio):
                sent.append(event.pcm)
            else:
                reasons.append(event.reason)
    assert reasons.count("max_length") >= 2 and reasons[-1] == "silence"
    assert first_frame is not None
    whole = audio[first_frame * FRAME : first_frame * FRAME + len(b"".join(sent)) // 2]
    assert b"".join(sent) == whole.tobytes()  # every frame once, in order, none dropped


def test_a_burst_of_pink_noise_opens_no_turn() -> None:
    audio = room(16000 * 3)
    for at, dbfs in ((0.5, -20.0), (1.5, -12.0)):
        burst = at_dbfs(sox_noise(0.3, "pinknoise", seed=int(at * 10)), dbfs)
        audio[int(at * 16000) : int(at * 16000) + len(burst)] += burst
    assert starts(run_gate(audio)) == []


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> CorpusSpeech:
    return CorpusSpeech(tmp_path_factory.mktemp("voices"))


def test_questions_over_tv_babble_are_separate_turns(
    speech: Callable[..., np.ndarray], voices: CorpusSpeech
) -> None:
    questions = ("what time is it in Tokyo", "how tall is the Eiffel tower", "why is the sky blue")
    audio = speech(*questions, gap_s=4.0, lead_s=3.0).astype(np.float32)
    level = 20 * np.log10(active_rms(audio) / 32768)
    bed = at_dbfs(babble(voices, len(audio) / 16000, np.random.default_rng(3)), level - 12)
    events = run_gate(audio + bed[: len(audio)])
    assert len(starts(events)) == 3
    assert [e.reason for _, e in events if isinstance(e, TurnEnd)] == ["silence"] * 3


def test_a_steady_tone_in_the_room_does_not_hold_a_turn_open(
    speech: Callable[..., np.ndarray],
) -> None:
    audio = speech("turn off the lights in the kitchen", gap_s=4.0, lead_s=2.0).astype(np.float32)
    tone = at_dbfs(sox_noise(len(audio) / 16000, "sine", "440", "sine", "880"), -30)
    events = run_gate(audio + tone[: len(audio)])
    ends = [(i, e) for i, e in events if isinstance(e, TurnEnd)]
    assert len(starts(events)) == 1 and len(ends) == 1
    assert ends[0][1].reason == "silence"
    assert ends[0][0] * FRAME / 16000 - ends[0][1].speech_end_s < 2.0


def test_a_quiet_speaker_at_minus_30_db_is_heard_from_the_first_word(
    speech: Callable[..., np.ndarray],
) -> None:
    audio = speech("what is the weather like today", "and tomorrow", gap_s=3.0, lead_s=2.0)
    quiet = audio.astype(np.float32) * 10 ** (-30 / 20) + room(len(audio), -72)
    onset = int(np.flatnonzero(np.abs(audio) > 328)[0])
    found = starts(run_gate(quiet))
    assert len(found) == 2
    index, first = found[0]
    assert (index + 1) * FRAME - len(first.preroll) // 2 <= onset + 0.15 * 16000


def test_aec_with_nothing_playing_does_not_clip_the_start(
    speech: Callable[..., np.ndarray],
) -> None:
    audio = speech("what is the weather like today", gap_s=2.0, lead_s=1.0)
    onset = int(np.flatnonzero(np.abs(audio) > 328)[0])
    guard = EchoGuard("aec", Speaker(device_rate=16000, jitter_ms=100), tail_ms=400)
    found = starts(run_gate(audio.astype(np.float32), guard=guard))
    assert len(found) == 1
    index, first = found[0]
    assert (index + 1) * FRAME - len(first.preroll) // 2 <= onset + 0.15 * 16000


async def test_server_vad_waits_for_the_configured_silence(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    first = speech("what is the weather like today in Paris", gap_s=1.2, lead_s=0.5)
    audio = np.concatenate([first, speech("and in London", gap_s=3.0, lead_s=0.0)])
    emulator = await start_emulator()
    config = against(emulator, turns={"mode": "server_vad", "silence_duration_ms": 2000})
    summary = await simulate(config, SimulateOptions(input=write_wav(tmp_path / "in.wav", audio)))
    ends = [e for e in read_log(emulator) if "audioStreamEnd" in e["msg"].get("realtimeInput", {})]
    assert len(ends) == 1 and len(summary["turns"]) == 1


@pytest.fixture(scope="module")
def quick_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")  # made afresh: a stale one would hide a change


def test_the_corpus_subset_meets_the_targets(quick_corpus: Path) -> None:
    manifest = ensure_corpus(quick_corpus, quick=True)
    config = VadConfig()
    result = totals(evaluate(quick_corpus, manifest, lambda: SpeechGate(config)))
    assert result.expected >= 20 and result.noise_min >= 1.0
    assert result.dropped_ms == 0
    assert result.latency_median_ms is not None and result.latency_median_ms <= 800
    assert result.whole_share >= 0.97
    assert result.false_per_10_min <= 1.0


async def test_the_agent_streams_a_continued_turn_without_a_gap(
    start_emulator: Callable[..., Any], speech: Callable[..., np.ndarray], tmp_path: Path
) -> None:
    sentences = ["we walked along the ridge until the sun went down behind the peaks"] * 2
    audio = speech(*sentences, gap_s=3.0, lead_s=1.0)
    emulator = await start_emulator()
    config = against(emulator, vad={"max_turn_s": 2.0})
    await simulate(config, SimulateOptions(input=write_wav(tmp_path / "in.wav", audio)))
    sent = [e["msg"]["realtimeInput"] for e in read_log(emulator) if "realtimeInput" in e["msg"]]
    kinds = [next(iter(m)) for m in sent]
    assert kinds.count("activityStart") >= 3 and kinds.count("activityEnd") == kinds.count(
        "activityStart"
    )
    audio_bytes = sum(int(m["audio"]["data"].strip("<> bytes")) for m in sent if "audio" in m)
    spoken_s = len(speech(sentences[0], gap_s=0, lead_s=0)) / 16000
    assert audio_bytes / 32000 >= 2 * spoken_s  # every word of both sentences went out


def test_tv_babble_alone_rarely_reaches_the_pitch_check(
    voices: CorpusSpeech, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pitch check (the gate's costliest step) runs only for candidates with min_speech_ms
    of voiced frames; a TV's talk seldom gets that far, though many of its frames are voiced."""
    bed = at_dbfs(babble(voices, 60, np.random.default_rng(4)), -35)
    checks: list[bool] = []
    voiced: list[bool] = []
    real_voiced = vad.SpeechGate._voiced

    def counted_check(previous: bytes, frame: bytes) -> bool:
        checks.append(pitch.pitched(previous, frame))
        return checks[-1]

    def counted_voiced(gate: vad.SpeechGate, frame: bytes, power: float) -> bool:
        voiced.append(real_voiced(gate, frame, power))
        return voiced[-1]

    monkeypatch.setattr(vad, "pitched", counted_check)
    monkeypatch.setattr(vad.SpeechGate, "_voiced", counted_voiced)
    assert not starts(run_gate(bed + room(len(bed))))
    assert sum(voiced) > 30 and len(checks) * 10 < sum(voiced), (len(checks), sum(voiced))
