"""python -m bench.field [--quick] [--seed N] [--corpus DIR] [--echo-mode MODE] [--keep DIR]
[--json]: the field corpus (bench/field_corpus.py) through the whole agent.

Each file runs through `edge_agent.simulate.simulate` with the default config (as `edge-agent
simulate` loads it) against the built-in emulator, with the file's echo (`--echo GAIN@MS`),
two files at a time in worker processes. Each utterance is scored from the returned turns:

- whole: exactly one turn over it, over no other utterance; its audio (pre-roll included) starts
  at most 50 ms after the first word; its last part ends at most 0.3 s before the last word;
  every gap between its parts lies inside one of the utterance's pauses. A paused utterance
  split into two turns is whole too when the two together pass and the first turn's answer was
  cut (`interrupted`). Over the answer: the answer before must have been cut, else "uncut".
- otherwise missed, merged (its turn is over another utterance too), split, clipped (late start),
  gapped (speech dropped between parts), truncated (ends early) or uncut.

A turn over no utterance is a false turn. Also: end of speech -> first answer audio
(`first_audio_ms`) on whole single-sentence questions, and over the answer how long after the
utterance starts the answer stopped (the first 100 ms of silence in the output).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import tempfile
import time
import wave
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.field_corpus import build
from edge_agent.config import Config, load_config
from edge_agent.simulate import NO_TURN, SimulateOptions, parse_echo, simulate

START_LIMIT_S = 0.05  # a turn's audio may start this long after the first word
END_LIMIT_S = 0.3  # its last part may end this long before the last word
GAP_SLACK_S = 0.05  # a gap between parts may reach this far out of a pause (frame rounding)
SILENCE_S = 0.1  # the answer has stopped at the first run this long of silence in the output
SILENT_LEVEL = 2  # output samples this small are silence
OUTPUT_RATE = 24000
CLASSES = ("whole", "missed", "merged", "split", "clipped", "gapped", "truncated", "uncut")


@dataclass
class Turn:
    parts: list[tuple[float, float]]  # speech spans; audio reaches back the pre-roll before each
    interrupted: bool
    first_audio_ms: float | None
    number: int = 0  # the summary's turn it belongs to (a turn's parts are scored apart)
    answer_cut_before: bool = False  # the answer playing when it began was cut


@dataclass
class Verdict:
    kind: str  # one of CLASSES
    clipped_ms: float = 0.0
    single: bool = False  # a single-sentence question (no pauses)
    first_audio_ms: float | None = None
    cut_ms: float | None = None  # over the answer: how soon the answer stopped
    over_answer: bool = False


@dataclass
class FileScore:
    name: str
    category: str
    echo: str
    utterances: int
    turns: int
    noise_s: float
    verdicts: list[Verdict] = field(default_factory=list)
    false: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(v.kind == kind for v in self.verdicts)


def turns_from(summary: dict[str, Any], duration_s: float) -> list[Turn]:
    """The summary's turns, one entry per part (a question said over the answer within
    continuation_ms is a part of the turn before it); a turn without `parts` is one part, an
    unended one ends with the input."""
    turns: list[Turn] = []
    for number, turn in enumerate(summary["turns"]):
        spans = turn.get("parts") or [{"start_s": turn["start_s"], "end_s": turn["end_s"]}]
        interrupted = bool(turn["interrupted"])
        for index, span in enumerate(spans):
            end = float(span["end_s"]) if span["end_s"] is not None else duration_s
            cut_before = interrupted if index else bool(turns and turns[-1].interrupted)
            turns.append(
                Turn(
                    [(float(span["start_s"]), end)],
                    interrupted,
                    turn["first_audio_ms"],
                    number,
                    cut_before,
                )
            )
    return turns


def overlaps(turn: Turn, utterance: dict[str, Any]) -> bool:
    return any(s < utterance["end_s"] and e > utterance["start_s"] for s, e in turn.parts)


def in_a_pause(start: float, end: float, utterance: dict[str, Any]) -> bool:
    return any(
        start >= p_start - GAP_SLACK_S and end <= p_end + GAP_SLACK_S
        for p_start, p_end in utterance["pauses"]
    )


def whole_failure(
    parts: list[tuple[float, float]], utterance: dict[str, Any], preroll_s: float
) -> tuple[str, float]:
    """("", 0) when the parts hold the utterance whole, else the first fault and, for a late
    start, by how many ms."""
    late_ms = (parts[0][0] - preroll_s - utterance["start_s"]) * 1000
    if late_ms > START_LIMIT_S * 1000:
        return "clipped", late_ms
    for (_, end), (start, _) in itertools.pairwise(parts):
        if not in_a_pause(end, start - preroll_s, utterance):
            return "gapped", 0.0
    if parts[-1][1] < utterance["end_s"] - END_LIMIT_S:
        return "truncated", 0.0
    return "", 0.0


def classify(
    index: int, utterances: list[dict[str, Any]], turns: list[Turn], preroll_s: float
) -> Verdict:
    utterance = utterances[index]
    single = not utterance["pauses"]
    mine = [t for t in turns if overlaps(t, utterance)]
    if not mine:
        return Verdict("missed", single=single)
    others = [u for i, u in enumerate(utterances) if i != index]
    if any(overlaps(t, u) for t in mine for u in others):
        return Verdict("merged", single=single)
    if len(mine) == 1:
        fault, late_ms = whole_failure(mine[0].parts, utterance, preroll_s)
    elif all(t.number == mine[0].number for t in mine):  # one turn's parts
        fault, late_ms = whole_failure([p for t in mine for p in t.parts], utterance, preroll_s)
    elif len(mine) == 2 and utterance["pauses"] and mine[0].interrupted:
        fault, late_ms = whole_failure(mine[0].parts + mine[1].parts, utterance, preroll_s)
        fault = "split" if fault == "gapped" else fault
    else:
        return Verdict("split", single=single)
    if fault:
        return Verdict(fault, round(late_ms), single)
    if utterance["over_answer"] and not mine[0].answer_cut_before:
        return Verdict("uncut", single=single)
    return Verdict("whole", single=single, first_audio_ms=mine[-1].first_audio_ms)


def cut_ms(output: np.ndarray, start_s: float) -> float | None:
    """How long after start_s the output fell silent for SILENCE_S; None when nothing played
    then."""
    at = round(start_s * OUTPUT_RATE)
    window = round(SILENCE_S * OUTPUT_RATE)
    loud = np.abs(output[at:]) > SILENT_LEVEL
    if not loud[:window].any():
        return None
    runs = np.convolve(loud, np.ones(window, np.int32), "valid")
    quiet = np.flatnonzero(runs == 0)
    end = int(quiet[0]) if len(quiet) else len(loud)
    return round(end / OUTPUT_RATE * 1000)


def score(
    entry: dict[str, Any], summary: dict[str, Any], output: np.ndarray | None, preroll_s: float
) -> FileScore:
    utterances = entry["utterances"]
    duration = len(output) / OUTPUT_RATE if output is not None else 1e9
    turns = turns_from(summary, duration)
    result = FileScore(
        entry["file"],
        entry["category"],
        entry["echo"],
        len(utterances),
        len(turns),
        float(entry["noise_s"]),
        # "no turn: ..." where no one spoke is the right outcome, not a fault
        errors=[e for e in summary["errors"] if utterances or not e.startswith(NO_TURN)],
    )
    result.false = sum(not any(overlaps(t, u) for u in utterances) for t in turns)
    for index, utterance in enumerate(utterances):
        verdict = classify(index, utterances, turns, preroll_s)
        if utterance["over_answer"] and output is not None:
            verdict.cut_ms = cut_ms(output, utterance["start_s"])
        verdict.over_answer = bool(utterance["over_answer"])
        result.verdicts.append(verdict)
    return result


# ---- running ---------------------------------------------------------------------------------


def default_config(echo_mode: str | None) -> Config:
    config = load_config(None).config
    if echo_mode is not None:
        audio = config.audio.model_copy(update={"echo": echo_mode})
        config = config.model_copy(update={"audio": audio})
    return config


def run_file(
    wav: Path, echo: str, output: Path, echo_mode: str | None
) -> tuple[dict[str, Any], float]:
    """One file through `simulate` in this process; the summary and the wall seconds."""
    logging.basicConfig(level=logging.ERROR)
    gain, delay = parse_echo(echo) if echo != "none" else (0.0, 0.0)
    options = SimulateOptions(input=wav, output=output, echo_gain=gain, echo_delay_ms=delay)
    started = time.monotonic()
    summary = asyncio.run(simulate(default_config(echo_mode), options))
    return summary, time.monotonic() - started


def read_output(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2")


def evaluate(
    folder: Path,
    manifest: list[dict[str, Any]],
    echo_mode: str | None,
    jobs: int = 2,
    keep: Path | None = None,
) -> list[FileScore]:
    """Every file through the agent; `keep`: a folder for each file's output WAV and summary."""
    preroll_s = default_config(echo_mode).vad.preroll_ms / 1000
    with tempfile.TemporaryDirectory(prefix="edge-agent-field-") as scratch:
        where = keep or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        outputs = [where / entry["file"].replace(".wav", ".out.wav") for entry in manifest]
        with ProcessPoolExecutor(jobs) as pool:
            futures = [
                pool.submit(run_file, folder / entry["file"], entry["echo"], out, echo_mode)
                for entry, out in zip(manifest, outputs, strict=True)
            ]
            results = []
            for entry, out, future in zip(manifest, outputs, futures, strict=True):
                summary, _ = future.result()
                if keep is not None:
                    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
                results.append(score(entry, summary, read_output(out), preroll_s))
    return results


