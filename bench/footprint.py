"""python -m bench.footprint: what `edge-agent run` costs a Pi Zero 2 W before and between
conversations, counted in instructions (valgrind's callgrind) and memory (/proc), load-independent.

- exec -> READY: `run` under callgrind, counters dumped (callgrind_control -d) when its READY
  datagram arrives on a NOTIFY_SOCKET this script listens on; the baseline likewise up to its
  READY line (which, unlike edge-agent's, includes connecting: it connects first).
- idle listening: the same process, once it has settled after READY (the SDK loads then: its
  "google-genai loaded" log line, then one 15 s window), a minute;
  the microphone is a file of room noise (sox pink noise, -58 dBFS RMS), no conversation;
  the wake-word detector alone is counted on the same noise (1 and 2 minutes, differenced).
- microphone capture: what a `file:` microphone skips, a PortAudio stream on ALSA's file PCM
  at 16 kHz mono (unpaced), resting, per minute of audio (1 and 2 minutes, differenced).
- memory: RSS, PSS and USS (Private_Clean + Private_Dirty) from /proc/PID/smaps_rollup, 10 s
  after READY, on plain ALSA (the file/null PCMs of tests/asound-test.conf), never under valgrind
  and never with a JACK segment; the baseline on the same PCMs.
- imports: `python -X importtime` of `run` up to READY, self time summed per top-level package
  (a guide to where start-up goes; µs, not instructions).
Each figure for config/default.toml and config/smart-speaker.toml side by side (the GPIO of the
smart speaker on gpiozero's mock pins). The conversation hot path is bench/pi.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.emulator.server import Emulator, EmulatorOptions

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("default", "smart-speaker")
SETTLE_WINDOW_S = 15.0


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in body.items() if not isinstance(v, dict))
        for key, sub in body.items():
            if isinstance(sub, dict):
                table(f"{name}.{key}", sub)

    for name, body in data.items():
        table(name, body)
    path.write_text("\n".join(lines) + "\n")
    return path


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for name, body in extra.items():
        out.setdefault(name, {}).update(body)
    return out


def room_noise(folder: Path, seconds: int) -> tuple[Path, Path]:
    """Pink noise at -58 dBFS RMS (-45 peak): a 16 kHz WAV (file: mic) and raw S16_LE (ALSA mic)."""
    wav, raw = folder / "room.wav", folder / "room.raw"
    synth = ["synth", str(seconds), "pinknoise", "vol", "0.006"]
    command = ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(wav), *synth]
    subprocess.run(command, check=True)
    subprocess.run(["sox", str(wav), "-t", "raw", str(raw)], check=True)
    return wav, raw


def agent_config(
    folder: Path, name: str, emulator: Emulator, devices: dict[str, str], tag: str
) -> Path:
    base = tomllib.loads((REPO / "config" / f"{name}.toml").read_text())
    extra = {
        "live": {"endpoint": emulator.url, "ca_file": str(emulator.cert_path)},
        "audio": devices,
        "service": {"state_dir": str(folder / "state"), "log_level": "info"},
    }
    return write_toml(folder / f"{name}-{tag}.toml", merged(base, extra))


def environment(folder: Path, raw: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GEMINI_API_KEY": "bench-key",
        "GPIOZERO_PIN_FACTORY": "mock",
        "ALSA_CONFIG_PATH": str(REPO / "tests" / "asound-test.conf"),
        "MIC_RAW": str(raw),
        "SPK_WAV": str(folder / "speaker.wav"),
        **extra,
    }


def listen(folder: Path) -> tuple[socket.socket, str]:
    path = folder / f"notify-{time.monotonic_ns()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(900)
    return sock, str(path)


def wait_ready(sock: socket.socket) -> None:
    while b"READY=1" not in sock.recv(4096):
        pass


def totals(path: Path) -> int:
    match = re.search(r"^totals: (\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {path}")
    return int(match.group(1))


def callgrind_command(out: Path, command: list[str]) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command]


def control(pid: int, what: str) -> None:
    subprocess.run(["callgrind_control", what, str(pid)], check=True, stdout=subprocess.DEVNULL)


def dumped(out: Path, number: int, timeout: float = 120) -> int:
    path = Path(f"{out}.{number}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and "totals:" in path.read_text():
            return totals(path)
        time.sleep(0.2)
    raise RuntimeError(f"callgrind never dumped {path}")


def stop(process: subprocess.Popen[Any]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def counted(
    process: subprocess.Popen[Any],
    out: Path,
    ready: Callable[[], None],
    sdk_loaded: Callable[[], None],
    idle_s: float,
) -> tuple[int, float]:
    """(instructions exec -> READY, idle instructions per minute) of a process under callgrind;
    `ready` returns when it is READY, `sdk_loaded` once it has loaded google-genai."""
    ready()
    control(process.pid, "-d")
    at_ready = dumped(out, 1)

    dumps = [1]

    def window(seconds: float) -> int:
        control(process.pid, "-z")
        time.sleep(seconds)
        control(process.pid, "-d")
        dumps.append(dumps[-1] + 1)
        return dumped(out, dumps[-1])

    # what runs right after READY (the SDK loads then, over a minute under valgrind) is waited
    # out: until the daemon says the SDK is loaded, and one more 15 s window
    sdk_loaded()
    window(SETTLE_WINDOW_S)
    return at_ready, window(idle_s) * 60 / idle_s


def agent_instructions(config: Path, env: dict[str, str], idle_s: float) -> tuple[int, float]:
    """(instructions exec -> READY, idle instructions per minute) of `edge-agent run`."""
    folder = config.parent
    sock, address = listen(folder)
    out = folder / f"callgrind-{config.stem}.out"
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
    log = folder / f"{config.stem}.log"
    with log.open("w") as errors:
        process = subprocess.Popen(
            callgrind_command(out, command),
            env={**env, "NOTIFY_SOCKET": address},
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )

    def sdk_loaded() -> None:
        deadline = time.monotonic() + 900
        while "google-genai loaded" not in log.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the SDK never loaded: {log.read_text()[-2000:]}")
            time.sleep(1)

    try:
        return counted(process, out, lambda: wait_ready(sock), sdk_loaded, idle_s)
    finally:
        stop(process)
        sock.close()


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS, USS and its dirty part in MB. USS counts a library's clean pages as private
    while no other process maps them, so it moves with what else runs (this script's own
    Python maps libpython and numpy, or not); the dirty part (the heap, written data) is the
    process's own whatever else runs."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return {
        "rss": fields["Rss"] / 1024,
        "pss": fields["Pss"] / 1024,
        "uss": uss / 1024,
        "dirty": fields["Private_Dirty"] / 1024,
    }


def connected_variant(config: Path) -> Path:
    """The config with [conversation] start = "always": it connects at once, so its memory is
    a conversation's (the SDK's client and a live websocket)."""
    data = tomllib.loads(config.read_text())
    data.setdefault("conversation", {})["start"] = "always"
    return write_toml(config.with_name(f"{config.stem}-connected.toml"), data)


def agent_memory(config: Path, env: dict[str, str], settle_s: float = 10.0) -> dict[str, float]:
    sock, address = listen(config.parent)
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
    process = subprocess.Popen(
        command, env={**env, "NOTIFY_SOCKET": address}, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(sock)
        time.sleep(settle_s)
        return smaps(process.pid)
    finally:
        stop(process)
        sock.close()


# feeds argv[1] seconds of the WAV argv[2] to a wake-word Detector of the models argv[3:]
DETECTOR_ALONE = """
import sys, wave
from edge_agent.wakeword import Detector, load_models
from edge_agent.config import WakeWordConfig
detector = Detector(load_models(WakeWordConfig(models=sys.argv[3:])))
with wave.open(sys.argv[2]) as wav:
    pcm = wav.readframes(int(float(sys.argv[1]) * 16000))
