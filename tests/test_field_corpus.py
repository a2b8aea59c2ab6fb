"""The field corpus (bench/field_corpus.py) says what its WAVs hold, and the field scorer
(bench/field.py) classifies turns as its docstring says."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from bench.field import cut_ms, score
from bench.field_corpus import AUDIBLE, RATE, active_dbfs, build

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def read_mono(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64)
    return pcm.reshape(-1, channels).mean(axis=1), rate, channels


def chunks(utterance: dict[str, Any]) -> list[tuple[float, float]]:
    """The utterance's spoken spans: between its start, its pauses and its end."""
    edges = [utterance["start_s"], *(t for p in utterance["pauses"] for t in p), utterance["end_s"]]
    return list(zip(edges[::2], edges[1::2], strict=True))


def test_the_manifest_says_where_the_speech_is_and_how_loud(tmp_path: Path) -> None:
    clean = build(tmp_path / "clean", "tiny", seed=3, beds=False)  # the foreground alone
    assert [e["category"] for e in clean] == ["first_sample", "pauses", "over_answer"]
    assert clean[0]["utterances"][0]["start_s"] == 0.0
    assert len(clean[1]["utterances"][0]["pauses"]) == 1
    assert [u["over_answer"] for u in clean[2]["utterances"]] == [False, True]
    for entry in clean:
        mono, rate, channels = read_mono(tmp_path / "clean" / entry["file"])
        assert (rate, channels) == (entry["rate"], entry["channels"])
        audible = np.zeros(len(mono), bool)
        for utterance in entry["utterances"]:
            for start_s, end_s in chunks(utterance):
                start, end = round(start_s * rate), round(end_s * rate)
                peak = np.max(np.abs(mono[start : end + 1]))
                heard = np.flatnonzero(np.abs(mono) > AUDIBLE * peak * 0.8)
                heard = heard[(heard > start - rate // 10) & (heard < end + rate // 10)]
                assert abs(heard[0] - start) <= rate * 0.005, (entry["file"], start_s)
                assert abs(heard[-1] - end) <= rate * 0.005, (entry["file"], end_s)
                audible[start : end + 1] = True
        margin = round(rate * 0.005)  # outside the spans, only resampling's ringing
        quiet = ~np.convolve(audible, np.ones(2 * margin + 1, bool), "same")
        assert np.max(np.abs(mono[quiet]), initial=0) < 30
        spoken = sum(u["end_s"] - u["start_s"] for u in entry["utterances"])
        assert entry["noise_s"] == pytest.approx(len(mono) / rate - spoken, abs=0.02)
    first = read_mono(tmp_path / "clean" / clean[0]["file"])[0]
    assert np.max(np.abs(first[:16])) > 20  # speech from the very first samples

    mixed = build(tmp_path / "mixed", "tiny", seed=3)  # with the room, as bench.field runs it
    assert [u["start_s"] for e in mixed for u in e["utterances"]] == [
        u["start_s"] for e in clean for u in e["utterances"]
    ]
    for entry in mixed:
        mono, rate, _ = read_mono(tmp_path / "mixed" / entry["file"])
        at_16k = np.asarray(soxr.resample(mono, rate, RATE))
        for utterance in entry["utterances"]:
            speech = np.concatenate(
                [at_16k[round(s * RATE) : round(e * RATE)] for s, e in chunks(utterance)]
            )
            assert active_dbfs(speech) == pytest.approx(utterance["level_dbfs"], abs=1.0)

    other = build(tmp_path / "other", "tiny", seed=4, beds=False)
    drawn = [[(u["text"], u["level_dbfs"]) for u in e["utterances"]] for e in clean]
    assert drawn != [[(u["text"], u["level_dbfs"]) for u in e["utterances"]] for e in other]


def turn(start: float, end: float, interrupted: bool = False, **extra: Any) -> dict[str, Any]:
    summary = {"start_s": start, "end_s": end, "first_audio_ms": 700.0, "interrupted": interrupted}
    return summary | extra


ENTRY = {
    "file": "hand.wav",
    "category": "pauses",
    "echo": "none",
    "noise_s": 20.0,
    "utterances": [
        {"start_s": 1.0, "end_s": 3.0, "pauses": [], "over_answer": False},
        {"start_s": 8.0, "end_s": 12.0, "pauses": [[10.0, 11.0]], "over_answer": False},
        {"start_s": 13.2, "end_s": 15.0, "pauses": [], "over_answer": True},
    ],
}


def kinds(*turns: dict[str, Any]) -> tuple[list[str], int]:
    result = score(ENTRY, {"turns": list(turns), "errors": []}, None, preroll_s=0.3)
    return [v.kind for v in result.verdicts], result.false


def test_the_scorer_classifies_hand_made_turns() -> None:
    paused = [turn(8.05, 9.98, interrupted=True), turn(11.2, 11.95, interrupted=True)]
    assert kinds(turn(1.05, 2.95), *paused, turn(13.25, 15.0)) == (["whole"] * 3, 0)

    verdicts = score(ENTRY, {"turns": [turn(1.5, 2.9)], "errors": []}, None, 0.3).verdicts
    assert (verdicts[0].kind, verdicts[0].clipped_ms) == ("clipped", 200)
    assert kinds(turn(1.05, 2.5))[0][0] == "truncated"

    assert kinds(turn(8.05, 9.98), turn(11.2, 11.95))[0][1] == "split"  # answer not cut
    in_parts = turn(
        8.05, 11.95, parts=[{"start_s": 8.05, "end_s": 9.98}, {"start_s": 11.2, "end_s": 11.95}]
    )
    assert kinds(in_parts)[0][1] == "whole"
    dropped = turn(
        8.05, 11.95, parts=[{"start_s": 8.05, "end_s": 9.5}, {"start_s": 11.2, "end_s": 11.95}]
    )
    assert kinds(dropped)[0][1] == "gapped"

    assert kinds(turn(1.05, 2.95), turn(5.0, 5.6)) == (["whole", "missed", "missed"], 1)
    assert kinds(turn(1.05, 9.0))[0][:2] == ["merged", "merged"]
    assert kinds(turn(8.05, 11.95, interrupted=False), turn(13.25, 15.0))[0][2] == "uncut"
    assert kinds(turn(8.05, 11.95, interrupted=True), turn(13.25, 15.0))[0][2] == "whole"


def test_the_cut_is_the_first_silence_in_the_output() -> None:
    output = np.zeros(24000 * 4, np.int16)
    output[24000:60000] = 1000  # the answer plays from 1.0 to 2.5 s
    assert cut_ms(output, 1.2) == 1300
    assert cut_ms(output, 3.0) is None