# ---- reporting -------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def totals(results: list[FileScore]) -> dict[str, Any]:
    verdicts = [v for r in results for v in r.verdicts]
    kinds = Counter(v.kind for v in verdicts)
    noise_s = sum(r.noise_s for r in results)
    quiet_noise_s = sum(r.noise_s for r in results if r.category == "noise_only")
    false = sum(r.false for r in results)
    false_noise_only = sum(r.false for r in results if r.category == "noise_only")
    categories: dict[str, list[int]] = {}
    for r in results:
        whole, count = categories.get(r.category, [0, 0])
        categories[r.category] = [whole + r.count("whole"), count + r.utterances]
    latencies = [
        v.first_audio_ms for v in verdicts if v.kind == "whole" and v.single and v.first_audio_ms
    ]
    cuts = [v.cut_ms for v in verdicts if v.cut_ms is not None]
    over = [v for v in verdicts if v.over_answer]
    return {
        "utterances": len(verdicts),
        "whole": kinds["whole"],
        "whole_share": kinds["whole"] / len(verdicts) if verdicts else 1.0,
        **{kind: kinds[kind] for kind in CLASSES[1:]},
        "clipped_max_ms": max((v.clipped_ms for v in verdicts if v.kind == "clipped"), default=0),
        "turns": sum(r.turns for r in results),
        "false": false,
        "false_per_10_min": false / noise_s * 600 if noise_s else 0.0,
        "false_noise_only": false_noise_only,
        "noise_only_min": quiet_noise_s / 60,
        "noise_min": noise_s / 60,
        "first_audio_median_ms": median(latencies),
        "over_answer": len(over),
        "over_answer_whole": sum(v.kind == "whole" for v in over),
        "cut_median_ms": median(cuts),
        "cut_max_ms": max(cuts, default=None),
        "errors": sum(len(r.errors) for r in results),
        "categories": {name: {"whole": w, "utterances": n} for name, (w, n) in categories.items()},
    }


