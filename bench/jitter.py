"""python -m bench.jitter: the Speaker's jitter buffer under steady, bursty and stalling delivery,
on a virtual clock (deterministic): how long the first audio of each reply waits after its first
chunk arrived, and the underruns. "fixed" is the buffer before issue 22 (always jitter_ms before
playback starts), "adaptive" the one now (the delivery jitter observed, at most jitter_ms).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator

import numpy as np

from edge_agent.audio.playback import Speaker

RATE = 24000  # the device at the model's rate
PERIOD = RATE * 20 // 1000
REPLIES = 8
REPLY_S = 3.0


class FixedSpeaker(Speaker):
    """The jitter buffer as it was: playback starts once jitter_ms is buffered."""

    def start_samples(self) -> int:
        return self.jitter_samples


def steady(chunk_ms: int = 40, speedup: float = 1.5) -> Iterator[tuple[float, int]]:
    """(arrival offset s, samples): the service sends faster than real time."""
    for index in range(int(REPLY_S * 1000 / chunk_ms)):
        yield index * chunk_ms / 1000 / speedup, RATE * chunk_ms // 1000


def bursty() -> Iterator[tuple[float, int]]:
    """Steady at 1.5x, each chunk up to 120 ms late (uniform, seeded); a late chunk holds back
    the ones behind it (one TCP stream), so they arrive in a burst."""
    rng = np.random.default_rng(len(bursty.__name__))
    latest = 0.0
    for offset, samples in steady():
        latest = max(latest, offset + float(rng.uniform(0, 0.12)))
        yield latest, samples


def stall() -> Iterator[tuple[float, int]]:
    """Steady at 1.5x, with one 200 ms stall after the first 0.5 s of audio."""
    for offset, samples in steady():
        yield offset + (0.2 if offset >= 0.5 / 1.5 else 0.0), samples


PATTERNS = {"steady 1.5x": steady, "bursty": bursty, "stall 200 ms": stall}


def run(kind: type[Speaker], pattern: str, jitter_ms: int) -> tuple[list[float], int]:
    now = [0.0]
    speaker = kind(RATE, jitter_ms=jitter_ms, clock=lambda: now[0])
    waits = []
    for _ in range(REPLIES):
        start = now[0]
        arrivals = sorted(PATTERNS[pattern]())
        index = 0
        while index < len(arrivals) or speaker.buffered_s:
            while index < len(arrivals) and arrivals[index][0] <= now[0] - start:
                speaker.play(np.full(arrivals[index][1], 1000, np.int16).tobytes())
                index += 1
                if index == len(arrivals):
                    speaker.end_of_reply()
            speaker.pull(PERIOD)
            now[0] += PERIOD / RATE
        assert speaker.first_sample_at is not None
        waits.append((speaker.first_sample_at - start) * 1000)
        for _ in range(50):  # a second between replies
            speaker.pull(PERIOD)
            now[0] += PERIOD / RATE
    return waits, speaker.underruns


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jitter")
    parser.add_argument("--jitter-ms", type=int, default=100)
    args = parser.parse_args()
    print(f"{REPLIES} replies of {REPLY_S:g} s, device period 20 ms, jitter_ms {args.jitter_ms}")
    header = f"{'delivery':14} {'buffer':9} {'first reply ms':>15} {'median ms':>10}"
    print(f"{header} {'underruns':>10}")
    for pattern in PATTERNS:
        for name, kind in (("fixed", FixedSpeaker), ("adaptive", Speaker)):
            waits, underruns = run(kind, pattern, args.jitter_ms)
            median = statistics.median(waits)
            print(f"{pattern:14} {name:9} {waits[0]:15.0f} {median:10.0f} {underruns:10d}")


if __name__ == "__main__":
    main()
