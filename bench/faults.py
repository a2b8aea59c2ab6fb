"""python -m bench.faults [--rows NAME,...] [--keep DIR] [--json]: the real-time fault matrix.

Each row runs `edge-agent simulate --realtime --json` on 12 espeak-ng questions (>= 3 s apart)
against `edge-agent emulator` with one fault: emulator flags, the emulator frozen with SIGSTOP
for 20 s, or the emulator killed and started again 15 s later on the same port and cert dir.
For every row it counts the questions asked (known from the input), answered (a turn over the
question with first_audio_ms or an output transcript), reported lost (an `errors` entry naming
one of its turns, or an entry naming no turn), and lost turns that could have been sent within
10 s of their end (the server was up at some moment of that window). Prints a markdown table;
exits 1 when a row has asked != answered + lost, or loses a turn it could have sent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = (
    "What time is it?",
    "How is the weather today?",
    "Tell me a short joke.",
    "What is the capital of France?",
    "How far away is the moon?",
    "Can you set a timer?",
    "What day is it today?",
    "Who wrote Hamlet?",
    "How do I boil an egg?",
    "What is two plus two?",
    "Play some music please.",
    "Thank you, goodbye.",
)
GAP_S = 3.5  # silence after each question (>= 3 s)
LEAD_S = 1.0
SENDABLE_WINDOW_S = 10.0  # a turn that can be sent this soon after its end must not be lost
FAULT_AT_S = 16.0  # input time of SIGSTOP / kill: mid-row, between questions
STOP_S = 20.0
RESTART_AFTER_S = 15.0


@dataclass(frozen=True)
class Row:
    name: str
    flags: tuple[str, ...] = ()
    fault: str = ""  # "" | "sigstop" | "restart"


ROWS: tuple[Row, ...] = (
    Row("drop-every-3", ("--drop-every", "3")),
    Row("goaway-every-2", ("--goaway-every", "2")),
    Row("goaway-every-2-silent", ("--goaway-every", "2", "--silent-after-goaway")),
    Row(
        "all-flags",
        ("--drop-every", "3", "--goaway-every", "2", "--silent-after-goaway"),
    ),
    Row("sigstop-20s", fault="sigstop"),
    Row("kill-restart-15s", fault="restart"),
)


@dataclass
class Question:
    text: str
    start_s: float
    end_s: float


@dataclass
class Result:
    row: str
    asked: int = 0
    answered: int = 0
    lost: int = 0
    lost_sendable: int = 0
    turns: int = 0
    reconnects: int = 0
    errors: list[Any] = field(default_factory=list)
    outages: list[tuple[float, float]] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    @property
    def silent(self) -> int:
        return self.asked - self.answered - self.lost

    @property
    def ok(self) -> bool:
        return self.silent == 0 and self.lost_sendable == 0 and not self.note.startswith("FAILED")


def speak(text: str, folder: Path) -> np.ndarray:
    path = folder / f"q{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return np.asarray(soxr.resample(samples, rate, 16000), dtype=np.int16)


def trimmed(samples: np.ndarray) -> np.ndarray:
    """espeak pads with silence: keep the audible part, so question times are speech times."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def make_input(folder: Path) -> tuple[Path, list[Question]]:
    parts = [np.zeros(int(LEAD_S * 16000), np.int16)]
    questions: list[Question] = []
    position = LEAD_S
    for text in QUESTIONS:
        speech = trimmed(speak(text, folder))
        questions.append(Question(text, position, position + len(speech) / 16000))
        position += len(speech) / 16000 + GAP_S
        parts += [speech, np.zeros(int(GAP_S * 16000), np.int16)]
    path = folder / "questions.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.concatenate(parts).tobytes())
    return path, questions


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def edge_agent(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent", *args]


def environment() -> dict[str, str]:
    env = {**os.environ, "GEMINI_API_KEY": "bench-key", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("CREDENTIALS_DIRECTORY", None)
    return env


def start_emulator(
    port: int, cert_dir: Path, log: Path, flags: tuple[str, ...]
) -> subprocess.Popen[str]:
    """Starts the emulator and waits until it listens; retries a few times if the port is not
    free yet (a restart on the same port)."""
    command = edge_agent(
        "emulator", "--port", str(port), "--cert-dir", str(cert_dir), "--log", str(log), *flags
    )
    deadline = time.monotonic() + 10
    while True:
        process = subprocess.Popen(
            command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.startswith("listening on"):
            return process
        process.wait(5)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the emulator cannot listen on port {port} again")
        time.sleep(0.2)


def wait_first_entry(log: Path, timeout_s: float) -> float | None:
    """The wall time of the emulator's first log entry: the first setup, sent as the first
    question's speech opened the conversation."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and log.stat().st_size > 0:
            return time.monotonic()
        time.sleep(0.02)
    return None


def run_row(row: Row, wav: Path, questions: list[Question], work: Path) -> Result:
    result = Result(row.name, asked=len(questions))
    folder = work / row.name
    folder.mkdir(parents=True, exist_ok=True)
    port, cert_dir, log = free_port(), folder / "certs", folder / "emulator.jsonl"
    emulator = start_emulator(port, cert_dir, log, row.flags)
    started = time.monotonic()
    simulate = subprocess.Popen(
        edge_agent(
            "simulate",
            "--realtime",
            "--json",
            "--input",
            str(wav),
            "--endpoint",
            f"https://127.0.0.1:{port}",
            "--ca-file",
            str(cert_dir / "cert.pem"),
        ),
        cwd=REPO,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=(folder / "simulate.log").open("w"),
        text=True,
    )
    try:
        first = wait_first_entry(log, 60)
        if first is None:
            result.note = "FAILED: the simulation never connected"
            return result
        # input time = wall time - zero; the first setup goes out ~0.4 s into the first question
        zero = first - (questions[0].start_s + 0.4)
        if row.fault:
            emulator, outage = inject(row, emulator, zero, port, cert_dir, log)
            result.outages.append(outage)
        output, _ = simulate.communicate(timeout=400)
    finally:
        if simulate.poll() is None:
            simulate.kill()
        emulator.send_signal(signal.SIGCONT)
        emulator.terminate()
        emulator.wait(10)
    result.seconds = time.monotonic() - started
    if simulate.returncode not in (0, 1):  # 1: a turn was lost (reported in its errors)
        result.note = f"FAILED: simulate exited {simulate.returncode} (see {folder}/simulate.log)"
        return result
    (folder / "summary.json").write_text(output)
    count(result, json.loads(output), questions)
    return result


def inject(
    row: Row, emulator: subprocess.Popen[str], zero: float, port: int, cert_dir: Path, log: Path
) -> tuple[subprocess.Popen[str], tuple[float, float]]:
    """The row's process fault at input time FAULT_AT_S; returns the emulator now running and
    the outage in input seconds."""
    time.sleep(max(0.0, zero + FAULT_AT_S - time.monotonic()))
    down = time.monotonic() - zero
    if row.fault == "sigstop":
        emulator.send_signal(signal.SIGSTOP)
        time.sleep(STOP_S)
        emulator.send_signal(signal.SIGCONT)
        return emulator, (down, time.monotonic() - zero)
    emulator.kill()
    emulator.wait(5)
    time.sleep(max(0.0, zero + FAULT_AT_S + RESTART_AFTER_S - time.monotonic()))
    restarted = start_emulator(port, cert_dir, log, row.flags)
    return restarted, (down, time.monotonic() - zero)


def turn_number(entry: Any) -> int | None:
    if isinstance(entry, dict):
        value = entry.get("turn")
        return value if isinstance(value, int) else None
    found = re.search(r"\bturn (\d+)", str(entry))
    return int(found.group(1)) if found else None


def count(result: Result, summary: dict[str, Any], questions: list[Question]) -> None:
    turns = summary.get("turns", [])
    result.turns = len(turns)
    result.reconnects = int(summary.get("reconnects", 0))
    result.errors = list(summary.get("errors", []))
    numbered = {turn.get("turn", index + 1): turn for index, turn in enumerate(turns)}

    def question_of(turn: dict[str, Any]) -> int | None:
        start, end = turn.get("start_s") or 0.0, turn.get("end_s") or turn.get("start_s") or 0.0
        for index, question in enumerate(questions):
            if start < question.end_s + 0.5 and end > question.start_s - 0.5:
                return index
        return None

    answered: set[int] = set()
    for turn in turns:
        index = question_of(turn)
        if index is not None and (
            turn.get("first_audio_ms") is not None or (turn.get("output_transcript") or "").strip()
        ):
            answered.add(index)
    lost: set[int] = set()
    unplaced = 0
    for entry in result.errors:
        number = turn_number(entry)
        turn = numbered.get(number) if number is not None else None
        index = question_of(turn) if turn is not None else None
        if index is None:
            unplaced += 1
        elif index not in answered:
            lost.add(index)
    unanswered = [i for i in range(len(questions)) if i not in answered and i not in lost]
    lost |= set(unanswered[:unplaced])  # losses reported without a turn, oldest first
    result.answered, result.lost = len(answered), len(lost)
    result.lost_sendable = sum(
        1 for index in lost if sendable(questions[index].end_s, result.outages)
    )


def sendable(end_s: float, outages: list[tuple[float, float]]) -> bool:
    """The server was up at some moment of [end, end + 10 s]."""
    window_end = end_s + SENDABLE_WINDOW_S
    return not any(down <= end_s and window_end <= up for down, up in outages)


def table(results: list[Result]) -> str:
    lines = [
        "| row | asked | answered | lost | silent | lost but sendable | turns | reconnects "
        "| errors | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.row} | {r.asked} | {r.answered} | {r.lost} | {r.silent} | {r.lost_sendable} "
            f"| {r.turns} | {r.reconnects} | {len(r.errors)} | {r.seconds:.0f} |"
            + (f" {r.note}" if r.note else "")
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--keep", metavar="DIR", help="keep logs and summaries in DIR")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if not shutil.which("espeak-ng"):
        print("espeak-ng is needed (hardware/bootstrap.sh installs it)", file=sys.stderr)
        return 2
    rows = ROWS
    if args.rows:
        wanted = set(args.rows.split(","))
        rows = tuple(r for r in ROWS if r.name in wanted)
        if not rows:
            print(f"no such row; rows: {', '.join(r.name for r in ROWS)}", file=sys.stderr)
            return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="edge-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    wav, questions = make_input(work)
    results = []
    for row in rows:
        print(f"{row.name} ...", file=sys.stderr, flush=True)
        results.append(run_row(row, wav, questions, work))
    print(table(results))
    for r in results:
        if r.errors:
            print(f"\n{r.row} errors: " + "; ".join(str(e)[:120] for e in r.errors))
    if args.json:
        print(json.dumps([r.__dict__ | {"silent": r.silent} for r in results], indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