for start in range(0, len(pcm) - 959, 960):
    detector.feed(pcm[start : start + 960])
"""


def per_minute(script: str, args: list[str], env: dict[str, str], out: Path) -> float:
    """Instructions of `python -c script SECONDS *args` per minute of SECONDS: run for 1 and 2
    minutes under callgrind and the difference kept, so start-up cancels out."""
    counts = []
    for seconds in (60, 120):
        dump = out.with_name(f"{out.name}-{seconds}")
        command = [sys.executable, "-c", script, str(seconds), *args]
        subprocess.run(callgrind_command(dump, command), env=env, check=True, capture_output=True)
        counts.append(totals(dump))
    return float(counts[1] - counts[0])


def detector_instructions(wav: Path, models: list[str], folder: Path) -> float:
    """The wake-word detector alone, per minute of a quiet room: the same models on the same
    30 ms frames."""
    return per_minute(DETECTOR_ALONE, [str(wav), *models], {**os.environ}, folder / "detector")


# captures argv[1] seconds of the ALSA PCM "mic" (tests/asound-test.conf) through Microphone,
# resting (frames to the loop 200 ms at a time) as between conversations
CAPTURE = """
import asyncio, sys
from edge_agent.audio.capture import Microphone
async def main(seconds):
    wanted, got = int(seconds * 1000 / 30) - 1, [0]
    def sink(frame):
        got[0] += 1
    mic = Microphone("mic", frame_ms=30, rate=16000, channels=1, max_seconds=seconds)
    mic.rest(True)
    mic.start(sink)
    while got[0] + mic.dropped_frames < wanted:  # frames the slow loop missed count too
        await asyncio.sleep(0.05)
    await mic.close()
