"""python -m bench.levels: instructions per call of the level maths on the per-frame paths
(callgrind; a run of N calls and one of 2N, the difference divided by N, so start-up cancels).

A 30 ms microphone frame at 16 kHz or a 20 ms speaker period at 24 kHz: 480 samples, as bytes
(the speech gate's, echo guard's and Speaker's input) or as an int16 array (numpy's forms).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.footprint import callgrind_command, totals

FORMS = {
    # now: audioop in C on the bytes (edge_agent/audio/pcm.py), no numpy
    "pcm.power: exact mean square (vad.py)": "pcm.power(frame)",
    "pcm.rms (echo.py, playback.py)": "pcm.rms(frame)",
    # before: numpy
    "np.dot float64, exact (vad.py before)": (
        "s = np.frombuffer(frame, '<i2').astype(np.float64); float(np.dot(s, s)) / len(s)"
    ),
    "math.sqrt(np.dot float32) (playback.py before)": (
        "s = period.astype(np.float32); math.sqrt(float(np.dot(s, s)) / len(s))"
    ),
    "np.mean(x*x) float32 (vad.py, long before)": (
        "s = np.frombuffer(frame, '<i2').astype(np.float32); float(np.mean(s * s))"
    ),
}
SCRIPT = """
import math, sys
import numpy as np
from edge_agent.audio import pcm
rng = np.random.default_rng(0)
period = rng.integers(-3000, 3000, 480).astype(np.int16)
frame = period.tobytes()
for _ in range(int(sys.argv[1])):
    {form}
"""


def per_call(form: str, calls: int, folder: Path) -> float:
    script = folder / "form.py"
    script.write_text(SCRIPT.format(form=form))
    counts = []
    for n in (calls, 2 * calls):
        out = folder / f"levels-{n}.out"
        subprocess.run(
            callgrind_command(out, [sys.executable, str(script), str(n)]),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        counts.append(totals(out))
    return (counts[1] - counts[0]) / calls


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.levels")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'form (480 samples)':42} {'instructions/call':>18}")
        for name, form in FORMS.items():
            print(f"{name:42} {per_call(form, args.calls, Path(folder)):18,.0f}")


if __name__ == "__main__":
    main()
