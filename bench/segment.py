"""python -m bench.segment [--quick] [--corpus DIR] [--vad NAME] [--echo MODE]: how the speech
gate cuts the corpus (bench/corpus.py) into turns.

Frames go straight into EchoGuard and SpeechGate, as the Agent feeds them (48 kHz stereo is
mixed down and resampled to 16 kHz with soxr, as the microphone does), without devices or a
service. Per file: the
expected turns, the turns found, whole (one turn, start clipped by at most 150 ms), split, missed,
merged (one turn over two expected), false (no expected turn under it), the worst clipped
start, speech dropped inside turns, and the end of speech -> turn end (hangover included) on
single-sentence questions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from bench.corpus import build
from edge_agent.audio.echo import EchoGuard
from edge_agent.audio.pcm import to_mono
from edge_agent.audio.playback import Speaker
from edge_agent.audio.resample import MODEL_INPUT_RATE
from edge_agent.audio.vad import SpeechGate, TurnEnd, TurnStart
from edge_agent.config import VadConfig

CLIP_LIMIT_MS = 150.0


@dataclass
class Found:
    audio_start_s: float  # the first sample sent (pre-roll included)
    speech_start_s: float
    speech_end_s: float = 0.0
    ended_at_s: float = 0.0  # when the gate said the turn is over


@dataclass
class FileResult:
    name: str
    expected: int
    found: int = 0
    whole: int = 0
    split: int = 0
    missed: int = 0
    merged: int = 0
    false: int = 0
    clipped_ms: list[float] = field(default_factory=list)
    dropped_ms: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    noise_s: float = 0.0


def read_file(path: Path) -> tuple[bytes, int, int]:
    with wave.open(str(path)) as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels()


def gate_turns(path: Path, gate: SpeechGate, guard: EchoGuard | None = None) -> list[Found]:
    """Runs the file through the gate frame by frame; the turns it opened, a turn carried past
    max_turn_s (a TurnStart in the same frame as its TurnEnd) or resumed after a pause counted
    as one.

    The file is mixed down and resampled in one piece: soxr's streaming output can differ by
    one LSB with the memory alignment of each block, which made runs differ now and then."""
    pcm, rate, channels = read_file(path)
    mono = np.frombuffer(to_mono(pcm, channels), "<i2")
    samples = np.asarray(soxr.resample(mono, rate, MODEL_INPUT_RATE, "HQ"), np.int16)
    frame_samples = gate.frame_ms * MODEL_INPUT_RATE // 1000
    frame_s = gate.frame_ms / 1000
    turns: list[Found] = []
    continued_at = -1
    index = 0
    for index in range(1, len(samples) // frame_samples + 1):
        data = samples[(index - 1) * frame_samples : index * frame_samples].tobytes()
        suppressed = False
        if guard is not None:
            verdict = guard.check(data)
            data, suppressed = verdict.frame, verdict.suppressed
        now = index * frame_s
        for event in gate.feed(data, suppressed):
            if isinstance(event, TurnStart):
                if continued_at == index or (event.resumed and turns):
                    continue  # the same turn carried on (the Agent adds a part to it)
                turns.append(Found(event.audio_start_s, event.speech_start_s))
            elif isinstance(event, TurnEnd):
                turns[-1].speech_end_s, turns[-1].ended_at_s = event.speech_end_s, now
                continued_at = index if event.reason == "max_length" else -1
    if turns and turns[-1].ended_at_s == 0.0:
        turns[-1].speech_end_s = turns[-1].ended_at_s = index * frame_s
    return turns


def overlaps(turn: Found, expected: dict[str, Any]) -> bool:
    return turn.speech_start_s < expected["end_s"] and turn.speech_end_s > expected["start_s"]


def score(entry: dict[str, Any], found: list[Found]) -> FileResult:
    expected = entry["turns"]
    result = FileResult(entry["file"], len(expected), len(found), noise_s=entry["noise_s"])
    spans = [[i for i, e in enumerate(expected) if overlaps(t, e)] for t in found]
    result.false = sum(not hits for hits in spans)
    result.merged = sum(len(hits) for hits in spans if len(hits) > 1)
    for i, e in enumerate(expected):
        mine = [t for t, hits in zip(found, spans, strict=True) if i in hits]
        if not mine:
            result.missed += 1
            continue
        clipped = max(0.0, (mine[0].audio_start_s - e["start_s"]) * 1000)
        result.clipped_ms.append(round(clipped, 1))
        covered = sum(
            max(0.0, min(t.ended_at_s, e["end_s"]) - max(t.audio_start_s, e["start_s"]))
            for t in mine
        )
        length_ms = (e["end_s"] - e["start_s"]) * 1000
        result.dropped_ms += max(0.0, length_ms - covered * 1000 - clipped)
        if len(mine) > 1:
            result.split += 1
            continue
        alone = all(hits == [i] for t, hits in zip(found, spans, strict=True) if t is mine[0])
        if alone and clipped <= CLIP_LIMIT_MS:
            result.whole += 1
            if e["single"]:
                result.latency_ms.append((mine[0].ended_at_s - e["end_s"]) * 1000)
    return result


GateFactory = Callable[[], SpeechGate]


def evaluate(
    folder: Path, manifest: list[dict[str, Any]], make_gate: GateFactory, echo: str = "none"
) -> list[FileResult]:
    results = []
    for entry in manifest:
        guard = None
        if echo != "none":
            guard = EchoGuard(echo, Speaker(device_rate=MODEL_INPUT_RATE, jitter_ms=100), 400)
        found = gate_turns(folder / entry["file"], make_gate(), guard)
        results.append(score(entry, found))
    return results


@dataclass
class Totals:
    expected: int
    whole: int
    split: int
    missed: int
    merged: int
    false: int
    clipped_over_limit: int
    dropped_ms: float
    noise_min: float
    latency_median_ms: float | None

    @property
    def whole_share(self) -> float:
        return self.whole / self.expected if self.expected else 1.0

    @property
    def false_per_10_min(self) -> float:
        return self.false / self.noise_min * 10 if self.noise_min else float(self.false)


def totals(results: list[FileResult]) -> Totals:
    latencies = [ms for r in results for ms in r.latency_ms]
    return Totals(
        expected=sum(r.expected for r in results),
        whole=sum(r.whole for r in results),
        split=sum(r.split for r in results),
        missed=sum(r.missed for r in results),
        merged=sum(r.merged for r in results),
        false=sum(r.false for r in results),
        clipped_over_limit=sum(ms > CLIP_LIMIT_MS for r in results for ms in r.clipped_ms),
        dropped_ms=sum(r.dropped_ms for r in results),
        noise_min=sum(r.noise_s for r in results) / 60,
        latency_median_ms=float(np.median(latencies)) if latencies else None,
    )


def table(results: list[FileResult]) -> str:
    head = f"{'file':28}{'expect':>7}{'found':>6}{'whole':>6}{'split':>6}{'miss':>5}"
    head += f"{'merge':>6}{'false':>6}{'clip max ms':>12}{'drop ms':>8}{'end ms':>7}"
    lines = [head]
    for r in results:
        clip = f"{max(r.clipped_ms):.0f}" if r.clipped_ms else "-"
        end = f"{np.median(r.latency_ms):.0f}" if r.latency_ms else "-"
        lines.append(
            f"{r.name[:27]:28}{r.expected:7}{r.found:6}{r.whole:6}{r.split:6}{r.missed:5}"
            f"{r.merged:6}{r.false:6}{clip:>12}{r.dropped_ms:8.0f}{end:>7}"
        )
    t = totals(results)
    end = f"{t.latency_median_ms:.0f}" if t.latency_median_ms is not None else "-"
    lines += [
        f"{'total':28}{t.expected:7}{sum(r.found for r in results):6}{t.whole:6}{t.split:6}"
        f"{t.missed:5}{t.merged:6}{t.false:6}{t.clipped_over_limit:>12}{t.dropped_ms:8.0f}"
        f"{end:>7}",
        f"whole: {t.whole_share * 100:.1f} % of {t.expected} expected turns; false: {t.false} "
        f"in {t.noise_min:.1f} min of noise and babble ({t.false_per_10_min:.2f} per 10 min); "
        f"starts clipped > {CLIP_LIMIT_MS:.0f} ms: {t.clipped_over_limit}; speech dropped "
        f"inside turns: {t.dropped_ms:.0f} ms; end of speech -> turn end, median on "
        f"single-sentence questions: {end} ms",
    ]
    return "\n".join(lines)


def ensure_corpus(folder: Path, quick: bool) -> list[dict[str, Any]]:
    manifest = folder / "manifest.json"
    if manifest.exists():
        loaded: list[dict[str, Any]] = json.loads(manifest.read_text())
        return loaded
    return build(folder, quick)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.segment")
    parser.add_argument("--quick", action="store_true", help="the small subset the tests run")
    parser.add_argument("--corpus", type=Path, help="a folder from bench.corpus (made if empty)")
    parser.add_argument("--echo", default="none", help="[audio] echo: none | half_duplex | aec")
    parser.add_argument("--json", action="store_true", help="totals as JSON")
    args = parser.parse_args()
    name = "segment-quick" if args.quick else "segment-full"
    folder = args.corpus or Path(tempfile.gettempdir()) / f"edge-agent-{name}"
    manifest = ensure_corpus(folder, args.quick)
    config = VadConfig()
    results = evaluate(folder, manifest, lambda: SpeechGate(config), args.echo)
    print(json.dumps(totals(results).__dict__) if args.json else table(results))


if __name__ == "__main__":
    main()