def table(results: list[FileScore]) -> str:
    columns = ("utt", "turns", "whole", "miss", "merge", "split", "clip", "gap", "trunc", "uncut")
    head = f"{'file':26}{'echo':>7}" + "".join(f"{c:>6}" for c in columns)
    head += f"{'false':>6}{'clip ms':>8}{'answer ms':>10}{'cut ms':>8}{'errors':>7}"
    lines = [head]
    for r in results:
        counts = [
            r.utterances,
            r.turns,
            *(r.count(kind) for kind in CLASSES[:-1]),
            r.count("uncut"),
        ]
        clips = [v.clipped_ms for v in r.verdicts if v.kind == "clipped"]
        answers = [v.first_audio_ms for v in r.verdicts if v.single and v.first_audio_ms]
        cuts = [v.cut_ms for v in r.verdicts if v.cut_ms is not None]
        lines.append(
            f"{r.name.removesuffix('.wav')[:25]:26}{r.echo:>7}"
            + "".join(f"{c:6}" for c in counts)
            + f"{r.false:6}{_ms(max(clips, default=None)):>8}{_ms(median(answers)):>10}"
            + f"{_ms(median(cuts)):>8}{len(r.errors):7}"
        )
    t = totals(results)
    lines.append(
        f"\nwhole: {t['whole']} of {t['utterances']} utterances ({t['whole_share'] * 100:.1f} %);"
        f" missed {t['missed']}, merged {t['merged']}, split {t['split']}, clipped"
        f" {t['clipped']} (worst {t['clipped_max_ms']:.0f} ms), gapped {t['gapped']}, truncated"
        f" {t['truncated']}, uncut {t['uncut']}"
    )
    lines.append(
        f"turns: {t['turns']}; false: {t['false']} in {t['noise_min']:.1f} min without speech"
        f" ({t['false_per_10_min']:.2f} per 10 min), {t['false_noise_only']} on"
        f" {t['noise_only_min']:.1f} min of noise-only tracks; errors: {t['errors']}"
    )
    lines.append(
        f"end of speech -> first answer audio, median on whole single-sentence questions:"
        f" {_ms(t['first_audio_median_ms'])} ms; said over the answer: {t['over_answer_whole']}"
        f" of {t['over_answer']} whole, the answer stopped after a median"
        f" {_ms(t['cut_median_ms'])} ms (max {_ms(t['cut_max_ms'])} ms)"
    )
    per_category = ", ".join(
        f"{name} {c['whole']}/{c['utterances']}"
        for name, c in t["categories"].items()
        if c["utterances"]
    )
    lines.append(f"whole per category: {per_category}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def ensure_corpus(folder: Path, quick: bool, seed: int) -> list[dict[str, Any]]:
    manifest = folder / "manifest.json"
    if manifest.exists():
        loaded: list[dict[str, Any]] = json.loads(manifest.read_text())
        return loaded
    return build(folder, "quick" if quick else "full", seed)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.field")
    parser.add_argument("--quick", action="store_true", help="the small corpus (about 5 min)")
    parser.add_argument("--seed", type=int, default=1, help="the corpus seed (when it is made)")
    parser.add_argument(
        "--corpus", type=Path, help="a folder from bench.field_corpus (made if empty)"
    )
    parser.add_argument(
        "--echo-mode",
        choices=("half_duplex", "aec", "none"),
        help="[audio] echo (default: the config's)",
    )
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--keep", type=Path, help="keep each file's output WAV and summary here")
    parser.add_argument("--json", action="store_true", help="totals as JSON")
    args = parser.parse_args()
    started = time.monotonic()
    name = f"field-{'quick' if args.quick else 'full'}-seed{args.seed}"
    folder = args.corpus or Path(tempfile.gettempdir()) / f"edge-agent-{name}"
    manifest = ensure_corpus(folder, args.quick, args.seed)
    results = evaluate(folder, manifest, args.echo_mode, args.jobs, args.keep)
    wall_s = time.monotonic() - started
    if args.json:
        print(json.dumps({**totals(results), "wall_s": round(wall_s, 1)}))
    else:
        print(table(results))
        print(f"wall time: {wall_s:.0f} s ({folder})")


if __name__ == "__main__":
    main()
