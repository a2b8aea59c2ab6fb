"""python -m bench [--json] [--questions N]: edge-agent and a baseline client, side by side."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from bench.figures import Speech
from bench.harness import JackServer, RunResult, run_client

# what a run needs beyond edge-agent's own dependencies (bench-io imports jack)
MODULES = {"jack": "JACK-Client", "cv2": "opencv-python-headless"}  # the [bench] extra
PROGRAMS = ("jackd", "jack_wait", "espeak-ng")


def missing() -> str | None:
    """What is not installed, and how to install it, as one line; None when all is there."""
    problems = []
    modules = [name for module, name in MODULES.items() if not importlib.util.find_spec(module)]
    if modules:
        problems.append(
            f"{', '.join(modules)} not installed (the [bench] extra: .venv/bin/pip install -e "
            "'.[bench]')"
        )
    programs = [program for program in PROGRAMS if not shutil.which(program)]
    if programs:
        problems.append(f"{', '.join(programs)} not found (sh hardware/bootstrap.sh installs them)")
    return "; ".join(problems) or None


CLIENTS = ("edge-agent", "baseline")
# pipecat runs when $PIPECAT_PYTHON names a Python with pipecat-ai[google,local] installed
# (see bench/pipecat_client.py); it has no camera input here.
OPTIONAL_CLIENTS = ("pipecat",) if os.environ.get("PIPECAT_PYTHON") else ()
FIGURES = (
    "mic_to_wire_ms",
    "eos_to_activity_end_ms",
    "audio_to_device_ms",
    "barge_in_ms",
    "cpu_s_per_min",
    "cpu_s_per_min_camera",
    "rss_mb",
    "startup_s",
)
QUESTIONS = (
    "what is the weather like today",
    "tell me a story about a fox",
    "what time is it in Tokyo",
    "how tall is the Eiffel tower",
)


def spoken_input(folder: Path, questions: int) -> tuple[Speech, Path, float]:
    """Questions separated by 6 s of quiet (answers are 2 s): the 16 kHz reference with where
    each question ends, and the 48 kHz raw PCM the sound card plays (band-limited to 8 kHz, so
    any client's downsampling gives back the reference)."""
    parts = [np.zeros(8000, np.int16)]
    speech_ends = []
    for index in range(questions):
        wav_path = folder / f"q{index}.wav"
        text = QUESTIONS[index % len(QUESTIONS)]
        subprocess.run(["espeak-ng", "-w", str(wav_path), text], check=True)
        with wave.open(str(wav_path)) as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
            rate = wav.getframerate()
        spoken = np.asarray(soxr.resample(samples, rate, 16000), np.int16)
        audible = np.flatnonzero(np.abs(spoken) > 328)  # -40 dBFS
        speech_ends.append(sum(len(part) for part in parts) + int(audible[-1]) + 1)
        parts += [spoken, np.zeros(16000 * 6, np.int16)]
    audio = np.concatenate(parts)
    signal48 = folder / "mic48.raw"
    signal48.write_bytes(np.asarray(soxr.resample(audio, 16000, 48000), np.int16).tobytes())
    return Speech(audio, speech_ends), signal48, len(audio) / 16000


def camera_video(folder: Path) -> Path:
    import cv2

    path = folder / "scene.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (1280, 720))
    rng = np.random.default_rng(0)
    for _ in range(25):
        writer.write(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    writer.release()
    return path


def summarize(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None}
    return {
        "median": round(float(np.median(values)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
    }


async def measure(questions: int, period_ms: int, rounds: int) -> dict[str, Any]:
    """Each round runs every client, plain then with the camera, one after the other; rounds
    interleave the clients so that a noisy neighbour on the machine hits both alike. Latency
    samples are pooled over rounds; CPU and start-up are per run, RSS is the peak."""
    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    speech, signal48, seconds = spoken_input(folder, questions)
    video = camera_video(folder)
    clients_run = CLIENTS + OPTIONAL_CLIENTS
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in clients_run}
    with JackServer() as jack:
        for _ in range(rounds):
            for name in clients_run:
                runs: dict[str, RunResult] = {}
                for camera in (None, video) if name != "pipecat" else (None,):
                    runs["camera" if camera else "plain"] = await run_client(
                        name, speech, signal48, seconds + 2, questions, camera, jack, period_ms
                    )
                pooled = samples[name]
                for key, values in runs["plain"].figures.items():
                    pooled.setdefault(key, []).extend(values)
                for key, value in (
                    ("cpu_s_per_min", runs["plain"].cpu_s_per_min),
                    ("rss_mb", max(run.rss_mb for run in runs.values())),
                    ("startup_s", runs["plain"].startup_s),
                ):
                    pooled.setdefault(key, []).append(value)
                if "camera" in runs:
                    pooled.setdefault("cpu_s_per_min_camera", []).append(
                        runs["camera"].cpu_s_per_min
                    )
    clients = {
        name: {key: summarize(samples[name].get(key, [])) for key in FIGURES}
        for name in clients_run
    }
    for name in clients_run:
        rss = samples[name]["rss_mb"]
        clients[name]["rss_mb"] = {"median": round(max(rss), 1), "p95": round(max(rss), 1)}
    ratios = {}
    for key in FIGURES:
        ours, theirs = clients["edge-agent"][key]["median"], clients["baseline"][key]["median"]
        ratios[key] = round(ours / theirs, 3) if ours is not None and theirs else None
    shutil.rmtree(folder, ignore_errors=True)
    return {"machine": machine(), "clients": clients, "ratios": ratios}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(result: dict[str, Any]) -> str:
    names = list(result["clients"])
    lines = [
        f"machine: {result['machine']}",
        f"{'figure':24}" + "".join(f"{name + ' median/p95':>26}" for name in names) + "  ratio",
    ]
    for key in FIGURES:
        cells = []
        for name in names:
            figure = result["clients"][name][key]
            cells.append(
                "-" if figure["median"] is None else f"{figure['median']:g} / {figure['p95']:g}"
            )
        ratio = result["ratios"].get(key)
        row = f"{key:24}" + "".join(f"{cell:>26}" for cell in cells)
        lines.append(row + f"  {'' if ratio is None else ratio}")
    lines.append("ratio: edge-agent median / baseline median")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--json", action="store_true", help="the contract's JSON object")
    parser.add_argument("--questions", type=int, default=6, help="user turns per run")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved runs per client")
    parser.add_argument(
        "--period-ms", type=int, default=20, help="edge-agent's [audio] period_ms (default 20)"
    )
    args = parser.parse_args()
    problem = missing()
    if problem is not None:
        print(f"python -m bench: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    result = asyncio.run(measure(args.questions, args.period_ms, args.rounds))
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
