"""The bench's sound card, in its own process so that no other Python work delays its timestamps.

One JACK client, `bench-io`:
- `mic` plays a 48 kHz int16 signal into the port the clients capture from (see asound.conf),
  starting at the first cycle after "play" arrives on stdin; every cycle's (time, first sample)
  is recorded, so the moment each sample left the device is known;
- `listen` hears whatever reaches system:playback_1; the time of every cycle carrying sound is
  recorded (what the speaker really plays, not what was written ahead into its buffer).

Run by the harness: python -m bench.jackio SERVER SIGNAL.raw RESULT.json; "play" then "stop" on
stdin; the result is {"mic_cycles": [[t, first_sample], ...], "loud_cycles": [t, ...]}.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import jack
import numpy as np

LOUD = 0.002  # float sample magnitude: -54 dBFS


class BenchIO:
    def __init__(self, server: str, signal: np.ndarray) -> None:
        self.client = jack.Client("bench-io", servername=server, no_start_server=True)
        self.mic = self.client.outports.register("mic")
        self.listen = self.client.inports.register("listen")
        self.signal = signal.astype(np.float32) / 32768
        self.position = 0
        self.playing = False
        self.mic_cycles: list[tuple[float, int]] = []
        self.loud_cycles: list[float] = []
        self.client.set_process_callback(self._process)
        self._stop = threading.Event()
        self._linker = threading.Thread(target=self._link, daemon=True)

    def _process(self, frames: int) -> None:
        now = time.monotonic()
        out = self.mic.get_array()
        out.fill(0.0)
        if self.playing and self.position < len(self.signal):
            chunk = self.signal[self.position : self.position + frames]
            out[: len(chunk)] = chunk
            self.mic_cycles.append((now, self.position))
            self.position += frames
        if float(np.max(np.abs(self.listen.get_array()))) > LOUD:
            self.loud_cycles.append(now)

    def _link(self) -> None:
        """Clients open their output late and re-open it: keep listening to all of them."""
        while not self._stop.is_set():
            for port in self.client.get_ports(is_output=True, is_audio=True):
                if port.name.startswith("bench-io:"):
                    continue
                connections = {p.name for p in self.client.get_all_connections(port)}
                if "system:playback_1" in connections and self.listen.name not in connections:
                    with contextlib.suppress(jack.JackError):
                        self.client.connect(port, self.listen)
            time.sleep(0.05)

    def run(self, result: Path) -> None:
        self.client.activate()
        self._linker.start()
        print("READY", flush=True)
        for line in sys.stdin:
            if line.strip() == "play":
                self.playing = True
            elif line.strip() == "stop":
                break
        self._stop.set()
        self.client.deactivate()
        self.client.close()
        result.write_text(
            json.dumps({"mic_cycles": self.mic_cycles, "loud_cycles": self.loud_cycles})
        )


def main() -> None:
    server, signal_path, result = sys.argv[1:4]
    signal = np.frombuffer(Path(signal_path).read_bytes(), "<i2")
    BenchIO(server, signal).run(Path(result))


if __name__ == "__main__":
    main()