asyncio.run(main(float(sys.argv[1])))
"""


def capture_instructions(env: dict[str, str], folder: Path) -> float:
    """Capture through PortAudio and ALSA's file plugin at 16 kHz mono, per minute of audio:
    the part of idle listening a `file:` microphone skips. The PCM is unpaced, so this is work
    per minute of audio, not of waiting."""
    return per_minute(CAPTURE, [], env, folder / "capture")


def baseline_command(emulator: Emulator) -> list[str]:
    return [sys.executable, "-m", "bench.baseline", emulator.url, str(emulator.cert_path)]


def wait_line(process: subprocess.Popen[str], wanted: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if wanted in line:
            return
    raise RuntimeError(f"the baseline ended before {wanted}")


def start_baseline(emulator: Emulator, env: dict[str, str], out: Path | None) -> Any:
    command = baseline_command(emulator)
    return subprocess.Popen(
        callgrind_command(out, command) if out else command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )


def baseline_figures(emulator: Emulator, folder: Path, env: dict[str, str]) -> dict[str, float]:
    """Instructions to its READY line and memory. No idle figure: its blocking reads on the
    unpaced test PCMs never wait, so they would count the machine's speed, not idling."""
    out = folder / "callgrind-baseline.out"
    process = start_baseline(emulator, env, out)
    try:
        wait_line(process, "READY")
        control(process.pid, "-d")
        ready = dumped(out, 1)
    finally:
        stop(process)
    process = start_baseline(emulator, env, None)
    try:
        wait_line(process, "READY")
        time.sleep(10)
        memory = smaps(process.pid)
    finally:
        stop(process)
    return {"ready": ready, "idle": float("nan"), **memory}


def import_costs(config: Path, env: dict[str, str]) -> dict[str, int]:
    """Self import time (µs) per top-level package of `run` up to READY."""
    sock, address = listen(config.parent)
    command = [sys.executable, "-X", "importtime", "-m", "edge_agent", "run", "--config"]
    log = config.parent / "importtime.txt"
    with log.open("w") as errors:  # a file, not a pipe: a full pipe would stall it before READY
        process = subprocess.Popen(
            [*command, str(config)], env={**env, "NOTIFY_SOCKET": address}, stderr=errors
        )
    try:
        wait_ready(sock)
        process.send_signal(signal.SIGSTOP)  # what it imports after READY does not count
        text = log.read_text()
    finally:
        process.send_signal(signal.SIGCONT)
        stop(process)
        sock.close()
    costs: dict[str, int] = defaultdict(int)
    for match in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \|\s*([\w.]+)", text):
        parts = match.group(2).split(".")
        depth = 2 if parts[0] in ("edge_agent", "google") else 1
        costs[".".join(parts[:depth])] += int(match.group(1))
    return dict(costs)


