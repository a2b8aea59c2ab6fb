"""python -m bench.rates: what converting device rates costs, per minute of audio in and out
(callgrind; a run of N seconds and one of 2N, the difference counted, so start-up cancels).

The same PortAudio blocking reads (10 ms blocks, the microphone's) and writes (20 ms periods,
the speaker's) on the file/null PCMs of tests/asound-test.conf (unpaced), three ways:
- model rates: the devices opened at 16 kHz in and 24 kHz out, nothing converts (rate = 0 on a
  device that takes them);
- soxr: the devices at 48 kHz, edge-agent's soxr HQ converts (a device that takes only 48 kHz);
- alsa plug: the devices opened at 16/24 kHz on `plug` PCMs whose slave runs at 48 kHz, so
  alsa-lib's rate plugin converts (its default converter; what "default" on a Pi does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.footprint import REPO, callgrind_command, totals

ALSA_CONFIG = """<{tests}/asound-test.conf>
pcm.mic48 {{ type plug; slave {{ pcm "mic"; rate 48000 }} hint.description "mic via plug" }}
pcm.speaker48 {{ type plug; slave {{ pcm "speaker"; rate 48000 }} hint.description "plug" }}
"""
SCRIPT = """
import sys
import numpy as np
from edge_agent.audio.devices import list_devices, open_portaudio
from edge_agent.audio.resample import Resampler
import pyaudio

mode, seconds = sys.argv[1], float(sys.argv[2])
pa = open_portaudio()
index = {d.name: d.index for d in list_devices(pa)}
mic_name, speaker_name = ("mic48", "speaker48") if mode == "plug" else ("mic", "speaker")
mic_rate, speaker_rate = (48000, 48000) if mode == "soxr" else (16000, 24000)
mic = pa.open(rate=mic_rate, channels=1, format=pyaudio.paInt16, input=True,
              input_device_index=index[mic_name], frames_per_buffer=mic_rate // 100)
speaker = pa.open(rate=speaker_rate, channels=1, format=pyaudio.paInt16, output=True,
                  output_device_index=index[speaker_name], frames_per_buffer=speaker_rate // 50)
to_model, to_device = Resampler(mic_rate, 16000), Resampler(24000, speaker_rate)
reply = np.random.default_rng(0).integers(-3000, 3000, 480).astype(np.int16).tobytes()  # 20 ms
for _ in range(int(seconds * 100)):
    to_model.process(mic.read(mic_rate // 100))
for _ in range(int(seconds * 50)):
    speaker.write(to_device.process(reply))
mic.close(); speaker.close(); pa.terminate()
"""
MODES = {"model rates": "direct", "soxr (48 kHz devices)": "soxr", "alsa plug (48 kHz)": "plug"}


def per_minute(mode: str, seconds: float, folder: Path) -> float:
    script, conf = folder / "rates.py", folder / "asound.conf"
    script.write_text(SCRIPT)
    conf.write_text(ALSA_CONFIG.format(tests=REPO / "tests"))
    env = {"ALSA_CONFIG_PATH": str(conf), "MIC_RAW": "/dev/zero", "SPK_WAV": "/dev/null"}
    counts = []
    for length in (seconds, 2 * seconds):
        out = folder / f"rates-{mode}-{length}.out"
        subprocess.run(
            callgrind_command(out, [sys.executable, str(script), mode, str(length)]),
            check=True,
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        counts.append(totals(out))
    return (counts[1] - counts[0]) * 60 / seconds


    return dict(os.environ)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rates")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = None
        header = f"{'per minute of audio in and out':28} {'instructions':>14}"
        print(f"{header} {'over model rates':>17}")
        for name, mode in MODES.items():
            value = per_minute(mode, args.seconds, Path(folder))
            base = value if base is None else base
            print(f"{name:28} {value:14.3e} {value - base:17.3e}")


if __name__ == "__main__":
    main()
