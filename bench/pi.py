"""python -m bench.pi: instructions per minute of conversation on edge-agent's hot path
(valgrind's callgrind), to judge a change's effect on a Raspberry Pi Zero 2 W without one.

Instruction counts are deterministic, unlike CPU seconds on a shared machine. Start-up (imports,
connecting) costs far more than a minute of talk, so the same conversation is run twice, with N
and with 2N questions, and only the difference is counted: what one more minute costs.

What is counted: `edge-agent simulate` against the emulator (run outside valgrind), the same
code as `run` from the microphone frame to the WebSocket and from the WebSocket to the speaker
period: speech gate, echo guard, agent, LiveSession, the SDK, TLS, the jitter buffer. Separately:
converting device rates with soxr (a 48 kHz microphone and speaker). Not counted: PortAudio,
ALSA and the kernel, which are the same for any client of the same sound card.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from bench.__main__ import spoken_input
from edge_agent.emulator.server import Emulator, EmulatorOptions

PI_HZ = 1.0e9  # Pi Zero 2 W: 4x Cortex-A53 at 1 GHz
PI_IPC = 0.5  # assumed instructions per cycle for CPython on the in-order A53
LEAD_IN_S = 20  # quiet while the SDK loads and connects: a question then would wait (merged)
CONFIG = """
[conversation]
start = "always"
idle_timeout_s = 30
[service]
state_dir = "{state}"
log_level = "warning"
"""
RESAMPLE_SCRIPT = """
import sys
import numpy as np
from edge_agent.audio.resample import Resampler
seconds = float(sys.argv[1])
mic, speaker = Resampler(48000, 16000), Resampler(24000, 48000)
rng = np.random.default_rng(0)
mic_block = rng.integers(-3000, 3000, 1440).astype(np.int16).tobytes()  # 30 ms at 48 kHz
reply_block = rng.integers(-3000, 3000, 480).astype(np.int16).tobytes()  # 20 ms at 24 kHz
for _ in range(int(seconds / 0.03)):
    mic.process(mic_block)
for _ in range(int(seconds / 0.02)):
    speaker.process(reply_block)
"""


def callgrind(command: list[str], out: Path) -> int:
    """Instructions executed by `command` (user space, all threads)."""
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    match = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(samples.tobytes())


async def conversation_cost(folder: Path, questions: int) -> tuple[float, float]:
    """Instructions per minute of conversation for simulate, from an N and a 2N question run."""
    emulator = Emulator(EmulatorOptions(cert_dir=folder))
    await emulator.start()
    config = folder / "pi.toml"
    config.write_text(CONFIG.format(state=folder / "state"))
    counts, minutes = [], []
    try:
        for run, count in enumerate((questions, 2 * questions)):
            speech, _, seconds = spoken_input(folder, count)
            wav = folder / f"input{run}.wav"
            lead_in = np.zeros(16000 * LEAD_IN_S, np.int16)  # the same in both runs: cancels
            write_wav(wav, np.concatenate([lead_in, speech.samples]))
            command = [
                sys.executable,
                "-m",
                "edge_agent",
                "simulate",
                "--config",
                str(config),
                "--input",
                str(wav),
                "--output",
                str(folder / f"reply{run}.wav"),
                "--endpoint",
                emulator.url,
                "--ca-file",
                str(emulator.cert_path),
            ]
            out = folder / f"callgrind{run}.out"
            counts.append(await asyncio.to_thread(callgrind, command, out))
            minutes.append(seconds / 60)
    finally:
        await emulator.stop()
    per_minute = (counts[1] - counts[0]) / (minutes[1] - minutes[0])
    return per_minute, counts[0]


def resampling_cost(folder: Path) -> float:
    """Instructions per minute for soxr at device rates (mic 48->16 kHz, speaker 24->48 kHz),
    counted as the difference between 60 s and 120 s of blocks."""
    script = folder / "resample.py"
    script.write_text(RESAMPLE_SCRIPT)
    one = callgrind([sys.executable, str(script), "60"], folder / "resample1.out")
    two = callgrind([sys.executable, str(script), "120"], folder / "resample2.out")
    return float(two - one)


def pi_percent(instructions_per_minute: float) -> float:
    return instructions_per_minute / 60 / (PI_HZ * PI_IPC) * 100


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pi")
    parser.add_argument("--questions", type=int, default=3, help="questions in the shorter run")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt install valgrind")
    folder = Path(tempfile.mkdtemp(prefix="bench-pi-"))
    talk, startup = asyncio.run(conversation_cost(folder, args.questions))
    resample = resampling_cost(folder)
    rows = [
        ("conversation (simulate, hot path)", talk),
        ("device-rate conversion (soxr)", resample),
        ("total per minute", talk + resample),
    ]
    print(f"{'instructions per minute of conversation':42} {'count':>14} {'Pi Zero 2 W core':>17}")
    for name, value in rows:
        print(f"{name:42} {value:14.3e} {pi_percent(value):16.2f}%")
    print(f"(start-up and {args.questions} questions: {startup:.3e} instructions)")
    print(f"Pi estimate: {PI_HZ / 1e9:g} GHz x {PI_IPC} instructions per cycle, one core")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