async def measure(folder: Path, idle_s: float, baseline: bool) -> dict[str, Any]:
    emulator = Emulator(EmulatorOptions(cert_dir=folder / "emulator"))
    await emulator.start()
    wav, raw = room_noise(folder, int(idle_s + 600))
    results: dict[str, Any] = {}
    try:
        for name in CONFIGS:
            files = {"input_device": f"file:{wav}", "output_device": f"file:{folder}/out.wav"}
            alsa = {"input_device": "mic", "output_device": "speaker"}
            env = environment(folder, raw)
            file_config = agent_config(folder, name, emulator, files, "files")
            alsa_config = agent_config(folder, name, emulator, alsa, "alsa")
            ready, idle = await asyncio.to_thread(agent_instructions, file_config, env, idle_s)
            memory = await asyncio.to_thread(agent_memory, alsa_config, env)
            connected = await asyncio.to_thread(agent_memory, connected_variant(alsa_config), env)
            memory |= {f"{key}_connected": value for key, value in connected.items()}
            imports = await asyncio.to_thread(import_costs, file_config, env)
            results[name] = {"ready": ready, "idle": idle, **memory, "imports": imports}
            wake = tomllib.loads(file_config.read_text())
            if wake.get("conversation", {}).get("start") == "wake_word":
                models = wake.get("wake_word", {}).get("models", ["okay_nabu"])
                detector = await asyncio.to_thread(detector_instructions, wav, models, folder)
                results[name]["detector"] = detector
            print(name, {k: v for k, v in results[name].items() if k != "imports"}, flush=True)
        capture = await asyncio.to_thread(capture_instructions, environment(folder, raw), folder)
        print(f"microphone capture (PortAudio) {capture / 1e9:.3f} G/min", flush=True)
        results["default"]["capture"] = capture
        if baseline:
            env = environment(folder, raw)
            results["baseline"] = await asyncio.to_thread(baseline_figures, emulator, folder, env)
    finally:
        await emulator.stop()
    return results


def report(results: dict[str, Any]) -> None:
    names = list(results)
    print(f"{'':34}" + "".join(f"{n:>16}" for n in names))
    rows = (
        ("instructions exec -> READY (G)", "ready", 1e9),
        ("idle listening (G instr./min)", "idle", 1e9),
        ("RSS (MB)", "rss", 1),
        ("PSS (MB)", "pss", 1),
        ("USS (MB)", "uss", 1),
        ("  of which dirty (MB)", "dirty", 1),
        ("RSS, connected (MB)", "rss_connected", 1),
        ("USS, connected (MB)", "uss_connected", 1),
        ("  of which dirty (MB)", "dirty_connected", 1),
    )
    for label, key, scale in rows:
        values = (results[n].get(key, float("nan")) / scale for n in names)
        print(f"{label:34}" + "".join(f"{value:16.3f}" for value in values))
    capture = results.get("default", {}).get("capture")
    if capture:
        print(f"\nmicrophone capture through PortAudio, per minute of audio: {capture / 1e9:.3f} G")
    for name in names:
        detector = results[name].get("detector")
        if detector:
            rest = results[name]["idle"] - detector
            print(
                f"\n{name}: the wake-word detector alone {detector / 1e9:.3f} G/min; the rest of "
                f"idle listening {rest / 1e9:.3f} G/min, {100 * rest / detector:.1f} % of it"
            )
    for name in names:
        imports = results[name].get("imports")
        if imports:
            top = sorted(imports.items(), key=lambda item: -item[1])[:14]
            total = sum(imports.values())
            print(f"\nimports of `run` up to READY, {name} ({total / 1000:.0f} ms self time):")
            for module, micros in top:
                print(f"  {module:32} {micros / 1000:8.1f} ms {100 * micros / total:5.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle stretch counted")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "sox"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (apt install valgrind sox)")
    folder = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    try:
        report(asyncio.run(measure(folder, args.idle_s, not args.no_baseline)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
